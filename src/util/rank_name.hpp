// The rank in a file name that holds it between a fixed prefix and suffix, as
// "checkpoint_{rank}.pt" (rank_of_file_name) and DCP's "__{rank}.metadata" do.
#pragma once

#include <string_view>

namespace ckptw::detail {

/// The rank that `name` spells between `prefix` and `suffix` in decimal digits
/// (no leading zero, at most 9 digits), or -1 when it does not.
inline int rank_between(std::string_view name, std::string_view prefix, std::string_view suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix ||
      name.substr(name.size() - suffix.size()) != suffix) {
    return -1;
  }
  const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 9 || (digits.size() > 1 && digits[0] == '0')) return -1;
  int rank = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return -1;
    rank = rank * 10 + (c - '0');
  }
  return rank;
}

}  // namespace ckptw::detail
