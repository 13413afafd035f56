#include "read/zip_index.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckptw/error.hpp"
#include "format/zip_layout.hpp"
#include "util/byte_order.hpp"

namespace ckptw::detail {
namespace {

constexpr std::size_t kMaxComment = 0xFFFF;

std::uint64_t le(const std::string& bytes, std::size_t at, int width) {
  return get_le(reinterpret_cast<const unsigned char*>(bytes.data()) + at, width);
}

}  // namespace

RandomAccessFile::RandomAccessFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw IoError("cannot open checkpoint file", path_, "", errno);
  struct stat st {};
  if (::fstat(fd_, &st) < 0) {
    int err = errno;
    ::close(fd_);
    throw IoError("cannot stat checkpoint file", path_, "", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw FormatError("not a regular file", path_);
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
}

RandomAccessFile::~RandomAccessFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ByteSource::read(std::uint64_t offset, void* out, std::size_t size) const {
  const std::uint64_t total = this->size();
  if (offset > total || size > total - offset) {
    throw FormatError("truncated file: needs bytes [" + std::to_string(offset) + ", " +
                          std::to_string(offset + size) + ") of " + std::to_string(total),
                      path());
  }
  read_in_bounds(offset, out, size);
}

std::string ByteSource::read(std::uint64_t offset, std::size_t size) const {
  if (size > this->size()) read(offset, nullptr, size);  // throws: no allocation beyond the source
  std::string bytes(size, '\0');
  read(offset, bytes.data(), size);
  return bytes;
}

RangeSource::RangeSource(const ByteSource& base, std::uint64_t offset, std::uint64_t size)
    : base_(base), offset_(offset), size_(size) {
  if (offset > base.size() || size > base.size() - offset) {
    throw FormatError("the range of " + std::to_string(size) + " bytes at offset " + std::to_string(offset) +
                          " lies outside the file of " + std::to_string(base.size()) + " bytes",
                      base.path());
  }
}

void RangeSource::read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const {
  base_.read(offset_ + offset, out, size);
}

void MemorySource::read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const {
  if (size > 0) std::memcpy(out, data_ + offset, size);
}

void RandomAccessFile::read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    ssize_t n = ::pread(fd_, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError("read failed", path_, "", errno);
    }
    if (n == 0) throw FormatError("file shrank while being read", path_);
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

const ZipRecord* ZipIndex::find(std::string_view name) const {
  for (const auto& record : records) {
    if (record.name == name) return &record;
  }
  return nullptr;
}

ZipIndex read_zip_index(const ByteSource& file) {
  const std::string& path = file.path();
  const std::uint64_t file_size = file.size();
  auto fail = [&](const std::string& what) -> FormatError { return FormatError("not a valid .pt zip: " + what, path); };
  if (file_size < kEndSize + 4) throw fail("file of " + std::to_string(file_size) + " bytes is too small");
  if (le(file.read(0, 4), 0, 4) != kLocalHeaderSig) throw fail("does not start with a zip local header");

  // The end record sits in the last 22 + 65535 bytes (a trailing comment may follow it).
  const std::uint64_t tail_size = std::min<std::uint64_t>(file_size, kEndSize + kMaxComment);
  const std::uint64_t tail_offset = file_size - tail_size;
  const std::string tail = file.read(tail_offset, tail_size);
  std::size_t end_at = std::string::npos;
  for (std::size_t i = tail.size() - kEndSize + 1; i-- > 0;) {
    if (le(tail, i, 4) == kEndSig) {
      end_at = i;
      break;
    }
  }
  if (end_at == std::string::npos) throw fail("no end-of-central-directory record");

  std::uint64_t entries = le(tail, end_at + 10, 2);
  std::uint64_t cd_size = le(tail, end_at + 12, 4);
  std::uint64_t cd_offset = le(tail, end_at + 16, 4);
  const std::uint64_t end_offset = tail_offset + end_at;
  if (end_offset >= 20) {
    std::string locator = file.read(end_offset - 20, 20);
    if (le(locator, 0, 4) == kZip64LocatorSig) {
      std::uint64_t z64_offset = le(locator, 8, 8);
      if (z64_offset > end_offset || end_offset - z64_offset < 56) throw fail("zip64 end record outside the file");
      std::string z64 = file.read(z64_offset, 56);
      if (le(z64, 0, 4) != kZip64EndSig) throw fail("bad zip64 end record signature");
      if (le(z64, 24, 8) != le(z64, 32, 8)) throw fail("multi-disk archives are not supported");
      entries = le(z64, 32, 8);
      cd_size = le(z64, 40, 8);
      cd_offset = le(z64, 48, 8);
    }
  }
  if (cd_offset > file_size || cd_size > file_size - cd_offset) throw fail("central directory outside the file");
  if (entries == 0) throw fail("archive has no records");
  if (entries > cd_size / 46) throw fail("central directory too small for " + std::to_string(entries) + " records");

  const std::string cd = file.read(cd_offset, cd_size);
  ZipIndex index;
  index.central_directory_offset = cd_offset;
  index.records.reserve(entries);
  std::size_t at = 0;
  for (std::uint64_t i = 0; i < entries; ++i) {
    if (cd.size() - at < 46 || le(cd, at, 4) != kCentralHeaderSig) throw fail("bad central directory entry " + std::to_string(i));
    const auto flags = static_cast<std::uint16_t>(le(cd, at + 8, 2));
    const auto method = static_cast<std::uint16_t>(le(cd, at + 10, 2));
    ZipRecord record;
    record.crc32 = static_cast<std::uint32_t>(le(cd, at + 16, 4));
    std::uint64_t compressed = le(cd, at + 20, 4);
    std::uint64_t size = le(cd, at + 24, 4);
    const std::size_t name_len = le(cd, at + 28, 2);
    const std::size_t extra_len = le(cd, at + 30, 2);
    const std::size_t comment_len = le(cd, at + 32, 2);
    std::uint64_t header_offset = le(cd, at + 42, 4);
    if (cd.size() - at - 46 < name_len + extra_len + comment_len) throw fail("central directory entry overruns");
    std::string full_name = cd.substr(at + 46, name_len);
    // zip64 extra: only the fields whose 32-bit value is saturated are present, in this order.
    std::size_t x = at + 46 + name_len;
    const std::size_t x_end = x + extra_len;
    while (x + 4 <= x_end) {
      const std::uint64_t id = le(cd, x, 2), len = le(cd, x + 2, 2);
      if (x + 4 + len > x_end) throw fail("extra field overruns in " + full_name);
      if (id == 0x0001) {
        std::size_t f = x + 4;
        auto take = [&](std::uint64_t& field) {
          if (field != 0xFFFFFFFF) return;
          if (f + 8 > x + 4 + len) throw fail("short zip64 extra in " + full_name);
          field = le(cd, f, 8);
          f += 8;
        };
        take(size);
        take(compressed);
        take(header_offset);
      }
      x += 4 + len;
    }
    at = x_end + comment_len;

    if (flags & 0x0001) throw fail("encrypted record " + full_name);
    if (method != 0 && method != 8) throw fail("unsupported compression method in " + full_name);
    if (method == 0 && compressed != size) throw fail("stored record with differing sizes: " + full_name);
    auto slash = full_name.find('/');
    if (slash == std::string::npos || slash == 0) throw fail("record '" + full_name + "' is not inside a folder");
    std::string folder = full_name.substr(0, slash);
    if (index.records.empty()) index.folder = folder;
    if (folder != index.folder) throw fail("record '" + full_name + "' is outside folder '" + index.folder + "'");
    record.name = full_name.substr(slash + 1);
    record.method = method;
    record.header_offset = header_offset;

    if (header_offset > cd_offset || cd_offset - header_offset < 30) throw fail("local header of " + full_name + " outside the data area");
    std::string local = file.read(header_offset, 30);
    if (le(local, 0, 4) != kLocalHeaderSig) throw fail("bad local header signature for " + full_name);
    record.payload_offset = header_offset + 30 + le(local, 26, 2) + le(local, 28, 2);
    if (record.payload_offset > cd_offset || compressed > cd_offset - record.payload_offset) {
      throw fail("payload of " + full_name + " runs past the data area");
    }
    record.size = size;
    record.stored_size = compressed;
    index.records.push_back(std::move(record));
  }

  std::vector<const ZipRecord*> by_offset;
  for (const auto& r : index.records) by_offset.push_back(&r);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const ZipRecord* a, const ZipRecord* b) { return a->header_offset < b->header_offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i - 1]->payload_offset + by_offset[i - 1]->stored_size > by_offset[i]->header_offset) {
      throw fail("records '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap");
    }
  }
  return index;
}

}  // namespace ckptw::detail
