// The Python peer rows of `ckptw bench` (torch.save, ckptw.save, DCP,
// safetensors; torch.load with --read): bench/python_save_bench.py and
// bench/torch_load_bench.py run in the project's Python, as child processes
// spawned (not forked) so that the timed process's pages are never
// write-protected. A development tool: the scripts live in the checkout (see
// bench_script()).
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

#include "cli/bench.hpp"
#include "cli/bench/types.hpp"

namespace ckptw::cli::bench {

/// The Python the peer rows run in: $CKPTW_PYTHON, else the checkout's .venv.
std::string default_python();
/// The path of bench script `name` ("python_save_bench.py"): in
/// $CKPTW_BENCH_SCRIPTS when set, else in the bench/ folder of the checkout
/// this ckptw was built from.
std::string bench_script(const std::string& name);

/// Runs `python` with `args` in place of this process (for `command`'s
/// messages); returns only when it cannot (a message on stderr, exit code 1).
int exec_python(const std::string& python, std::vector<std::string> args, const char* command);

/// `ckptw bench --dcp`: runs bench/dcp_ranks_bench.py in the project's
/// Python with the options that apply (--ranks, --size, --repeat, --warmup,
/// --dir, --json FILE) in place of this process; returns only when it cannot
/// (a message on stderr, exit code 1).
int run_dcp_bench(const BenchOptions& options);
/// `ckptw bench --convert`: runs bench/dcp_convert_bench.py likewise.
int run_convert_bench(const BenchOptions& options);

/// A started child: its pid, and this process's ends of the pipes on its
/// stdin and stdout (-1 where none was asked for).
struct SpawnedChild {
  pid_t pid = -1;
  int to_stdin = -1;
  int from_stdout = -1;
};
/// Starts `path` with `args` (argv[0] first) and `env` (null: this
/// process's), with a pipe on its stdin and/or stdout where asked.
SpawnedChild spawn_process(const std::string& path, const std::vector<std::string>& args,
                           const std::vector<std::string>* env, bool pipe_stdin, bool pipe_stdout);

/// The torch.load row of --read, run by bench/torch_load_bench.py.
Row measure_python(const std::string& name, const std::string& script, const std::vector<std::string>& script_args,
                   const BenchOptions& options, Progress& progress);

/// A Python saver row ("torch.save", "ckptw.save", "dcp", "safetensors")
/// loading `source` once and saving into `out` once per run; its finisher
/// (ends the child, notes its peak RSS) is appended to `finishers`.
Runner python_runner(const std::string& saver, const std::string& source, const std::string& out,
                     std::vector<std::function<void(Row&)>>* finishers);

}  // namespace ckptw::cli::bench
