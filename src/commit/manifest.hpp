// The commit manifest: written by rank 0 once every rank's file is durable
// and every rank voted yes, atomically (temp + fsync + rename + fsync dir).
// Its presence marks the directory's checkpoint as committed; its sizes and
// checksums let a reader tell whether the rank files are the ones committed.
//
// File: `{path}/checkpoint_manifest.json`, kManifestFileName of ckptw/types.hpp (docs/commit.md).
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "ckptw/types.hpp"

namespace ckptw::detail {

struct ManifestEntry {
  int rank = 0;
  std::string file;                  ///< name inside the checkpoint directory: checkpoint_<rank>.pt
  std::uint64_t bytes = 0;           ///< file size
  std::uint32_t directory_crc32 = 0; ///< CRC-32 of the zip central directory and end records
};

struct Manifest {
  int world_size = 0;
  std::vector<ManifestEntry> files;  ///< one per rank, in rank order
};

std::string encode_manifest(const Manifest& manifest);
/// Throws ckptw::FormatError naming `path` when the text is not a valid manifest.
Manifest decode_manifest(const std::string& text, const std::string& path);

/// A rank's vote as carried by Barrier::all_gather: "1 <bytes> <crc>" or "0 <phase>".
std::string encode_vote(bool ok, std::uint64_t bytes, std::uint32_t directory_crc32, const std::string& failed_phase);
struct Vote {
  bool ok = false;
  std::uint64_t bytes = 0;
  std::uint32_t directory_crc32 = 0;
  std::string failed_phase;
};
Vote decode_vote(const std::string& message);

/// The votes of every rank (Barrier::all_gather's messages, in rank order).
/// Throws ckptw::CommitAborted naming `path` and the ranks that voted no,
/// with their phases, when any did; `failure`, this rank's own error in
/// `failed_phase` (or null), is named in the message too.
std::vector<Vote> tally_votes(const std::vector<std::string>& messages, const std::exception_ptr& failure,
                              const std::string& failed_phase, const std::string& path);

}  // namespace ckptw::detail
