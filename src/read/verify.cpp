#include "read/verify.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <dirent.h>

#include "checksum/crc32.hpp"
#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/dcp.hpp"
#include "ckptw/error.hpp"
#include "read/dcp_checkpoint.hpp"
#include "read/pt_inspect.hpp"

namespace ckptw::detail {
namespace {

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

FileVerdict verify_file(const std::string& path, const ManifestEntry* entry) {
  FileVerdict verdict;
  verdict.path = path;
  try {
    RandomAccessFile file(path);
    InspectedFile inspected = inspect_pt(file);
    verify_record_crcs(file, inspected.index);
    if (entry) check_against_manifest_entry(file, inspected.index, *entry);
    verdict.ok = true;
    verdict.detail = std::to_string(inspected.index.records.size()) + " records, " +
                     std::to_string(inspected.tensors.size()) + " tensors, " + std::to_string(file.size()) +
                     " bytes, CRCs verified" + (entry ? ", matches the manifest" : "");
  } catch (const std::exception& e) {
    verdict.detail = e.what();
  }
  return verdict;
}

// The verdicts of a DCP directory: one per data file its checksum sidecars
// list (one sidecar, or one per rank's metadata file where the ranks saved
// without collectives), or one saying why there is nothing to check.
std::vector<FileVerdict> verify_dcp_directory(const std::string& dir, const std::vector<std::string>& metadata_files) {
  std::vector<FileVerdict> verdicts;
  for (const std::string& metadata_file : metadata_files) {
    const std::string sidecar = metadata_file + kDcpChecksumsSuffix;
    std::optional<std::vector<DcpDataFile>> files;
    try {
      files = read_dcp_checksums(dir, metadata_file);
    } catch (const std::exception& e) {
      verdicts.push_back(FileVerdict{dir + "/" + sidecar, false, e.what()});
      continue;
    }
    if (!files) {
      verdicts.push_back(FileVerdict{dir, false, without_dcp_checksums(metadata_file)});
      continue;
    }
    for (const DcpDataFile& file : *files) {
      FileVerdict verdict{dir + "/" + file.name, false, ""};
      try {
        verify_dcp_file(dir, file);
        verdict.ok = true;
        verdict.detail = std::to_string(file.items.size()) + " DCP items, " + std::to_string(file.size) +
                         " bytes, CRCs verified, matches " + sidecar;
      } catch (const std::exception& e) {
        verdict.detail = e.what();
      }
      verdicts.push_back(std::move(verdict));
    }
  }
  return verdicts;
}

}  // namespace

std::optional<Manifest> read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestFileName;
  if (!exists(path)) return std::nullopt;
  RandomAccessFile file(path);
  if (file.size() > (std::uint64_t{1} << 24)) throw FormatError("manifest larger than 16 MiB", path);
  return decode_manifest(file.read(0, static_cast<std::size_t>(file.size())), path);
}

void check_against_manifest_entry(const ByteSource& file, const ZipIndex& index, const ManifestEntry& entry) {
  if (entry.bytes != file.size()) {
    throw FormatError("file holds " + std::to_string(file.size()) + " bytes, the manifest committed " +
                          std::to_string(entry.bytes) + ": not the committed file",
                      file.path());
  }
  std::string buffer;
  std::uint32_t crc = 0;
  for (std::uint64_t offset = index.central_directory_offset; offset < file.size();) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(file.size() - offset, 1 << 20));
    buffer.resize(n);
    file.read(offset, buffer.data(), n);
    crc = crc32_update(crc, buffer.data(), n);
    offset += n;
  }
  if (crc != entry.directory_crc32) {
    throw FormatError("zip directory checksum differs from the manifest: not the committed file", file.path());
  }
}

std::vector<FileVerdict> verify_path(const std::string& path) {
  if (!is_directory(path)) return {verify_file(path, nullptr)};
  std::vector<FileVerdict> verdicts;
  std::optional<Manifest> manifest;
  try {
    manifest = read_manifest(path);
  } catch (const std::exception& e) {
    verdicts.push_back(FileVerdict{path + "/" + kManifestFileName, false, e.what()});
    return verdicts;
  }
  if (manifest) {
    for (const auto& entry : manifest->files) verdicts.push_back(verify_file(path + "/" + entry.file, &entry));
    return verdicts;
  }
  if (const auto metadata_files = dcp_metadata_files(path); !metadata_files.empty()) {
    return verify_dcp_directory(path, metadata_files);
  }
  verdicts.emplace_back();
  verdicts.back().path = path;
  verdicts.back().detail = "not committed: no ";
  verdicts.back().detail += kManifestFileName;
  std::vector<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (rank_of_file_name(name) >= 0) {
        names.push_back(name);
      }
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) verdicts.push_back(verify_file(path + "/" + name, nullptr));
  return verdicts;
}

}  // namespace ckptw::detail

namespace ckptw {

RecordCheck verify_records(const std::string& file, bool allow_records_without_crc) {
  detail::RandomAccessFile source(file);
  const detail::ZipIndex index = detail::read_zip_index(source);
  RecordCheck check;
  check.records = index.records.size();
  detail::verify_record_crcs(source, index, allow_records_without_crc ? &check.without_crc : nullptr);
  return check;
}

}  // namespace ckptw
