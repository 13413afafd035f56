// torch.distributed.checkpoint (DCP) checkpoint directories, as ckptw.dcp
// writes them (docs/dcp.md): DCP's stock layout, `.metadata` (the commit
// point, written last) and `__{rank}_{n}.distcp` data files, plus ckptw's
// checksum sidecar, which the stock reader ignores.
#pragma once

#include <cstddef>
#include <string>

#include "ckptw/export.hpp"

namespace ckptw {

/// DCP's metadata file; its presence at this name is a DCP checkpoint's commit point.
inline constexpr const char* kDcpMetadataFileName = ".metadata";
/// ckptw's sidecar in a DCP checkpoint directory: each data file's size and
/// the offset, length and CRC-32 of every item in it.
inline constexpr const char* kDcpChecksumsFileName = ".metadata.ckptw-crc32.json";
/// A sidecar is named after the metadata file whose items it checks: saved
/// without collectives (`dcp.save(..., use_collectives=False)`), each rank
/// writes its own `__{rank}.metadata`, and ckptw `__{rank}.metadata` + this.
/// Such a directory has no commit point for all ranks together.
inline constexpr const char* kDcpChecksumsSuffix = ".ckptw-crc32.json";

/// Checks DCP checkpoint directory `dir` without loading it: `.metadata`
/// (or, saved without collectives, each rank's `__{rank}.metadata`) exists,
/// every data file has the size ckptw committed and every item its CRC-32.
/// Returns the number of items checked. Throws ckptw::FormatError naming the
/// first bad file, item and offset, and for a directory without ckptw's
/// checksums (the stock writer's: nothing to verify against);
/// ckptw::IoError when a file cannot be read.
CKPTW_EXPORT std::size_t verify_dcp_checkpoint(const std::string& dir);

}  // namespace ckptw
