#include "commit/manifest.hpp"

#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ckptw/error.hpp"
#include "commit/barrier_guard.hpp"

namespace ckptw::detail {

std::string encode_manifest(const Manifest& manifest) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : manifest.files) {
    files.push_back({{"rank", f.rank}, {"file", f.file}, {"bytes", f.bytes}, {"directory_crc32", f.directory_crc32}});
  }
  nlohmann::json doc = {{"format", "ckptw-manifest"},
                        {"version", 1},
                        {"writer", "ckptw " CKPTW_VERSION},
                        {"world_size", manifest.world_size},
                        {"files", files}};
  return doc.dump(2) + "\n";
}

Manifest decode_manifest(const std::string& text, const std::string& path) {
  try {
    nlohmann::json doc = nlohmann::json::parse(text);
    if (doc.at("format").get<std::string>() != "ckptw-manifest") throw FormatError("not a ckptw manifest", path);
    if (doc.at("version").get<int>() != 1) throw FormatError("unsupported manifest version", path);
    Manifest manifest;
    manifest.world_size = doc.at("world_size").get<int>();
    for (const auto& f : doc.at("files")) {
      manifest.files.push_back(ManifestEntry{f.at("rank").get<int>(), f.at("file").get<std::string>(),
                                             f.at("bytes").get<std::uint64_t>(),
                                             f.at("directory_crc32").get<std::uint32_t>()});
    }
    if (manifest.world_size < 1 || manifest.files.size() != static_cast<std::size_t>(manifest.world_size)) {
      throw FormatError("manifest lists " + std::to_string(manifest.files.size()) + " files for world size " +
                            std::to_string(manifest.world_size),
                        path);
    }
    return manifest;
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(std::string("malformed manifest: ") + e.what(), path);
  }
}

std::string encode_vote(bool ok, std::uint64_t bytes, std::uint32_t directory_crc32, const std::string& failed_phase) {
  if (!ok) return "0 " + failed_phase;
  return "1 " + std::to_string(bytes) + " " + std::to_string(directory_crc32);
}

Vote decode_vote(const std::string& message) {
  Vote vote;
  std::istringstream in(message);
  int flag = 0;
  in >> flag;
  vote.ok = flag == 1;
  if (vote.ok) {
    in >> vote.bytes >> vote.directory_crc32;
  } else {
    in >> vote.failed_phase;
  }
  return vote;
}

std::vector<Vote> tally_votes(const std::vector<std::string>& messages, const std::exception_ptr& failure,
                              const std::string& failed_phase, const std::string& path) {
  std::vector<Vote> votes;
  std::vector<int> failed;
  std::string phases;
  for (std::size_t r = 0; r < messages.size(); ++r) {
    votes.push_back(decode_vote(messages[r]));
    if (!votes.back().ok) {
      failed.push_back(static_cast<int>(r));
      phases += (phases.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + ": " +
                votes.back().failed_phase;
    }
  }
  if (failed.empty()) return votes;
  std::string why = "checkpoint not committed: " + describe_ranks(failed) + " failed (" + phases + ")";
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      why += "; this rank's " + failed_phase + " error: " + e.what();
    }
  }
  throw CommitAborted(why, path);
}

}  // namespace ckptw::detail
