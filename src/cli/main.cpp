// The `ckptw` command-line tool: synth, inspect, bench, --version.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <c10/util/Logging.h>
#include <nlohmann/json.hpp>

#include "ckptw/ckptw.hpp"
#include "cli/bench.hpp"
#include "cli/bench/python_peers.hpp"
#include "cli/synthetic_model.hpp"
#include "read/pt_inspect.hpp"
#include "read/verify.hpp"
#if CKPTW_HAVE_CUDA
#include "cuda_info.cuh"
#endif

namespace {

using namespace ckptw;
namespace detail = ckptw::detail;

void print_version() {
  BuildInfo info = build_info();
  std::printf("ckptw %s\n", info.ckptw_version.c_str());
  std::printf("  libtorch  %s\n", info.libtorch_version.c_str());
  std::printf("  cuda      %s\n", info.cuda_version.c_str());
#if CKPTW_HAVE_CUDA
  const int devices = detail::cuda::device_count();
  std::printf("  cuda devices visible: %d\n", devices);
#endif
  std::printf("  nccl      %s\n", info.nccl_version.c_str());
  std::printf("  liburing  %s\n", info.liburing_version.c_str());
  std::printf("  isa-l     %s\n", info.isal_version.c_str());
}

std::string shape_text(const std::vector<std::int64_t>& v) {
  std::string s = "(";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

int run_inspect(const std::string& path, bool json) {
  detail::InspectedFile file = detail::inspect_pt(path);
  if (json) {
    nlohmann::json records = nlohmann::json::array();
    for (const auto& r : file.index.records) {
      records.push_back({{"name", r.name}, {"offset", r.payload_offset}, {"bytes", r.size}, {"crc32", r.crc32}});
    }
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& t : file.tensors) {
      tensors.push_back({{"key", t.key_path},
                         {"dtype", t.tensor.dtype},
                         {"shape", t.tensor.sizes},
                         {"stride", t.tensor.strides},
                         {"storage_offset", t.tensor.storage_offset},
                         {"storage", t.tensor.storage_key},
                         {"storage_bytes", t.tensor.storage_nbytes},
                         {"location", t.tensor.location},
                         {"requires_grad", t.tensor.requires_grad}});
    }
    nlohmann::json out = {{"path", path},
                          {"file_bytes", file.file_size},
                          {"archive_folder", file.index.folder},
                          {"records", records},
                          {"tensors", tensors}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%s: %llu bytes, archive folder '%s', %zu records, %zu tensors\n\n", path.c_str(),
              static_cast<unsigned long long>(file.file_size), file.index.folder.c_str(),
              file.index.records.size(), file.tensors.size());
  std::printf("%-32s %14s %14s %10s\n", "record", "offset", "bytes", "crc32");
  for (const auto& r : file.index.records) {
    std::printf("%-32s %14llu %14llu   %08x\n", r.name.c_str(), static_cast<unsigned long long>(r.payload_offset),
                static_cast<unsigned long long>(r.size), r.crc32);
  }
  std::printf("\n%-40s %-10s %-18s %-18s %8s %8s %12s\n", "key", "dtype", "shape", "stride", "offset", "storage",
              "bytes");
  for (const auto& t : file.tensors) {
    std::printf("%-40s %-10s %-18s %-18s %8lld %8s %12llu\n", t.key_path.c_str(), t.tensor.dtype.c_str(),
                shape_text(t.tensor.sizes).c_str(), shape_text(t.tensor.strides).c_str(),
                static_cast<long long>(t.tensor.storage_offset), t.tensor.storage_key.c_str(),
                static_cast<unsigned long long>(t.tensor.storage_nbytes));
  }
  return 0;
}

int run_verify(const std::string& path) {
  bool all_ok = true;
  for (const auto& verdict : detail::verify_path(path)) {
    std::printf("%s %s: %s\n", verdict.ok ? "OK  " : "FAIL", verdict.path.c_str(), verdict.detail.c_str());
    all_ok = all_ok && verdict.ok;
  }
  return all_ok ? 0 : 1;
}

int run_synth(const std::string& dir, std::uint64_t size, std::uint64_t seed, const std::string& barrier_type,
              int barrier_timeout) {
  const RankInfo rank_info = RankInfo::from_env();
  cli::SyntheticModel model = cli::make_synthetic_model(size, seed);
  BarrierConfig barrier_config;
  barrier_config.type = parse_barrier_type(barrier_type);
  barrier_config.timeout_secs = barrier_timeout;
  CheckpointWriterConfig config;
  config.write_barrier_timeout_secs = barrier_timeout;
  CheckpointWriter writer(config, rank_info, create_barrier_from_config(barrier_config, rank_info));
  WriteResult result = writer.write(dir, model.state_dict);
  writer.close();
  std::printf("rank %d wrote %s: %llu bytes, %llu tensors, %llu storages (hidden %d, %d layers) in %.3f s%s%s\n",
              rank_info.global_rank, result.file.c_str(), static_cast<unsigned long long>(result.bytes_written),
              static_cast<unsigned long long>(result.tensor_count),
              static_cast<unsigned long long>(result.storage_count), model.hidden, model.layers, result.total_secs,
              result.manifest.empty() ? "" : ", committed: ", result.manifest.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // c10d logs every socket timeout as a warning on stderr; the CLI reports
  // failures itself, one line each. TORCH_CPP_LOG_LEVEL=INFO brings them back.
  if (std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr) FLAGS_caffe2_log_level = 2;  // errors only
  CLI::App app{
      "ckptw: writes PyTorch checkpoints (.pt, the torch.save format) at the speed of the hardware.\n"
      "Every file loads with torch.load from torch 1.13 to the newest."};
  app.require_subcommand(0, 1);
  bool version = false;
  app.add_flag("--version", version, "Print the version and what ckptw was built with");

  auto* synth = app.add_subcommand("synth", "Write a deterministic synthetic GPT-like model to DIR/checkpoint_<RANK>.pt");
  std::string synth_dir;
  std::uint64_t synth_size = std::uint64_t{1} << 30;
  std::uint64_t synth_seed = 0;
  synth->add_option("DIR", synth_dir, "Checkpoint directory (created if missing)")->required();
  // Sizes take a unit: 512MiB, 2GiB, 3GB (kB, MB, GB are powers of 1000, as GB/s is), or plain bytes.
  const CLI::AsSizeValue size_units(/*kb_is_1000=*/true);
  synth->add_option("--size", synth_size, "Approximate payload size (default 1GiB)")
      ->transform(size_units)
      ->capture_default_str();
  synth->add_option("--seed", synth_seed, "PRNG seed: same seed and size give the same bytes")->capture_default_str();
  std::string synth_barrier = "none";
  int synth_barrier_timeout = 600;
  synth->add_option("--barrier", synth_barrier,
                    "Barrier between ranks (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT from torchrun): none, tcp_store "
                    "or nccl; with tcp_store or nccl all ranks commit or none does")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "tcp_store", "nccl"}));
  synth->add_option("--barrier-timeout", synth_barrier_timeout, "Seconds to wait for the other ranks")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  auto* inspect = app.add_subcommand("inspect", "List the records and tensors of a .pt file without loading data");
  std::string inspect_file;
  bool inspect_json = false;
  inspect->add_option("FILE", inspect_file, "A .pt file written by ckptw or torch.save")->required();
  inspect->add_flag("--json", inspect_json, "Machine-readable output");

