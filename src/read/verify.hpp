// Checking checkpoints without loading them: structure, every CRC, and the
// commit manifest. Shared by CheckpointReader and `ckptw verify`.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "commit/manifest.hpp"
#include "read/zip_index.hpp"

namespace ckptw::detail {

/// The manifest of checkpoint directory `dir`, or nullopt when it has none.
/// Throws ckptw::FormatError when it exists but is malformed.
std::optional<Manifest> read_manifest(const std::string& dir);

/// Throws ckptw::FormatError when `file` is not the file `entry` committed
/// (size, or the CRC-32 of its zip directory, differs).
void check_against_manifest_entry(const ByteSource& file, const ZipIndex& index, const ManifestEntry& entry);

struct FileVerdict {
  std::string path;
  bool ok = false;
  std::string detail;  ///< "12 records, 9 tensors, 2323 bytes" or the error
};

/// Verifies a .pt file, or a checkpoint directory (manifest plus every rank
/// file it lists; a directory without a manifest is reported uncommitted), or
/// a DCP checkpoint directory (every data file its checksum sidecar lists).
/// Never throws for bad content: every problem is a verdict.
std::vector<FileVerdict> verify_path(const std::string& path);

}  // namespace ckptw::detail
