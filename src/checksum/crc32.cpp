#include "checksum/crc32.hpp"

#include <isa-l/crc.h>

namespace ckptw::detail {

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  // crc32_gzip_refl takes and returns the finalized value, like zlib's crc32().
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), size);
}

}  // namespace ckptw::detail
