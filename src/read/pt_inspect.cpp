#include "read/pt_inspect.hpp"

#include <algorithm>
#include <cstdio>

#include "checksum/crc32.hpp"
#include "ckptw/error.hpp"

namespace ckptw::detail {
namespace {

constexpr std::uint64_t kMaxPickleBytes = std::uint64_t{1} << 31;

void collect(const PickleValue* v, const std::string& key_path, std::vector<InspectedTensor>& out,
             const std::string& path, std::size_t depth) {
  using Kind = PickleValue::Kind;
  if (depth > kMaxPickleDepth) throw FormatError("containers nested too deeply (or cyclic)", path, key_path);
  switch (v->kind) {
    case Kind::kTensor:
      out.push_back({key_path, v->tensor});
      break;
    case Kind::kDict:
      for (const auto& [key, value] : v->entries) {
        std::string name = key->kind == Kind::kString ? key->text
                           : key->kind == Kind::kInt  ? std::to_string(key->integer)
                                                      : "<key>";
        collect(value, key_path.empty() ? name : key_path + "." + name, out, path, depth + 1);
      }
      break;
    case Kind::kList:
    case Kind::kTuple:
      for (std::size_t i = 0; i < v->items.size(); ++i) {
        collect(v->items[i], key_path + "[" + std::to_string(i) + "]", out, path, depth + 1);
      }
      break;
    case Kind::kStorage:
    case Kind::kGlobal:
      throw FormatError("a bare storage or global is not a state dict value", path, key_path);
    default:
      break;
  }
}

}  // namespace

std::string read_data_pkl(const ByteSource& file, const ZipIndex& index, bool verify_crc) {
  const std::string& path = file.path();
  const ZipRecord* pickle = index.find("data.pkl");
  if (pickle == nullptr) throw FormatError("no data.pkl record", path);
  if (pickle->method != 0) throw FormatError("data.pkl is compressed; only stored records are read", path);
  if (pickle->size > kMaxPickleBytes) throw FormatError("data.pkl larger than 2 GiB", path);
  std::string bytes = file.read(pickle->payload_offset, static_cast<std::size_t>(pickle->size));
  if (verify_crc && crc32_update(0, bytes.data(), bytes.size()) != pickle->crc32) {
    throw FormatError("CRC-32 mismatch in record data.pkl at offset " + std::to_string(pickle->payload_offset) +
                          (pickle->crc32 == 0 ? kNoCrcRecordedHint : ""),
                      path);
  }
  return bytes;
}

InspectedFile inspect_pt(const std::string& path) {
  RandomAccessFile file(path);
  return inspect_pt(file);
}

InspectedFile inspect_pt(const ByteSource& file) {
  const std::string& path = file.path();
  InspectedFile result;
  result.path = path;
  result.file_size = file.size();
  result.index = read_zip_index(file);
  result.pickle = read_pickle(read_data_pkl(file, result.index, /*verify_crc=*/false), path);
  collect(result.pickle->root, "", result.tensors, path, 0);

  for (const auto& t : result.tensors) {
    const ZipRecord* record = result.index.find("data/" + t.tensor.storage_key);
    if (record == nullptr) throw FormatError("storage record data/" + t.tensor.storage_key + " is missing", path, t.key_path);
    if (record->size != t.tensor.storage_nbytes) {
      throw FormatError("storage record data/" + t.tensor.storage_key + " holds " + std::to_string(record->size) +
                            " bytes, the tensor's storage needs " + std::to_string(t.tensor.storage_nbytes),
                        path, t.key_path);
    }
  }
  return result;
}

void verify_record_crcs(const std::string& path, const ZipIndex& index) {
  RandomAccessFile file(path);
  verify_record_crcs(file, index);
}

void verify_record_crcs(const ByteSource& file, const ZipIndex& index, std::vector<std::string>* without_crc) {
  std::string buffer;
  for (const auto& record : index.records) {
    if (record.method != 0) continue;
    std::uint32_t crc = 0;
    for (std::uint64_t done = 0; done < record.size;) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(record.size - done, 8u << 20));
      buffer.resize(n);
      file.read(record.payload_offset + done, buffer.data(), n);
      crc = crc32_update(crc, buffer.data(), n);
      done += n;
    }
    if (crc != record.crc32) {
      if (record.crc32 == 0 && without_crc != nullptr) {
        without_crc->push_back(record.name);
        continue;
      }
      char text[160];
      std::snprintf(text, sizeof text, "CRC-32 mismatch in record %s at offset %llu: computed %08x, directory says %08x",
                    record.name.c_str(), static_cast<unsigned long long>(record.payload_offset), crc, record.crc32);
      throw FormatError(text + std::string(record.crc32 == 0 ? kNoCrcRecordedHint : ""), file.path());
    }
  }
}

}  // namespace ckptw::detail
