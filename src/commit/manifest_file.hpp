// The commit manifest on disk: rank 0 removes the previous one before any
// rank publishes a new file, writes the new one under a temporary name once
// every rank's file is durable, and renames it into place (the commit point).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "commit/atomic_file.hpp"
#include "commit/manifest.hpp"
#include "io/io_backend.hpp"

namespace ckptw::detail {

/// Removes `manifest_path` (absent is fine) and fsyncs `dir`, so that the
/// removal is durable before any rank publishes a new file.
void remove_manifest(IoBackend& io, const std::string& manifest_path, const std::string& dir);

/// The manifest of `votes` (one per rank, in rank order), written under a
/// temporary name next to `manifest_path`; fsynced when published.
std::unique_ptr<TempFile> prepare_manifest(IoBackend& io, const std::string& manifest_path,
                                           const std::vector<Vote>& votes);

/// Renames the manifest into place. If that or the directory fsync fails,
/// the manifest is removed again (best effort; a failed directory fsync
/// leaves its durability unknown, so it is not retried): a checkpoint whose
/// commit reported an error must not look committed.
void publish_manifest(IoBackend& io, TempFile& manifest, bool fsync);

}  // namespace ckptw::detail
