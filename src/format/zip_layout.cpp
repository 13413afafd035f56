#include "format/zip_layout.hpp"

#include <algorithm>

#include "util/byte_order.hpp"

namespace ckptw::detail {
namespace {

constexpr std::uint16_t kFlagSizesInDescriptor = 0x0008;
constexpr std::uint16_t kFlagUtf8 = 0x0800;
constexpr std::uint64_t kZip64EndSize = 56;
constexpr std::uint64_t kZip64LocatorSize = 20;

std::uint16_t flags_for(std::uint64_t size) {
  // miniz sets "sizes in data descriptor" only when a descriptor follows.
  return static_cast<std::uint16_t>(kFlagUtf8 | (size ? kFlagSizesInDescriptor : 0));
}

// zip64 extra of a local header: [u64 size, u64 compressed=0] if the size
// needs it, then [u64 header offset] if the offset needs it.
std::string local_zip64_extra(std::uint64_t size, std::uint64_t header_offset) {
  std::string extra;
  if (!record_needs_zip64(size, header_offset)) return extra;
  std::string fields;
  if (size >= kZip32Limit) {
    put_u64(fields, size);
    put_u64(fields, 0);  // miniz streams, so the compressed size is not known here
  }
  if (header_offset >= kZip32Limit) put_u64(fields, header_offset);
  put_u16(extra, 0x0001);
  put_u16(extra, static_cast<std::uint16_t>(fields.size()));
  extra += fields;
  return extra;
}

std::string central_zip64_extra(std::uint64_t size, std::uint64_t header_offset) {
  std::string fields;
  if (size >= kZip32Limit) {
    put_u64(fields, size);
    put_u64(fields, size);
  }
  if (header_offset >= kZip32Limit) put_u64(fields, header_offset);
  if (fields.empty()) return fields;
  std::string extra;
  put_u16(extra, 0x0001);
  put_u16(extra, static_cast<std::uint16_t>(fields.size()));
  return extra + fields;
}

}  // namespace

std::uint64_t payload_offset(std::uint64_t header_offset, std::size_t full_name_size,
                             std::uint64_t size, std::uint32_t alignment) {
  std::uint64_t start = header_offset + kLocalHeaderFixedSize + full_name_size + 4;  // 4: FB header
  if (record_needs_zip64(size, header_offset)) {
    start += 4;
    if (size >= kZip32Limit) start += 16;
    if (header_offset >= kZip32Limit) start += 8;
  }
  std::uint64_t pad = (alignment - start % alignment) % alignment;
  return start + pad;
}

std::string local_file_header(std::string_view full_name, std::uint64_t size,
                              std::uint64_t header_offset, std::uint32_t alignment) {
  std::string out;
  append_local_file_header(out, full_name, size, header_offset, alignment);
  return out;
}

void append_local_file_header(std::string& out, std::string_view full_name, std::uint64_t size,
                              std::uint64_t header_offset, std::uint32_t alignment) {
  std::string zip64 = local_zip64_extra(size, header_offset);
  std::uint64_t payload = payload_offset(header_offset, full_name.size(), size, alignment);
  std::uint64_t fixed_end = header_offset + kLocalHeaderFixedSize + full_name.size() + zip64.size() + 4;
  auto pad = static_cast<std::uint16_t>(payload - fixed_end);

  out.reserve(out.size() + (payload - header_offset));
  put_u32(out, kLocalHeaderSig);
  put_u16(out, 0);  // version needed: miniz writes 0 for stored records
  put_u16(out, flags_for(size));
  put_u16(out, 0);  // method: stored
  put_u16(out, 0);  // time
  put_u16(out, 0);  // date
  put_u32(out, 0);  // crc, sizes: in the data descriptor
  put_u32(out, 0);
  put_u32(out, 0);
  put_u16(out, static_cast<std::uint16_t>(full_name.size()));
  put_u16(out, static_cast<std::uint16_t>(zip64.size() + 4 + pad));
  out.append(full_name);
  out += zip64;
  put_u16(out, 0x4246);  // "FB": PyTorch's alignment padding extra field
  put_u16(out, pad);
  out.append(pad, 'Z');
}

std::uint64_t data_descriptor_size(std::uint64_t size, std::uint64_t header_offset) {
  if (size == 0) return 0;
  return record_needs_zip64(size, header_offset) ? 24 : 16;
}

std::string data_descriptor(std::uint32_t crc, std::uint64_t size, std::uint64_t header_offset) {
  std::string out;
  append_data_descriptor(out, crc, size, header_offset);
  return out;
}

void append_data_descriptor(std::string& out, std::uint32_t crc, std::uint64_t size, std::uint64_t header_offset) {
  if (size == 0) return;
  put_u32(out, kDataDescriptorSig);
  put_u32(out, crc);
  if (record_needs_zip64(size, header_offset)) {
    put_u64(out, size);
    put_u64(out, size);
  } else {
    put_u32(out, static_cast<std::uint32_t>(size));
    put_u32(out, static_cast<std::uint32_t>(size));
  }
}

std::uint64_t central_directory_and_end_size(const std::vector<ZipEntry>& entries) {
  std::uint64_t total = kZip64EndSize + kZip64LocatorSize + kEndSize;
  for (const auto& e : entries) {
    total += kCentralHeaderFixedSize + e.full_name.size() +
             central_zip64_extra(e.size, e.header_offset).size();
  }
  return total;
}

std::string central_directory_and_end(const std::vector<ZipEntry>& entries,
                                      std::uint64_t cd_offset) {
  std::string out;
  for (const auto& e : entries) {
    std::string extra = central_zip64_extra(e.size, e.header_offset);
    put_u32(out, kCentralHeaderSig);
    put_u16(out, 0);  // made by
    put_u16(out, 0);  // needed
    put_u16(out, flags_for(e.size));
    put_u16(out, 0);  // method
    put_u16(out, 0);  // time
    put_u16(out, 0);  // date
    put_u32(out, e.crc32);
    put_u32(out, static_cast<std::uint32_t>(std::min(e.size, kZip32Limit)));
    put_u32(out, static_cast<std::uint32_t>(std::min(e.size, kZip32Limit)));
    put_u16(out, static_cast<std::uint16_t>(e.full_name.size()));
    put_u16(out, static_cast<std::uint16_t>(extra.size()));
    put_u16(out, 0);  // comment
    put_u16(out, 0);  // disk
    put_u16(out, 0);  // internal attributes
    put_u32(out, 0);  // external attributes
    put_u32(out, static_cast<std::uint32_t>(std::min(e.header_offset, kZip32Limit)));
    out += e.full_name;
    out += extra;
  }
  const std::uint64_t cd_size = out.size();
  const std::uint64_t n = entries.size();
  const std::uint64_t zip64_end_offset = cd_offset + cd_size;

  put_u32(out, kZip64EndSig);
  put_u64(out, kZip64EndSize - 12);  // size of the rest of the record
  put_u16(out, 0x031E);              // made by (as miniz writes)
  put_u16(out, 0x002D);              // needed: 4.5
  put_u32(out, 0);
  put_u32(out, 0);
  put_u64(out, n);
  put_u64(out, n);
  put_u64(out, cd_size);
  put_u64(out, cd_offset);

  put_u32(out, kZip64LocatorSig);
  put_u32(out, 0);
  put_u64(out, zip64_end_offset);
  put_u32(out, 1);

  put_u32(out, kEndSig);
  put_u16(out, 0);
  put_u16(out, 0);
  put_u16(out, static_cast<std::uint16_t>(std::min<std::uint64_t>(n, 0xFFFF)));
  put_u16(out, static_cast<std::uint16_t>(std::min<std::uint64_t>(n, 0xFFFF)));
  put_u32(out, static_cast<std::uint32_t>(std::min(cd_size, kZip32Limit)));
  put_u32(out, static_cast<std::uint32_t>(std::min(cd_offset, kZip32Limit)));
  put_u16(out, 0);
  return out;
}

}  // namespace ckptw::detail