  auto* verify = app.add_subcommand(
      "verify", "Check a .pt file, or a checkpoint directory (its manifest and every rank file): structure, every\n"
                "CRC-32, and the manifest's sizes and checksums. A torch.distributed.checkpoint directory written\n"
                "by ckptw.dcp: every data file's size and every item's CRC-32 against its checksum sidecar.\n"
                "Exit 0 only when everything checks out");
  std::string verify_path;
  verify->add_option("PATH", verify_path, "A .pt file, a checkpoint directory or a DCP checkpoint directory")
      ->required();

  auto* convert = app.add_subcommand(
      "convert",
      "Write a torch.distributed.checkpoint directory as one torch.save file: the bytes\n"
      "format_utils.dcp_to_torch_save writes, in bounded memory (every tensor is assembled from its shards\n"
      "piece by piece while the file is written; dcp_to_torch_save holds the whole checkpoint), committed\n"
      "atomically. Runs ckptw.dcp.to_torch_save in the project's Python ($CKPTW_PYTHON)");
  std::string convert_dir;
  std::string convert_out;
  bool convert_no_verify = false;
  convert->add_option("DCP_DIR", convert_dir, "A committed DCP checkpoint directory (with its .metadata)")
      ->required();
  convert->add_option("OUT", convert_out, "The .pt file to write (its archive is named after it, as torch.save's)")
      ->required();
  convert->add_flag("--no-verify", convert_no_verify,
                    "Skip checking every item against ckptw's checksums first (directories ckptw.dcp wrote)");

