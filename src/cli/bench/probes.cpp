#include "cli/bench/probes.hpp"


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

double cpu_seconds_self() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
}


MachineCpu machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  return MachineCpu{static_cast<double>(user + nice + system + irq + softirq) / tick, static_cast<double>(steal) / tick};
}

// Writes the block device under a directory has completed so far

std::string device_stat_path(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || major(st.st_dev) == 0) return "";
  std::string path = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)) + "/stat";
  return std::ifstream(path) ? path : "";
}

DeviceWrites device_writes(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::uint64_t reads, read_merges, read_sectors, read_ticks, write_merges;
  DeviceWrites w;
  in >> reads >> read_merges >> read_sectors >> read_ticks >> w.requests >> write_merges >> w.sectors;
  return in ? w : DeviceWrites{};
}

std::int64_t minor_faults_self() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

std::uint64_t status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0) return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

void sync_filesystem_of(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::syncfs(fd);
    ::close(fd);
  }
}

// Empties `out` and waits for the filesystem to finish what that left to do.
void clear_output(const std::string& out) {
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(out, ignored)) fs::remove_all(entry.path(), ignored);
  sync_filesystem_of(out);
}

void drop_from_page_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

std::string machine_description() {
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  uname(&u);
  return cpu + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, " +
         std::to_string(sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGE_SIZE) >> 30) + " GiB, Linux " + u.release;
}

// "ext4 /dev/vda on /" for the mount holding `dir`.
std::string filesystem_description(const std::string& dir) {
  const std::string path = fs::canonical(dir).string();
  std::ifstream in("/proc/self/mounts");
  std::string best_mount, best;
  for (std::string source, mount, type, rest; in >> source >> mount >> type && std::getline(in, rest);) {
    const bool inside = path == mount || path.rfind(mount == "/" ? "/" : mount + "/", 0) == 0;
    if (inside && mount.size() >= best_mount.size()) {
      best_mount = mount;
      best = type + " " + source + " on " + mount;
    }
  }
  return best.empty() ? "unknown" : best;
}

}  // namespace ckptw::cli::bench
