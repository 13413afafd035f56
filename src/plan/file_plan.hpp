// The byte layout of one .pt file, decided before any byte is written.
//
// The planner turns a state dict into an ordered list of records whose sizes
// are all known up front; lay_out() then fixes every local header and payload
// offset, the central directory offset and the file size. The streamer only
// fills in what depends on the data (CRCs and the serialization id).
//
// Torch-free: payloads are plain byte ranges kept alive by `keep_alive`.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace ckptw {
class PayloadSource;
}

namespace ckptw::detail {

struct PlannedRecord {
  std::string name;                     ///< inside the archive folder: "data.pkl", "data/0"
  const unsigned char* data = nullptr;  ///< payload bytes, `size` of them (null when size is 0)
  std::uint64_t size = 0;
  /// Where `data` lives: -1 for host memory, else the CUDA device index. The
  /// streamer reads host memory only; stage_records() moves device payloads
  /// (and keeps the state of copies in flight in its Staging, not here).
  int device = -1;
  /// Produces the payload while it is streamed (a Value::streamed_tensor);
  /// `data` is then null. Streamed through the ring only, never staged.
  PayloadSource* source = nullptr;
  /// The payload's CRC-32, when computed where the bytes live (on the GPU);
  /// the streamer then does not checksum them again.
  bool crc32_known = false;
  std::uint32_t crc32 = 0;
  /// The payload is the serialization id, computed from the CRCs of the records
  /// before it; `data` is unused.
  bool is_serialization_id = false;
  std::uint64_t header_offset = 0;   ///< set by lay_out()
  std::uint64_t payload_offset = 0;  ///< set by lay_out(); a multiple of the alignment
};

struct FilePlan {
  std::string folder;                ///< archive folder, the prefix of every record name
  std::uint32_t alignment = 64;      ///< payload alignment (.storage_alignment)
  std::vector<PlannedRecord> records;
  std::uint64_t central_directory_offset = 0;  ///< set by lay_out()
  std::uint64_t file_size = 0;                 ///< set by lay_out()
  std::uint64_t tensor_count = 0;
  std::uint64_t storage_count = 0;

  /// Backing bytes of small records (pickle, version, ...); a deque so that
  /// pointers into it stay valid as it grows.
  std::deque<std::string> owned_payloads;
  /// Owners of tensor memory that `records[i].data` points into.
  std::vector<std::shared_ptr<const void>> keep_alive;

  /// Appends a record whose payload is a copy of `bytes`.
  void add_owned_record(std::string name, std::string bytes);
  /// The device of the first record of bytes that lives on one
  /// (PlannedRecord::device), -1 when none does.
  int first_device() const;
  bool holds_device_storages() const { return first_device() >= 0; }
};

/// Length of the serialization id record (two 20-digit numbers, as torch writes).
inline constexpr std::size_t kSerializationIdSize = 40;

/// Computes offsets and the file size. Records are laid out back to back in
/// vector order, as torch.save does.
void lay_out(FilePlan& plan);

/// The archive folder torch.save uses for `file_path`: the file's base name
/// without its last extension (`checkpoint_0.pt` -> `checkpoint_0`), or
/// "archive" when that is empty or not ASCII.
std::string archive_folder_for(const std::string& file_path);

}  // namespace ckptw::detail