  auto* bench = app.add_subcommand(
      "bench",
      "Measure write throughput (GB/s) on the synthetic model: ckptw with each I/O backend, write_async\n"
      "(with the time the caller was blocked), the filesystem's own limit (raw O_DIRECT writes), and\n"
      "torch.save, ckptw.save, torch.distributed.checkpoint, safetensors and torch_checkpointing from\n"
      "Python, in one run, fsync included. Rows are interleaved (every round runs each row once, in an order that changes\n"
      "every round) and the spread between two identical configurations is printed as the noise floor.\n"
      "With --read, read throughput against a raw O_DIRECT read and torch.load.\n"
      "The Python rows are a development tool: they run bench/python_save_bench.py and torch_load_bench.py\n"
      "of the checkout ckptw was built in, in its .venv; elsewhere set CKPTW_BENCH_SCRIPTS to a bench/\n"
      "folder and CKPTW_PYTHON to a Python with torch (and ckptw), or pass --no-torch");
  cli::BenchOptions bench_options;
  std::string bench_backend;
  std::string bench_json;
  bench->add_option("--size", bench_options.size_bytes, "Model payload size, e.g. 512MiB")
      ->transform(size_units)
      ->capture_default_str();
  bench->add_option("--repeat,--repeats", bench_options.repeats, "Timed repeats per row")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--warmup", bench_options.warmup, "Untimed warm-up writes per row")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  bench->add_option("--dir", bench_options.dir, "Filesystem to measure: a temp dir is made inside DIR")
      ->capture_default_str();
  bench->add_option("--backend", bench_backend, "Only measure ckptw (write and write_async) with this backend: auto, uring or posix")
      ->check(CLI::IsMember({"auto", "uring", "posix"}));
  bench->add_option("--seed", bench_options.seed, "Synthetic model seed")->capture_default_str();
  bench->add_option("--json", bench_json, "Print JSON instead of the table, or write it to FILE (and print the table)")
      ->expected(0, 1);
  bench->add_flag("--no-torch", [&](std::int64_t) { bench_options.torch_save = false; },
                  "Skip the Python rows (torch.save, ckptw.save, dcp, ckptw.dcp, safetensors, torch-checkpointing;\n"
                  "torch.load with --read)");
  bench->add_flag("--keep", bench_options.keep, "Keep the temp directory and its files");
  bench->add_flag("--buffered", [&](std::int64_t) { bench_options.direct_io = false; },
                  "ckptw rows write through the page cache (direct_io = false) instead of O_DIRECT");
  bench->add_flag("--read", bench_options.read,
                  "Measure reading instead: CheckpointReader, a raw O_DIRECT read and torch.load of the same file, "
                  "each cold (page cache dropped before every repeat)");
  bench->add_option("--ranks", bench_options.ranks,
                    "Node-level figures: N processes (one per rank, spawned here, a TCPStore on loopback) each\n"
                    "write their own checkpoint_{rank}.pt of the model at once, released by one barrier: ckptw with\n"
                    "the vote and manifest, the raw-write limit and torch.save; aggregate GB/s, the slowest rank and\n"
                    "CPU s/GB summed over the ranks")
      ->check(CLI::Range(1, 1024))
      ->excludes("--read");
  bench->add_option("--compare", bench_options.compare_file,
                    "An earlier run's --json FILE (same --size, same mode): print each row's move against it, with\n"
                    "both runs' rerun p90 and how far the limit row (the filesystem alone) moved")
      ->excludes("--ranks");
  bench->add_flag("--dcp", bench_options.dcp,
                  "torch.distributed.checkpoint instead: --ranks processes (1, 2 and 4 when not given) save a\n"
                  "DTensor-sharded model (Gloo on loopback), the stock FileSystemWriter against ckptw.dcp's,\n"
                  "dcp.async_save with ckptw.dcp (the time it blocks), torch_checkpointing's CheckpointManager and\n"
                  "the ranks' raw writes of the same bytes (the limit row); node GB/s, x limit, CPU s/GB summed\n"
                  "over the ranks, and the seconds inside the storage writer (the rest is DCP's planning and\n"
                  "gathers, garbage collection and the commit).\n"
                  "A development tool: bench/dcp_ranks_bench.py in the project's Python; --json FILE only")
      ->excludes("--read")
      ->excludes("--compare");
  bench->add_flag("--convert", bench_options.convert,
                  "ckptw convert instead: --ranks processes (4 when not given) save a DTensor-sharded model with\n"
                  "ckptw.dcp, then dcp_to_torch_save and ckptw convert each export it to one .pt in a fresh\n"
                  "process: GB/s, CPU s/GB and peak RSS, the outputs checked identical. A development tool:\n"
                  "bench/dcp_convert_bench.py in the project's Python; --json FILE only")
      ->excludes("--read")
      ->excludes("--compare")
      ->excludes("--dcp");
  bench->add_flag("--rank-child", bench_options.rank_child)->group("");  // set by --ranks in the processes it spawns

  CLI11_PARSE(app, argc, argv);
  try {
    if (version) {
      print_version();
      return 0;
    }
    if (*synth) return run_synth(synth_dir, synth_size, synth_seed, synth_barrier, synth_barrier_timeout);
    if (*inspect) return run_inspect(inspect_file, inspect_json);
    if (*verify) return run_verify(verify_path);
    if (*convert) {
      std::vector<std::string> args{"-c", "import sys; from ckptw._dcp_convert import main; sys.exit(main())",
                                    convert_dir, convert_out};
      if (convert_no_verify) args.push_back("--no-verify");
      return cli::bench::exec_python(cli::bench::default_python(), std::move(args), "ckptw convert");
    }
    if (*bench) {
      if (!bench_backend.empty()) bench_options.backend = parse_io_backend_kind(bench_backend.c_str());
      bench_options.json = bench->count("--json") > 0;
      bench_options.json_file = bench_json;
      return cli::run_bench(bench_options);
    }
    std::cout << app.help();
    return 0;
  } catch (const ckptw::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ckptw: %s\n", e.what());
    return 1;
  }
}
