#include "cli/bench/ranks.hpp"


#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <future>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ckptw/barriers.hpp"
#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/error.hpp"
#include "cli/bench_stats.hpp"
#include "cli/synthetic_model.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "io/buffer_ring.hpp"
#include "util/stopwatch.hpp"
#include "cli/bench/probes.hpp"
#include "cli/bench/python_peers.hpp"
#include "cli/bench/rounds.hpp"
#include "cli/bench/rows.hpp"

namespace ckptw::cli::bench {

namespace fs = std::filesystem;

// ---- --ranks N: several ranks writing at once --------------------------------
//
// The parent spawns N copies of this program (--rank-child), which find one
// another through a TCPStore on loopback that rank 0 hosts (the ckptw row's
// barrier, which also runs its vote and manifest). Every rank runs the same
// rows in the same order (row_at); before each run it empties its own output
// and syncs, and all ranks then leave one barrier together and time the run
// on CLOCK_MONOTONIC, which every process on the machine shares. The parent
// turns each round's N (start, end) pairs into the node's figures.

double monotonic_seconds() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Removes this rank's file from `dir` (its own only: other ranks may still be
// writing theirs), then syncs the filesystem.
void clear_rank_output(const std::string& dir, const std::string& rank_file) {
  std::error_code ignored;
  fs::remove(fs::path(dir) / rank_file, ignored);
  sync_filesystem_of(dir);
}

int run_bench_rank(const BenchOptions& options) {
  const RankInfo rank = RankInfo::from_env();
  const bool rank0 = rank.global_rank == 0;
  Progress progress(/*quiet=*/!rank0);
  BarrierConfig barrier_config;
  barrier_config.type = BarrierType::kTcpStore;
  barrier_config.timeout_secs = 300;  // the slowest rank's model build and Python start-up
  std::shared_ptr<Barrier> barrier = create_barrier_from_config(barrier_config, rank);

  progress.line("building the synthetic model in each of " + std::to_string(rank.global_world_size) + " ranks");
  SyntheticModel model = make_synthetic_model(options.size_bytes, options.seed);
  const std::string rank_file = rank_file_name(rank.global_rank);
  const std::string own = options.dir + "/rank" + std::to_string(rank.global_rank);
  const std::string shared = options.dir + "/ckptw";  // every rank's file and the manifest, as in training
  for (const std::string& d : {own + "/limit", own + "/torch", shared}) fs::create_directories(d);
  const std::uint64_t file_bytes =
      CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(own + "/source", model.state_dict).bytes_written;

  // Each row's output, and the name its file has there. A row clears only
  // its own before it runs, so each row's last files stay (--keep).
  std::vector<Runner> runners;
  std::vector<std::pair<std::string, std::string>> outputs;
  runners.push_back(writer_runner("ckptw", options.backend.value_or(IoBackendKind::kAuto), model.state_dict, shared,
                                  options, WriteCall::kWrite, rank, barrier));
  outputs.emplace_back(shared, rank_file);
  runners.push_back(limit_runner(file_bytes, own + "/limit", rank_file));
  outputs.emplace_back(own + "/limit", rank_file);
  std::vector<std::function<void(Row&)>> finishers;
  if (options.torch_save) {
    runners.push_back(python_runner("torch.save", own + "/source/checkpoint_0.pt", own + "/torch", &finishers));
    outputs.emplace_back(own + "/torch", rank_file_name(0));  // bench/python_save_bench.py's name
  }
  for (const Runner& r : runners) {
    if (!r.once) throw Error("rank " + std::to_string(rank.global_rank) + ": row " + r.row.name + " " + r.row.note);
  }
  const std::size_t n = runners.size();
  barrier->execute_barrier();  // every rank set up
  for (int round = 0; round < options.warmup + options.repeats; ++round) {
    const bool timed = round >= options.warmup;
    const std::size_t timed_round = timed ? static_cast<std::size_t>(round - options.warmup) : 0;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t which = row_at(round, options.warmup, k, n);  // the same in every rank
      Runner& runner = runners[which];
      progress.line(runner.row.name + (timed ? ": repeat " + std::to_string(timed_round + 1) : ": warm-up") + ", " +
                    std::to_string(rank.global_world_size) + " ranks");
      clear_rank_output(outputs[which].first, outputs[which].second);
      const double touched = runner.touch ? runner.touch() : 0;
      barrier->execute_barrier();
      const double cpu_before = cpu_seconds_self();
      const double start = monotonic_seconds();
      const RunResult run = runner.once();
      const double end = monotonic_seconds();
      const double cpu = run.cpu_seconds >= 0 ? run.cpu_seconds : cpu_seconds_self() - cpu_before;
      if (!timed) continue;
      nlohmann::json line = {{"row", runner.row.name}, {"round", timed_round}, {"start", start},
                             {"end", run.seconds >= 0 ? start + run.seconds : end},
                             {"bytes", run.bytes}, {"cpu_seconds", cpu}, {"touch_seconds", touched},
                             {"note", run.how.empty() ? runner.row.note : run.how}};
      std::cout << line.dump() << std::endl;
    }
  }
  progress.done();
  barrier->execute_barrier();  // no rank's store (rank 0's) goes away while another still needs it
  return 0;
}

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw IoError("cannot find a free loopback port for the ranks' TCPStore", "127.0.0.1", "", errno);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// One row of the --ranks table: per timed round, every rank's run.
struct RankRow {
  std::string name;
  std::string note;
  std::map<int, std::vector<nlohmann::json>> rounds;
  std::vector<double> aggregate_gbps() const {
    std::vector<double> v;
    for (const auto& [round, runs] : rounds) {
      double first = 1e300, last = 0, bytes = 0;
      for (const auto& r : runs) {
        first = std::min(first, r["start"].get<double>());
        last = std::max(last, r["end"].get<double>());
        bytes += r["bytes"].get<double>();
      }
      v.push_back(bytes / (last - first) / 1e9);
    }
    return v;
  }
  std::vector<double> slowest_rank_seconds() const {
    std::vector<double> v;
    for (const auto& [round, runs] : rounds) {
      double slowest = 0;
      for (const auto& r : runs) slowest = std::max(slowest, r["end"].get<double>() - r["start"].get<double>());
      v.push_back(slowest);
    }
    return v;
  }
  // Per round, the CPU seconds of all ranks over the bytes of all ranks; the median over the rounds.
  double cpu_s_per_gb() const {
    std::vector<double> v;
    for (const auto& [round, runs] : rounds) {
      double cpu = 0, bytes = 0;
      for (const auto& r : runs) {
        cpu += r["cpu_seconds"].get<double>();
        bytes += r["bytes"].get<double>();
      }
      v.push_back(cpu / (bytes / 1e9));
    }
    return median(v);
  }
};

