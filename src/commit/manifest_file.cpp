#include "commit/manifest_file.hpp"

#include <cerrno>

#include "ckptw/error.hpp"
#include "ckptw/types.hpp"

namespace ckptw::detail {

void remove_manifest(IoBackend& io, const std::string& manifest_path, const std::string& dir) {
  int rc = io.unlink(manifest_path);
  if (rc == -ENOENT) return;
  if (rc < 0) throw IoError("cannot remove the previous commit manifest", manifest_path, "", -rc);
  if (int sync = io.fsync_directory(dir); sync < 0) {
    throw IoError("fsync of the checkpoint directory failed", dir, "", -sync);
  }
}

std::unique_ptr<TempFile> prepare_manifest(IoBackend& io, const std::string& manifest_path,
                                           const std::vector<Vote>& votes) {
  Manifest manifest;
  manifest.world_size = static_cast<int>(votes.size());
  for (std::size_t r = 0; r < votes.size(); ++r) {
    manifest.files.push_back(ManifestEntry{static_cast<int>(r), rank_file_name(static_cast<int>(r)), votes[r].bytes,
                                           votes[r].directory_crc32});
  }
  const std::string text = encode_manifest(manifest);
  auto file = std::make_unique<TempFile>(io, manifest_path, /*direct=*/false);
  if (int rc = io.write_at(file->fd(), text.data(), text.size(), 0); rc < 0) {
    throw IoError("cannot write the commit manifest", file->temp_path(), "", -rc);
  }
  return file;  // fsynced by TempFile::publish
}

void publish_manifest(IoBackend& io, TempFile& manifest, bool fsync) {
  try {
    manifest.publish(fsync);
  } catch (...) {
    if (manifest.published()) (void)io.unlink(manifest.final_path());
    throw;
  }
}

}  // namespace ckptw::detail
