#include "read/dcp_checkpoint.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "checksum/crc32.hpp"
#include "ckptw/dcp.hpp"
#include "ckptw/error.hpp"
#include "read/zip_index.hpp"
#include "util/rank_name.hpp"

namespace ckptw::detail {
namespace {

std::string hex32(std::uint32_t value) {
  char text[11];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

void check_size(const ByteSource& file, const DcpDataFile& data) {
  if (file.size() != data.size) {
    throw FormatError("data file holds " + std::to_string(file.size()) + " bytes, " + std::to_string(data.size) +
                          " were committed",
                      file.path());
  }
}

}  // namespace

bool is_dcp_checkpoint(const std::string& dir) {
  struct stat st {};
  return ::stat((dir + "/" + kDcpMetadataFileName).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> dcp_metadata_files(const std::string& dir) {
  if (is_dcp_checkpoint(dir)) return {kDcpMetadataFileName};
  std::vector<std::pair<int, std::string>> ranks;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      const int rank = rank_between(name, "__", kDcpMetadataFileName);  // __{rank}.metadata
      if (rank >= 0) ranks.emplace_back(rank, name);
    }
    ::closedir(d);
  }
  std::sort(ranks.begin(), ranks.end());
  std::vector<std::string> names;
  for (auto& [rank, name] : ranks) names.push_back(std::move(name));
  return names;
}

std::string without_dcp_checksums(const std::string& metadata_file) {
  return "DCP checkpoint without ckptw's checksums (" + metadata_file + kDcpChecksumsSuffix +
         "): written by another writer, nothing to verify against";
}

std::optional<std::vector<DcpDataFile>> read_dcp_checksums(const std::string& dir, const std::string& metadata_file) {
  const std::string path = dir + "/" + metadata_file + kDcpChecksumsSuffix;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  RandomAccessFile file(path);
  if (file.size() > (std::uint64_t{1} << 30)) throw FormatError("DCP checksum file larger than 1 GiB", path);
  std::vector<DcpDataFile> files;
  try {
    const nlohmann::json doc = nlohmann::json::parse(file.read(0, static_cast<std::size_t>(file.size())));
    if (doc.at("format") != "ckptw-dcp-checksums" || doc.at("version") != 1) {
      throw FormatError("not a version-1 ckptw DCP checksum file", path);
    }
    for (const auto& [name, entry] : doc.at("files").items()) {
      if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
        throw FormatError("data file name '" + name + "' is not a plain file name", path);
      }
      DcpDataFile data{name, entry.at("size").get<std::uint64_t>(), {}};
      for (const auto& item : entry.at("items")) {
        data.items.push_back(DcpItem{item.at("item").get<std::string>(), item.at("offset").get<std::uint64_t>(),
                                     item.at("length").get<std::uint64_t>(), item.at("crc32").get<std::uint32_t>()});
      }
      files.push_back(std::move(data));
    }
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(std::string("malformed DCP checksum file: ") + e.what(), path);
  }
  return files;
}

void check_dcp_file_size(const std::string& dir, const DcpDataFile& data) {
  check_size(RandomAccessFile(dir + "/" + data.name), data);
}

void verify_dcp_file(const std::string& dir, const DcpDataFile& data) {
  RandomAccessFile file(dir + "/" + data.name);
  check_size(file, data);
  std::string buffer;
  for (const DcpItem& item : data.items) {
    if (item.offset > file.size() || item.length > file.size() - item.offset) {
      throw FormatError("item " + item.item + " at offset " + std::to_string(item.offset) + " (" +
                            std::to_string(item.length) + " bytes) lies outside the file",
                        file.path());
    }
    std::uint32_t crc = 0;
    for (std::uint64_t done = 0; done < item.length;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(item.length - done, 8 << 20));
      buffer.resize(n);
      file.read(item.offset + done, buffer.data(), n);
      crc = crc32_update(crc, buffer.data(), n);
      done += n;
    }
    if (crc != item.crc32) {
      throw FormatError("item " + item.item + " at offset " + std::to_string(item.offset) + " (" +
                            std::to_string(item.length) + " bytes) fails its CRC-32 (" + hex32(crc) + ", recorded " +
                            hex32(item.crc32) + ")",
                        file.path());
    }
  }
}

}  // namespace ckptw::detail

namespace ckptw {

std::size_t verify_dcp_checkpoint(const std::string& dir) {
  const std::vector<std::string> metadata_files = detail::dcp_metadata_files(dir);
  if (metadata_files.empty()) {
    throw FormatError(std::string("not a committed DCP checkpoint: no ") + kDcpMetadataFileName +
                          " (nor a rank's __{rank}" + kDcpMetadataFileName + ")",
                      dir);
  }
  std::size_t items = 0;
  for (const std::string& metadata_file : metadata_files) {
    const auto files = detail::read_dcp_checksums(dir, metadata_file);
    if (!files) {
      throw FormatError(detail::without_dcp_checksums(metadata_file), dir);
    }
    for (const detail::DcpDataFile& file : *files) {
      detail::verify_dcp_file(dir, file);
      items += file.items.size();
    }
  }
  return items;
}

}  // namespace ckptw