int run_bench_ranks(const BenchOptions& options) {
  const BenchDirectory bench_dir(options);
  const std::string& dir = bench_dir.path();

  const int port = free_loopback_port();
  std::vector<std::string> args = {"/proc/self/exe", "bench", "--rank-child", "--dir", dir,
                                   "--size", std::to_string(options.size_bytes), "--seed", std::to_string(options.seed),
                                   "--repeat", std::to_string(options.repeats), "--warmup",
                                   std::to_string(options.warmup)};
  if (!options.torch_save) args.push_back("--no-torch");
  if (!options.direct_io) args.push_back("--buffered");
  if (options.backend) args.insert(args.end(), {"--backend", to_string(*options.backend)});
  struct Child {
    pid_t pid = -1;
    FILE* out = nullptr;
  };
  // This process's environment without the rank variables, which each child
  // gets its own of.
  std::vector<std::string> inherited;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (name != "RANK" && name != "LOCAL_RANK" && name != "WORLD_SIZE" && name != "MASTER_ADDR" &&
        name != "MASTER_PORT" && name != "TORCHELASTIC_USE_AGENT_STORE") {
      inherited.push_back(entry);
    }
  }
  std::vector<Child> children;
  for (int r = 0; r < options.ranks; ++r) {
    std::vector<std::string> env = inherited;
    env.insert(env.end(), {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
                           "WORLD_SIZE=" + std::to_string(options.ranks), "MASTER_ADDR=127.0.0.1",
                           "MASTER_PORT=" + std::to_string(port)});
    const SpawnedChild child = spawn_process("/proc/self/exe", args, &env, /*pipe_stdin=*/false, /*pipe_stdout=*/true);
    children.push_back(Child{child.pid, fdopen(child.from_stdout, "r")});
  }
  std::vector<RankRow> rows;
  std::vector<std::string> failures;
  for (std::size_t r = 0; r < children.size(); ++r) {
    char* text = nullptr;
    std::size_t capacity = 0;
    while (getline(&text, &capacity, children[r].out) > 0) {
      const nlohmann::json line = nlohmann::json::parse(text);
      const std::string name = line["row"].get<std::string>();
      auto it = std::find_if(rows.begin(), rows.end(), [&](const RankRow& row) { return row.name == name; });
      if (it == rows.end()) it = rows.insert(rows.end(), RankRow{name, line.value("note", ""), {}});
      it->rounds[line["round"].get<int>()].push_back(line);
    }
    std::free(text);
    std::fclose(children[r].out);
    int status = 0;
    waitpid(children[r].pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failures.push_back("rank " + std::to_string(r) + (WIFEXITED(status) ? " exited with " + std::to_string(WEXITSTATUS(status))
                                                                           : " was killed by signal " + std::to_string(WTERMSIG(status))));
    }
  }
  if (!failures.empty()) {
    std::string what;
    for (const auto& f : failures) what += (what.empty() ? "" : "; ") + f;
    throw Error("ckptw bench --ranks " + std::to_string(options.ranks) + ": " + what + " (its error is above)");
  }
  for (const RankRow& row : rows) {
    for (const auto& [round, runs] : row.rounds) {
      if (static_cast<int>(runs.size()) != options.ranks) {
        throw Error("ckptw bench --ranks: row " + row.name + " round " + std::to_string(round) + " has " +
                    std::to_string(runs.size()) + " ranks' results");
      }
    }
  }
  const std::string machine = machine_description();
  const std::string filesystem = filesystem_description(options.dir);
  if (options.json) {
    nlohmann::json json_rows = nlohmann::json::array();
    for (const RankRow& row : rows) {
      const auto g = row.aggregate_gbps();
      nlohmann::json raw = nlohmann::json::array();
      for (const auto& [round, runs] : row.rounds) raw.push_back(runs);
      json_rows.push_back({{"name", row.name}, {"note", row.note},
                           {"aggregate_gbps_median", median(g)}, {"aggregate_gbps", g},
                           {"slowest_rank_seconds_median", median(row.slowest_rank_seconds())},
                           {"cpu_s_per_gb", row.cpu_s_per_gb()}, {"runs", raw}});
    }
    nlohmann::json out = {{"machine", machine}, {"filesystem", filesystem}, {"ranks", options.ranks},
                          {"config", {{"repeats", options.repeats}, {"warmup", options.warmup},
                                      {"size", options.size_bytes}, {"direct_io", options.direct_io}}},
                          {"rows", json_rows}};
    if (options.json_file.empty()) {
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    std::ofstream(options.json_file) << out.dump(2) << "\n";
  }
  std::printf("ckptw bench --ranks %d: %d rank process%s, each writing the synthetic model (%.3f GB payload),\n"
              "all at once; %d repeats after %d warm-up, fsync on\n", options.ranks, options.ranks,
              options.ranks == 1 ? "" : "es", options.size_bytes / 1e9, options.repeats, options.warmup);
  std::printf("machine:    %s\nfilesystem: %s\n\n", machine.c_str(), filesystem.c_str());
  std::printf("%-12s %12s %9s %9s %14s %9s  %s\n", "row", "node GB/s med", "min", "max", "slowest rank s", "CPU s/GB",
              "how");
  for (const RankRow& row : rows) {
    const auto g = row.aggregate_gbps();
    std::printf("%-12s %12.3f %9.3f %9.3f %14.3f %9.3f  %s\n", row.name.c_str(), median(g),
                *std::min_element(g.begin(), g.end()), *std::max_element(g.begin(), g.end()),
                median(row.slowest_rank_seconds()), row.cpu_s_per_gb(), row.note.c_str());
  }
  std::printf("\nnode GB/s = all ranks' bytes / (first rank's start to last rank's end), the ranks released by one\n"
              "barrier; CPU s/GB summed over the ranks, median over the rounds. ckptw: one writer per rank with\n"
              "the vote and manifest (TCPStore on loopback); limit: raw O_DIRECT writes of the same bytes in each\n"
              "rank; torch.save: one Python saver per rank. Rows interleaved as in the single-process table.\n");
  return 0;
}

}  // namespace ckptw::cli::bench
