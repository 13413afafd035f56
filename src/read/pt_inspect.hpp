// What a .pt file holds, read without loading tensor data: its records and
// every tensor with its key path. Used by `ckptw inspect` and the tests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "read/pickle_reader.hpp"
#include "read/zip_index.hpp"

namespace ckptw::detail {

struct InspectedTensor {
  std::string key_path;  ///< `model.layers[3].weight`
  PickledTensor tensor;
};

struct InspectedFile {
  std::string path;
  std::uint64_t file_size = 0;
  ZipIndex index;
  std::unique_ptr<PickleTree> pickle;  ///< data.pkl, parsed
  std::vector<InspectedTensor> tensors;  ///< in pickle order
};

/// The bytes of data.pkl (at most 2 GiB, stored), CRC-checked when asked.
/// Throws ckptw::FormatError naming the file.
std::string read_data_pkl(const ByteSource& source, const ZipIndex& index, bool verify_crc);

/// Reads the index and data.pkl, checks that every tensor's storage record
/// exists with exactly the size its dtype and numel imply, and lists tensors.
/// Throws ckptw::FormatError / ckptw::IoError naming the file.
InspectedFile inspect_pt(const std::string& path);
InspectedFile inspect_pt(const ByteSource& source);

/// Recomputes the CRC-32 of every stored record and compares it with the
/// central directory. Throws ckptw::FormatError naming the first bad record
/// and its offset. With `without_crc`, a record whose directory CRC-32 is 0
/// while its bytes' is not (torch writes 0 when it computes none) is listed
/// there instead: it was written unchecksummed, not damaged.
void verify_record_crcs(const std::string& path, const ZipIndex& index);
void verify_record_crcs(const ByteSource& source, const ZipIndex& index,
                        std::vector<std::string>* without_crc = nullptr);

/// The sentence a CRC mismatch error adds when the directory's CRC-32 is 0.
inline constexpr const char* kNoCrcRecordedHint =
    " (the directory records no CRC-32: the file was written without them, as "
    "torch.serialization.set_crc32_options(False) or skip_data() write; ckptw.load loads it with a warning)";

}  // namespace ckptw::detail
