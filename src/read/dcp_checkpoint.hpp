// torch.distributed.checkpoint (DCP) directories: DCP's stock `.metadata`
// (its commit point) and `__{rank}_{n}.distcp` data files, plus, where
// ckptw.dcp wrote them (python/ckptw/dcp.py), ckptw's checksum sidecar
// kDcpChecksumsFileName (ckptw/dcp.hpp; one per rank's metadata file where
// the ranks saved without collectives), JSON:
//   {"format": "ckptw-dcp-checksums", "version": 1,
//    "files": {"__0_0.distcp": {"size": N, "items": [
//      {"item": "model.w[0, 64]", "offset": O, "length": L, "crc32": C}, ...]}}}
// Item offsets and lengths are those .metadata records for each item.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ckptw/dcp.hpp"

namespace ckptw::detail {

struct DcpItem {
  std::string item;  ///< FQN and, for a shard, its chunk offsets
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint32_t crc32 = 0;
};

struct DcpDataFile {
  std::string name;  ///< relative to the checkpoint directory
  std::uint64_t size = 0;
  std::vector<DcpItem> items;
};

/// Whether `dir` holds DCP's `.metadata`.
bool is_dcp_checkpoint(const std::string& dir);

/// The metadata files of `dir` that sidecars go with: `.metadata` where it
/// is there; otherwise every rank's `__{rank}.metadata` (a directory saved
/// without collectives), in rank order. Empty for a directory with neither.
std::vector<std::string> dcp_metadata_files(const std::string& dir);

/// The data files the sidecar of `metadata_file` in `dir` lists, or nullopt
/// when there is no sidecar (a directory the stock writer wrote). Throws
/// ckptw::FormatError naming the sidecar when it is malformed.
std::optional<std::vector<DcpDataFile>> read_dcp_checksums(const std::string& dir,
                                                           const std::string& metadata_file = kDcpMetadataFileName);

/// Why a DCP directory whose `metadata_file` has no sidecar cannot be verified.
std::string without_dcp_checksums(const std::string& metadata_file);

/// Throws ckptw::FormatError naming the file when it does not have the size
/// the sidecar committed; ckptw::IoError when it cannot be opened.
void check_dcp_file_size(const std::string& dir, const DcpDataFile& file);

/// check_dcp_file_size(), then the CRC-32 of every item. Throws
/// ckptw::FormatError naming the file, the item and its offset.
void verify_dcp_file(const std::string& dir, const DcpDataFile& file);

}  // namespace ckptw::detail
