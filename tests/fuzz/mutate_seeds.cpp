// For each seed file given: every prefix and every single-byte flip must be
// a ckptw::Error or a consistent read under ASan/UBSan. Prints a summary.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "ckptw/error.hpp"
#include "read/pt_inspect.hpp"

namespace {

int check(const std::string& bytes) {
  ckptw::detail::MemorySource source(bytes.data(), bytes.size(), "mutant.pt");
  try {
    ckptw::detail::InspectedFile file = ckptw::detail::inspect_pt(source);
    ckptw::detail::verify_record_crcs(source, file.index);
    return 0;
  } catch (const ckptw::Error&) {
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string seed = buffer.str();
    if (check(seed) != 0) {
      std::fprintf(stderr, "seed %s does not read cleanly\n", argv[i]);
      return 1;
    }
    int prefix_errors = 0, flip_errors = 0;
    for (std::size_t n = 0; n < seed.size(); ++n) prefix_errors += check(seed.substr(0, n));
    for (std::size_t at = 0; at < seed.size(); ++at) {
      std::string mutant = seed;
      mutant[at] = static_cast<char>(mutant[at] ^ 0xA5);
      flip_errors += check(mutant);
    }
    std::printf("%s: %zu prefixes (%d rejected), %zu flips (%d rejected)\n", argv[i], seed.size(), prefix_errors,
                seed.size(), flip_errors);
    if (prefix_errors != static_cast<int>(seed.size())) {
      std::fprintf(stderr, "a strict prefix of %s was accepted\n", argv[i]);
      return 1;
    }
  }
  return 0;
}
