// Which checkpoint directories are committed, for resuming: the manifest is
// the commit point, and a rank file that is not the one committed (torn,
// replaced, truncated) makes its directory uncommitted. In a DCP directory
// `.metadata` is the commit point, and where ckptw's checksum sidecar lists
// the data files, one of another size makes it uncommitted.
#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>

#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/error.hpp"
#include "ckptw/dcp.hpp"
#include "commit/manifest.hpp"
#include "read/dcp_checkpoint.hpp"
#include "read/verify.hpp"
#include "read/zip_index.hpp"

namespace ckptw {

std::string uncommitted_reason(const std::string& dir) {
  try {
    std::optional<detail::Manifest> manifest = detail::read_manifest(dir);
    if (!manifest && detail::is_dcp_checkpoint(dir)) {
      if (const auto files = detail::read_dcp_checksums(dir)) {
        for (const detail::DcpDataFile& file : *files) detail::check_dcp_file_size(dir, file);
      }
      return "";
    }
    if (!manifest) {
      return std::string("no commit manifest (") + kManifestFileName + ") and no DCP " + kDcpMetadataFileName;
    }
    for (const detail::ManifestEntry& entry : manifest->files) {
      detail::RandomAccessFile file(dir + "/" + entry.file);
      detail::check_against_manifest_entry(file, detail::read_zip_index(file), entry);
    }
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::string latest_committed(const std::string& root) {
  // (commit time in ns, name, path), newest first.
  std::vector<std::tuple<std::int64_t, std::string, std::string>> candidates;
  DIR* d = ::opendir(root.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return "";
    throw IoError("cannot list checkpoint root", root, "", errno);
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = root + "/" + name;
    struct stat commit_point {};
    if (::stat((path + "/" + kManifestFileName).c_str(), &commit_point) != 0 &&
        ::stat((path + "/" + kDcpMetadataFileName).c_str(), &commit_point) != 0) {
      continue;
    }
    const std::int64_t committed_at =
        static_cast<std::int64_t>(commit_point.st_mtim.tv_sec) * 1000000000 + commit_point.st_mtim.tv_nsec;
    candidates.emplace_back(committed_at, name, path);
  }
  ::closedir(d);
  std::sort(candidates.rbegin(), candidates.rend());
  for (const auto& candidate : candidates) {
    if (uncommitted_reason(std::get<2>(candidate)).empty()) return std::get<2>(candidate);
  }
  return "";
}

}  // namespace ckptw
