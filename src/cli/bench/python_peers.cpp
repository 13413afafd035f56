#include "cli/bench/python_peers.hpp"


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

namespace ckptw::cli::bench {

namespace fs = std::filesystem;

std::string default_python() {
  if (const char* env = std::getenv("CKPTW_PYTHON"); env && *env) return env;
  return CKPTW_DEFAULT_PYTHON;
}

namespace {

// Why a peer row cannot run (its Python or its script is missing), or "".
std::string peer_missing(const std::string& python, const std::string& script) {
  if (access(python.c_str(), X_OK) != 0) return "missing: no Python at " + python + " (set CKPTW_PYTHON)";
  if (access(script.c_str(), R_OK) != 0) {
    return "missing: no " + script + " (the peer rows are a development tool: run the ckptw built in a checkout, "
           "or set CKPTW_BENCH_SCRIPTS to its bench/ folder)";
  }
  return "";
}

}  // namespace

int run_dcp_bench(const BenchOptions& options) {
  const std::string python = default_python();
  const std::string script = bench_script("dcp_ranks_bench.py");
  if (std::string why = peer_missing(python, script); !why.empty()) {
    std::fprintf(stderr, "ckptw bench --dcp: %s\n", why.c_str());
    return 1;
  }
  std::vector<std::string> args{script, "--ranks", options.ranks > 0 ? std::to_string(options.ranks) : "1,2,4",
                                "--size", std::to_string(options.size_bytes) + "B", "--repeat",
                                std::to_string(options.repeats), "--warmup", std::to_string(options.warmup), "--dir",
                                options.dir};
  if (!options.json_file.empty()) {
    args.push_back("--json");
    args.push_back(options.json_file);
  }
  return exec_python(python, std::move(args), "ckptw bench --dcp");
}

int run_convert_bench(const BenchOptions& options) {
  const std::string python = default_python();
  const std::string script = bench_script("dcp_convert_bench.py");
  if (std::string why = peer_missing(python, script); !why.empty()) {
    std::fprintf(stderr, "ckptw bench --convert: %s\n", why.c_str());
    return 1;
  }
  std::vector<std::string> args{script, "--ranks", std::to_string(options.ranks > 0 ? options.ranks : 4), "--size",
                                std::to_string(options.size_bytes) + "B", "--repeat", std::to_string(options.repeats),
                                "--dir", options.dir};
  if (!options.json_file.empty()) {
    args.push_back("--json");
    args.push_back(options.json_file);
  }
  return exec_python(python, std::move(args), "ckptw bench --convert");
}

int exec_python(const std::string& python, std::vector<std::string> args, const char* command) {
  args.insert(args.begin(), python);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  ::execv(python.c_str(), argv.data());
  std::fprintf(stderr, "%s: cannot run %s: %s\n", command, python.c_str(), std::strerror(errno));
  return 1;
}

std::string bench_script(const std::string& name) {
  if (const char* dir = std::getenv("CKPTW_BENCH_SCRIPTS"); dir && *dir) return std::string(dir) + "/" + name;
  return std::string(CKPTW_BENCH_SCRIPTS_DIR) + "/" + name;
}

// Starts `path` with `args` (argv[0] first) and `env` (null: this process's),
// with a pipe on its stdin and/or stdout where asked. Spawned (the child
// shares this process's memory until it execs), not forked: a fork copies the
// page tables of a process that holds the model and the writers' rings, and
// write-protects all of it in this process, whose rows are timed. The pipes
// are close-on-exec, so that children started later do not inherit this
// one's ends (its stdin would then never see EOF); dup2 clears the flag on
// the child's stdin and stdout.
SpawnedChild spawn_process(const std::string& path, const std::vector<std::string>& args,
                           const std::vector<std::string>* env, bool pipe_stdin, bool pipe_stdout) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  auto close_all = [&] {
    for (int fd : {in[0], in[1], out[0], out[1]}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if ((pipe_stdin && pipe2(in, O_CLOEXEC) != 0) || (pipe_stdout && pipe2(out, O_CLOEXEC) != 0)) {
    const int error = errno;
    close_all();
    throw IoError("pipe failed", path, "", error);
  }
  // posix_spawn does not write through argv or envp; the casts only meet its C signature.
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (env) {
    for (const auto& e : *env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (pipe_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  if (pipe_stdout) posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  SpawnedChild child;
  const int rc = posix_spawn(&child.pid, path.c_str(), &actions, nullptr, argv.data(), env ? envp.data() : environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    close_all();
    throw IoError("cannot start " + path, path, "", rc);
  }
  for (int fd : {in[0], out[1]}) {  // the child's ends
    if (fd >= 0) ::close(fd);
  }
  child.to_stdin = in[1];
  child.from_stdout = out[0];
  return child;
}

// The torch.load row of --read, run by bench/torch_load_bench.py in the
// project's Python (the write table's Python rows are PythonSaver's).
Row measure_python(const std::string& name, const std::string& script, const std::vector<std::string>& script_args,
                   const BenchOptions& options, Progress& progress) {
  Row row;
  row.name = name;
  const std::string python = default_python();
  if (std::string why = peer_missing(python, script); !why.empty()) {
    row.note = why;
    return row;
  }
  progress.line(name + ": running " + script);
  std::vector<std::string> args = {python, script};
  args.insert(args.end(), script_args.begin(), script_args.end());
  args.push_back(std::to_string(options.repeats));
  args.push_back(std::to_string(options.warmup));
  const SpawnedChild child = spawn_process(python, args, nullptr, /*pipe_stdin=*/false, /*pipe_stdout=*/true);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = ::read(child.from_stdout, buffer, sizeof buffer)) > 0;) {
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(child.from_stdout);
  int status = 0;
  rusage usage{};
  wait4(child.pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    row.note = "failed: " + python + " " + script + " exited with status " + std::to_string(status);
    return row;
  }
  auto result = nlohmann::json::parse(output);
  row.bytes = result["file_bytes"].get<std::uint64_t>();
  row.seconds = result["seconds"].get<std::vector<double>>();
  row.peak_rss_bytes = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
  // Only the child's rusage: it covers start-up and the warm-up too; scale to the timed part.
  const double total_cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
                           usage.ru_stime.tv_usec / 1e6;
  row.cpu_seconds = total_cpu * options.repeats / (options.repeats + options.warmup + 1);
  row.note = "torch " + result["torch_version"].get<std::string>() + ", CPU s/GB approximate";
  return row;
}

// A Python saver (bench/python_save_bench.py) running for the whole table:
// it loads the state dict once, then saves once per request, so its row
// interleaves with the others.
class PythonSaver {
 public:
  PythonSaver(const std::string& python, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {python};
    argv.insert(argv.end(), args.begin(), args.end());
    const SpawnedChild child = spawn_process(python, argv, nullptr, /*pipe_stdin=*/true, /*pipe_stdout=*/true);
    pid_ = child.pid;
    to_ = fdopen(child.to_stdin, "w");
    from_ = fdopen(child.from_stdout, "r");
    nlohmann::json ready = reply();
    version_ = ready.value("version", "");
  }
  ~PythonSaver() { (void)finish(); }

  const std::string& version() const { return version_; }

  // The saver reads a byte in every page of its state dict; its seconds.
  double touch() { return request("touch")["touch_seconds"].get<double>(); }

  RunResult save() {
    const nlohmann::json answer = request("save");
    RunResult run;
    run.bytes = answer["file_bytes"].get<std::uint64_t>();
    run.seconds = answer["seconds"].get<double>();
    run.cpu_seconds = answer["cpu_seconds"].get<double>();
    return run;
  }

  // Ends the child; its peak RSS (load included).
  std::uint64_t finish() {
    if (pid_ <= 0) return peak_rss_;
    if (to_) std::fclose(to_);
    to_ = nullptr;
    int status = 0;
    rusage usage{};
    wait4(pid_, &status, 0, &usage);
    pid_ = -1;
    if (from_) std::fclose(from_);
    from_ = nullptr;
    peak_rss_ = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
    return peak_rss_;
  }

 private:
  // Sends one command line; the saver's answer, or its error thrown.
  nlohmann::json request(const char* command) {
    std::fprintf(to_, "%s\n", command);
    std::fflush(to_);
    nlohmann::json answer = reply();
    if (answer.contains("error")) throw Error(answer["error"].get<std::string>());
    return answer;
  }

  nlohmann::json reply() {
    char* line = nullptr;
    std::size_t capacity = 0;
    const ssize_t n = getline(&line, &capacity, from_);
    std::string text = n > 0 ? std::string(line, static_cast<std::size_t>(n)) : std::string();
    std::free(line);
    if (text.empty()) throw Error("the Python saver exited (see its error above)");
    return nlohmann::json::parse(text);
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string version_;
  std::uint64_t peak_rss_ = 0;
};

Runner python_runner(const std::string& saver, const std::string& source, const std::string& out,
                     std::vector<std::function<void(Row&)>>* finishers) {
  Runner runner;
  runner.row.name = saver;
  const std::string python = default_python();
  if (std::string why = peer_missing(python, bench_script("python_save_bench.py")); !why.empty()) {
    runner.row.note = why;
    return runner;
  }
  std::shared_ptr<PythonSaver> process;
  try {
    process = std::make_shared<PythonSaver>(python, std::vector<std::string>{bench_script("python_save_bench.py"), source, out, saver});
  } catch (const std::exception& e) {
    runner.row.note = std::string("failed: ") + e.what();
    return runner;
  }
  runner.row.note = process->version();
  runner.touch = [process] { return process->touch(); };
  runner.once = [process] { return process->save(); };
  finishers->push_back([process](Row& row) { row.peak_rss_bytes = process->finish(); });
  return runner;
}

}  // namespace ckptw::cli::bench
