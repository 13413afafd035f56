// CheckpointReader: loads `{path}/checkpoint_{rank}.pt` written by ckptw or by
// torch.save (torch 1.13 to the newest), treating the file as untrusted input.
//
// Thread safety: one CheckpointReader may be used from one thread at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "ckptw/config.hpp"
#include "ckptw/export.hpp"
#include "ckptw/types.hpp"
#include "ckptw/value.hpp"

namespace ckptw {

/// The byte order of a file's tensor data (torch.serialization.LoadEndianness).
enum class ByteOrder { kNative, kLittle, kBig };

struct CKPTW_EXPORT ReadOptions {
  /// Device for every tensor (torch.load's map_location). Unset: the device
  /// the file records ("cpu", "cuda:0", ...). Storages bound for a GPU are
  /// read through four 16 MiB pinned chunks, each copied to the device as
  /// soon as it is read: 64 MiB of pinned memory whatever the checkpoint's size.
  std::optional<c10::Device> map_location;
  /// Missing keys (template keys absent from the file) become a ckptw::FormatError.
  bool strict = false;
  /// Check the CRC-32 of every record read against the zip directory. Default true.
  bool verify_crc = true;
  /// Refuse a directory whose commit manifest is missing (uncommitted); when a
  /// manifest exists, the rank file must match its size and checksum anyway.
  /// Default true; false reads files written without a manifest (torch.save,
  /// or several ranks with a seed-style barrier).
  bool require_manifest = true;
  /// Kernel interface for the tensor data reads (io_uring with several reads
  /// in flight, or POSIX pread), O_DIRECT where the filesystem allows it, as
  /// for writes. Default kAuto.
  IoBackendKind io_backend = IoBackendKind::kAuto;
  /// The byte order assumed for a file without a `byteorder` record (torch
  /// before 2.1 wrote none), as torch.serialization.set_default_load_endianness
  /// sets it for torch.load; torch's default is little. A file whose data is
  /// big-endian (its record, or this option, says so) has every storage
  /// byte-swapped as torch does (complex numbers per component); a storage
  /// torch would load unswapped (an UntypedStorage holding a dtype wider than
  /// one byte, e.g. uint16) is a ckptw::FormatError instead.
  ByteOrder default_byte_order = ByteOrder::kLittle;
};

/// Why checkpoint directory `dir` is not committed, or "" when it is: its
/// commit manifest exists and every rank file it lists has the size and
/// zip-directory checksum the manifest recorded (the data's CRC-32s are
/// checked when it is read). A DCP checkpoint directory (ckptw/dcp.hpp) is
/// committed when its `.metadata` exists and, where ckptw wrote it, every data
/// file has the size ckptw committed. Never throws: an unreadable directory is
/// a reason.
CKPTW_EXPORT std::string uncommitted_reason(const std::string& dir);

/// The newest committed checkpoint directory directly under `root` (by the
/// modification time of its manifest, or a DCP directory's `.metadata`: the
/// commit point; ties by name), or "" when
/// there is none or `root` does not exist: what a trainer resumes from
/// (`/ckpt` -> `/ckpt/step_3000`). A torn or half-written step is skipped.
CKPTW_EXPORT std::string latest_committed(const std::string& root);

/// What verify_records() checked.
struct CKPTW_EXPORT RecordCheck {
  std::size_t records = 0;
  /// Records stored without a CRC-32: their directory says 0 where their
  /// bytes' CRC-32 is not, as torch writes under
  /// torch.serialization.set_crc32_options(False) and for the data it skips
  /// (skip_data()). Nothing can verify them.
  std::vector<std::string> without_crc;
};

/// Checks .pt file `file` without interpreting its pickle: the zip structure,
/// and the CRC-32 of every stored record against the central directory.
/// Throws ckptw::FormatError naming the first damaged record and its offset,
/// ckptw::IoError when it cannot be read. A record without a CRC-32 is a
/// FormatError too, unless `allow_records_without_crc`: then it is listed.
CKPTW_EXPORT RecordCheck verify_records(const std::string& file, bool allow_records_without_crc = false);

/// Where one tensor's bytes lie in a file (locate_tensors()).
struct CKPTW_EXPORT StoredTensor {
  std::string key_path;              ///< `model.layers[3].weight`; "" for a tensor saved alone
  std::string dtype;                 ///< torch name: "float32"
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
  std::int64_t storage_offset = 0;   ///< in elements
  std::uint64_t payload_offset = 0;  ///< of its storage's first byte, in the file
  std::uint64_t storage_bytes = 0;
};

/// The tensors of the .pt archive at [offset, offset + length) of `file`
/// (length 0: to the end; a torch.distributed.checkpoint data file holds one
/// archive per tensor item), in pickle order, read from the archive's pickle
/// and zip directory without loading data, so that a reader can fetch any
/// part of a tensor with one pread. Each storage is checked to be stored
/// uncompressed with the size its dtype and numel imply. Throws
/// ckptw::FormatError naming the file for anything else: a malformed archive,
/// a big-endian one, a tensor with a lazy conjugate or negative bit (its
/// bytes are not its values); ckptw::IoError when it cannot be read.
CKPTW_EXPORT std::vector<StoredTensor> locate_tensors(const std::string& file, std::uint64_t offset = 0,
                                                      std::uint64_t length = 0);

struct CKPTW_EXPORT ReadResult {
  StateDict state_dict = make_state_dict();
  /// Template keys the file lacks, as `a.b` / `a[i]`.
  std::vector<std::string> missing_keys;
  /// File keys the template does not ask for (only with a template).
  std::vector<std::string> unexpected_keys;
};

class CKPTW_EXPORT CheckpointReader {
 public:
  explicit CheckpointReader(RankInfo rank_info);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  /// Loads this rank's file from the checkpoint directory `path`.
  ///
  /// Without a template, the whole state dict. With one, its keys drive the
  /// load (the seed's partial load): a None value loads the whole subtree at
  /// that key, a defined tensor is filled in place after a shape and dtype
  /// check (the result holds that same tensor), a nested dict or list is
  /// matched recursively, and any other value is replaced by the file's.
  /// Only the storages of the selected tensors are read.
  ///
  /// Throws ckptw::IoError (ENOENT naming the file when it is missing),
  /// ckptw::FormatError for a malformed, corrupt or uncommitted checkpoint, a
  /// shape/dtype mismatch, or missing keys with `strict`.
  ReadResult read(const std::string& path, const std::optional<StateDict>& state_dict_template = std::nullopt,
                  const ReadOptions& options = ReadOptions());

  /// The rank file's whole object as a Value (same checks as read()): what a
  /// StateDict cannot say is kept (int-keyed dicts, collections.OrderedDict
  /// and its attributes, objects shared through the pickle memo), so
  /// CheckpointWriter::write of it gives torch.save's bytes back. The root
  /// may be any object torch.save saved.
  Value::Ptr read_value(const std::string& path, const ReadOptions& options = ReadOptions());
  /// read_value() of one .pt file (no manifest involved).
  Value::Ptr read_file_value(const std::string& file, const ReadOptions& options = ReadOptions());

  /// Loads one .pt file directly (no manifest involved).
  ReadResult read_file(const std::string& file, const std::optional<StateDict>& state_dict_template = std::nullopt,
                       const ReadOptions& options = ReadOptions());

 private:
  RankInfo rank_info_;
};

}  // namespace ckptw
