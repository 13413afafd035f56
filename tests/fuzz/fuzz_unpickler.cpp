// libFuzzer target: data.pkl as untrusted bytes for the restricted unpickler.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ckptw/error.hpp"
#include "read/pickle_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)ckptw::detail::read_pickle(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.pkl");
  } catch (const ckptw::Error&) {
  }
  return 0;
}
