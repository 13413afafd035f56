// The zip container exactly as PyTorch's miniz-based writer lays it out
// (docs/format.md, shared spec §3): stored records, a local header whose "FB"
// extra field pads each payload to the storage alignment, a data descriptor
// after every non-empty payload, and the central directory followed by the
// zip64 end record, the zip64 locator and the classic end record.
//
// Pure functions of sizes and offsets: no I/O, no torch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ckptw::detail {

inline constexpr std::uint64_t kZip32Limit = 0xFFFFFFFFull;

// Record signatures (APPNOTE.TXT), shared by the writer and the reader.
inline constexpr std::uint32_t kLocalHeaderSig = 0x04034b50;
inline constexpr std::uint32_t kDataDescriptorSig = 0x08074b50;
inline constexpr std::uint32_t kCentralHeaderSig = 0x02014b50;
inline constexpr std::uint32_t kZip64EndSig = 0x06064b50;
inline constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
inline constexpr std::uint32_t kEndSig = 0x06054b50;
inline constexpr std::uint64_t kLocalHeaderFixedSize = 30;
inline constexpr std::uint64_t kCentralHeaderFixedSize = 46;
inline constexpr std::uint64_t kEndSize = 22;

/// miniz switches a record to zip64 when its size or its local header offset
/// reaches 0xFFFFFFFF (>=, not >).
inline bool record_needs_zip64(std::uint64_t size, std::uint64_t header_offset) {
  return size >= kZip32Limit || header_offset >= kZip32Limit;
}

/// Offset of the payload of a record whose local header starts at
/// `header_offset` (torch's getOffset / getPadding arithmetic).
std::uint64_t payload_offset(std::uint64_t header_offset, std::size_t full_name_size,
                             std::uint64_t size, std::uint32_t alignment);

/// Local file header, name and extra fields; its length is
/// payload_offset(...) - header_offset. The append_ form adds it to `out`,
/// so that a writer of many records reuses one buffer.
std::string local_file_header(std::string_view full_name, std::uint64_t size,
                              std::uint64_t header_offset, std::uint32_t alignment);
void append_local_file_header(std::string& out, std::string_view full_name, std::uint64_t size,
                              std::uint64_t header_offset, std::uint32_t alignment);

/// Bytes of the data descriptor that follows a payload: 0 for an empty record,
/// 24 for a zip64 record, 16 otherwise.
std::uint64_t data_descriptor_size(std::uint64_t size, std::uint64_t header_offset);
std::string data_descriptor(std::uint32_t crc, std::uint64_t size, std::uint64_t header_offset);
void append_data_descriptor(std::string& out, std::uint32_t crc, std::uint64_t size, std::uint64_t header_offset);

/// One finished record, as the central directory lists it.
struct ZipEntry {
  std::string full_name;      ///< "folder/record"
  std::uint64_t size = 0;     ///< payload bytes (stored: compressed == uncompressed)
  std::uint64_t header_offset = 0;
  std::uint32_t crc32 = 0;    ///< 0 for an empty record
};

/// Size of the central directory plus the three end records; depends on
/// names, sizes and offsets only, so it is known before any CRC is.
std::uint64_t central_directory_and_end_size(const std::vector<ZipEntry>& entries);

/// Central directory for `entries` (in file order) starting at `cd_offset`,
/// followed by the zip64 end record, the zip64 locator and the end record.
std::string central_directory_and_end(const std::vector<ZipEntry>& entries,
                                      std::uint64_t cd_offset);

}  // namespace ckptw::detail
