// .data/serialization_id as torch.save computes it
// (caffe2/serialize/inline_container.cc, PyTorchStreamWriter): 20 digits of
// a hash of the names of the records written before it, 20 digits of a hash
// of their CRC-32s. It is deterministic, so reproducing it makes a ckptw file
// and torch.save's file of the same object identical as whole files.
//
// The name hash folds c10::hash of each name with c10::hash_combine in the
// iteration order of torch's std::unordered_set of written names: the same
// container, given the same names in the same order, iterates the same way.
// The CRC hash folds the CRC-32 field of every write that torch's writer sees
// starting with a data-descriptor signature: the descriptor of each record
// that has bytes (an empty record has none), and also a payload of 8 bytes or
// more that happens to start with one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_set>

namespace ckptw::detail {

class SerializationId {
 public:
  /// A record as written, in file order: `name` without the archive folder
  /// ("data/0"), its payload (host memory, `size` bytes; only the first 8
  /// are read), its CRC-32.
  void add(const std::string& name, const unsigned char* payload, std::uint64_t size, std::uint32_t crc32);
  /// The 40 ASCII digits.
  std::string value() const;

 private:
  std::unordered_set<std::string> names_;
  std::size_t crc_hash_ = 0;
};

}  // namespace ckptw::detail
