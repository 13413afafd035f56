#include "format/serialization_id.hpp"

#include <cstdio>

#include <c10/util/hash.h>

#include "util/byte_order.hpp"

namespace ckptw::detail {
namespace {

constexpr std::uint32_t kDataDescriptorSignature = 0x08074b50;

}  // namespace

void SerializationId::add(const std::string& name, const unsigned char* payload, std::uint64_t size,
                          std::uint32_t crc32) {
  names_.insert(name);
  if (size == 0) return;
  if (size >= 8 && get_le(payload, 4) == kDataDescriptorSignature) {
    crc_hash_ = c10::hash_combine(crc_hash_, static_cast<std::uint32_t>(get_le(payload + 4, 4)));
  }
  crc_hash_ = c10::hash_combine(crc_hash_, crc32);
}

std::string SerializationId::value() const {
  std::size_t name_hash = 0;
  for (const std::string& name : names_) name_hash = c10::hash_combine(name_hash, c10::hash<std::string>{}(name));
  char text[41];
  std::snprintf(text, sizeof text, "%020llu%020llu", static_cast<unsigned long long>(name_hash),
                static_cast<unsigned long long>(crc_hash_));
  return std::string(text, 40);
}

}  // namespace ckptw::detail
