// What `ckptw bench` reads off the machine around each run: CPU time (its
// own, the machine's, the hypervisor's steal), page faults, RSS, the block
// device's write requests, and the machine and filesystem it ran on; and
// the filesystem chores between runs (sync, empty the output, drop a file
// from the page cache).
#pragma once

#include <cstdint>
#include <string>

namespace ckptw::cli::bench {

/// This process's user + system CPU seconds so far.
double cpu_seconds_self();

/// The whole machine's CPU time so far, all CPUs (/proc/stat's first line):
/// busy is user + nice + system + irq + softirq; steal is what the hypervisor
/// gave to others while this VM's CPUs wanted it (0 where there is none).
struct MachineCpu {
  double busy = 0;
  double steal = 0;
};
MachineCpu machine_cpu();

/// Writes the block device under a directory has completed so far
/// (/sys/dev/block/MAJ:MIN/stat: write requests, 512-byte sectors written).
struct DeviceWrites {
  std::uint64_t requests = 0;
  std::uint64_t sectors = 0;
};
/// The stat file of the block device holding `dir`; empty where it has none
/// (tmpfs, overlay, network filesystems).
std::string device_stat_path(const std::string& dir);
DeviceWrites device_writes(const std::string& stat_path);

/// Page faults of this process so far (minor: no I/O, e.g. first touches).
std::int64_t minor_faults_self();
/// A "Field:" of /proc/self/status in KiB (VmRSS:, VmHWM:).
std::uint64_t status_kib(const char* field);
/// Resets the RSS high-water mark (VmHWM) so each row reports its own peak.
void reset_peak_rss();

/// Waits for the filesystem holding `dir` to finish what was left to do
/// (removals, their journal), so that the next timed run does not pay for it.
void sync_filesystem_of(const std::string& dir);
/// Empties `out` and waits for the filesystem to finish what that left to do.
void clear_output(const std::string& out);
void drop_from_page_cache(const std::string& path);

/// "AMD EPYC ..., 2 CPUs, 23 GiB, Linux 6.1".
std::string machine_description();
/// "ext4 /dev/vda on /" for the mount holding `dir`.
std::string filesystem_description(const std::string& dir);

}  // namespace ckptw::cli::bench
