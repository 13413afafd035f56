// ckptw::locate_tensors: where each tensor of a .pt archive lies in its file,
// from inspect_pt (kept apart from it: pt_inspect is torch-free, built into
// the fuzz targets without LibTorch; the public header is not).
#include <algorithm>

#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/error.hpp"
#include "read/pt_inspect.hpp"

namespace ckptw {

std::vector<StoredTensor> locate_tensors(const std::string& file, std::uint64_t offset, std::uint64_t length) {
  const detail::RandomAccessFile whole(file);
  if (length == 0 && offset <= whole.size()) length = whole.size() - offset;
  const detail::RangeSource archive(whole, offset, length);
  const detail::InspectedFile inspected = detail::inspect_pt(archive);
  if (const detail::ZipRecord* order = inspected.index.find("byteorder"); order != nullptr) {
    if (archive.read(order->payload_offset, static_cast<std::size_t>(std::min<std::uint64_t>(order->size, 16))) !=
        "little") {
      throw FormatError("the archive at offset " + std::to_string(offset) + " is not stored little-endian", file);
    }
  }
  std::vector<StoredTensor> located;
  located.reserve(inspected.tensors.size());
  for (const detail::InspectedTensor& t : inspected.tensors) {
    const detail::ZipRecord* record = inspected.index.find("data/" + t.tensor.storage_key);  // inspect_pt checked it
    if (record->method != 0) {
      throw FormatError("storage record data/" + t.tensor.storage_key + " is compressed", file, t.key_path);
    }
    if (t.tensor.conj || t.tensor.neg) {
      throw FormatError("the tensor has a lazy conjugate or negative bit: its bytes are not its values", file,
                        t.key_path);
    }
    located.push_back(StoredTensor{t.key_path, t.tensor.dtype, t.tensor.sizes, t.tensor.strides,
                                   t.tensor.storage_offset, offset + record->payload_offset,
                                   t.tensor.storage_nbytes});
  }
  return located;
}

}  // namespace ckptw
