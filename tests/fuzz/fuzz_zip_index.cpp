// libFuzzer target: a whole .pt file as untrusted bytes. The zip index, the
// unpickler and the tensor checks must give a ckptw::Error or a consistent
// result: no crash, no out-of-bounds access, no allocation the input does not justify.
#include <cstddef>
#include <cstdint>

#include "ckptw/error.hpp"
#include "read/pt_inspect.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ckptw::detail::MemorySource source(data, size, "fuzz.pt");
  try {
    ckptw::detail::InspectedFile file = ckptw::detail::inspect_pt(source);
    ckptw::detail::verify_record_crcs(source, file.index);
    for (const auto& t : file.tensors) {
      const auto* record = file.index.find("data/" + t.tensor.storage_key);
      if (record == nullptr || record->size != t.tensor.storage_nbytes) __builtin_trap();  // inspect_pt checked it
    }
  } catch (const ckptw::Error&) {
  }
  return 0;
}
