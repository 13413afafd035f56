// Reading the record index of a .pt zip file, which is untrusted input.
//
// Every structure is bounds-checked against the file size before it is used,
// no allocation is larger than the file justifies, records must lie inside the
// file without overlapping, and every name must sit in the one archive folder.
// Anything else is a ckptw::FormatError naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ckptw::detail {

/// Read access to the bytes of a checkpoint by offset: a file, or memory
/// (the fuzzers).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::uint64_t size() const noexcept = 0;
  /// Names the source in errors (the file's path).
  virtual const std::string& path() const noexcept = 0;
  /// Reads exactly `size` bytes at `offset`; throws ckptw::FormatError when the
  /// range lies outside the source, ckptw::IoError when the read fails.
  void read(std::uint64_t offset, void* out, std::size_t size) const;
  std::string read(std::uint64_t offset, std::size_t size) const;

 protected:
  virtual void read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const = 0;
};

/// pread on a regular file.
class RandomAccessFile final : public ByteSource {
 public:
  /// Throws ckptw::IoError naming `path` when it cannot be opened.
  explicit RandomAccessFile(std::string path);
  ~RandomAccessFile() override;
  RandomAccessFile(const RandomAccessFile&) = delete;
  RandomAccessFile& operator=(const RandomAccessFile&) = delete;

  std::uint64_t size() const noexcept override { return size_; }
  const std::string& path() const noexcept override { return path_; }
  int fd() const noexcept { return fd_; }

 protected:
  void read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const override;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

/// The bytes [offset, offset + size) of another source, as a source of its
/// own (a .pt archive inside a torch.distributed.checkpoint data file).
class RangeSource final : public ByteSource {
 public:
  /// Throws ckptw::FormatError naming `base` when the range lies outside it.
  RangeSource(const ByteSource& base, std::uint64_t offset, std::uint64_t size);
  std::uint64_t size() const noexcept override { return size_; }
  const std::string& path() const noexcept override { return base_.path(); }

 protected:
  void read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const override;

 private:
  const ByteSource& base_;
  std::uint64_t offset_;
  std::uint64_t size_;
};

/// A checkpoint held in memory (borrowed bytes).
class MemorySource final : public ByteSource {
 public:
  MemorySource(const void* data, std::size_t size, std::string name)
      : data_(static_cast<const unsigned char*>(data)), size_(size), name_(std::move(name)) {}
  std::uint64_t size() const noexcept override { return size_; }
  const std::string& path() const noexcept override { return name_; }

 protected:
  void read_in_bounds(std::uint64_t offset, void* out, std::size_t size) const override;

 private:
  const unsigned char* data_;
  std::size_t size_;
  std::string name_;
};

struct ZipRecord {
  std::string name;                 ///< without the archive folder: "data/0"
  std::uint64_t header_offset = 0;  ///< local file header
  std::uint64_t payload_offset = 0; ///< first payload byte
  std::uint64_t size = 0;           ///< uncompressed payload bytes
  std::uint64_t stored_size = 0;    ///< bytes in the file (== size unless deflated)
  std::uint32_t crc32 = 0;          ///< from the central directory
  std::uint16_t method = 0;         ///< 0 stored, 8 deflated
};

struct ZipIndex {
  std::string folder;
  std::uint64_t central_directory_offset = 0;  ///< the directory and end records run from here to the end
  std::vector<ZipRecord> records;  ///< central directory order

  /// The record named `name` inside the folder, or nullptr.
  const ZipRecord* find(std::string_view name) const;
};

ZipIndex read_zip_index(const ByteSource& file);

}  // namespace ckptw::detail
