// Does a write ring's physical memory set its O_DIRECT write rate?
//
//   ring_contiguity DIR [RINGS [ROUNDS]]
//
// Makes RINGS rings of 4 x 8 MiB (ckptw's default ring): the even ones
// posix_memalign blocks of 4 KiB pages, as ckptw's ring was until 927ab73,
// the odd ones one 2 MiB-aligned mapping with MADV_HUGEPAGE, as it is now.
// Then, ROUNDS times, writes a 1.096 GB file (the bench model's size) from
// each ring in turn, in an order that changes every round: io_uring, 3
// writes of 8 MiB in flight, O_DIRECT, fallocate first, fsync of file and
// directory timed, the previous file removed and syncfs'd before each.
// Prints per ring the physically contiguous runs in each buffer
// (/proc/self/pagemap: needs root to see frame numbers) and per round its
// GB/s and the mean size of the write requests the block device completed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

enum { kBuffers = 4, kBufferBytes = 8 << 20, kDepth = 3, kMaxRings = 16, kMaxRounds = 32 };
static const size_t kHugePage = 2 << 20;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

// Write requests and sectors the device has completed (fields 5 and 7).
static void device_writes(const char* stat_path, unsigned long long* requests, unsigned long long* sectors) {
  unsigned long long f[7] = {0};
  FILE* in = fopen(stat_path, "r");
  if (in && fscanf(in, "%llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]) != 7) {
    memset(f, 0, sizeof f);
  }
  if (in) fclose(in);
  *requests = f[4];
  *sectors = f[6];
}

// Physically contiguous runs of 4 KiB frames in [p, p + bytes); 0 if unknown.
static int contiguous_runs(int pagemap, const unsigned char* p, size_t bytes) {
  uint64_t previous = 0;
  int runs = 0;
  for (size_t offset = 0; offset < bytes; offset += 4096) {
    uint64_t entry = 0;
    if (pread(pagemap, &entry, 8, (off_t)((uintptr_t)(p + offset) / 4096 * 8)) != 8) return 0;
    const uint64_t frame = entry & ((1ULL << 55) - 1);
    if (frame == 0) return 0;  // not root: frame numbers are hidden
    if (frame != previous + 1) ++runs;
    previous = frame;
  }
  return runs;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [RINGS [ROUNDS]]\n", argv[0]);
    return 2;
  }
  const char* dir = argv[1];
  const int rings = argc > 2 ? atoi(argv[2]) : 4;
  const int rounds = argc > 3 ? atoi(argv[3]) : 3;
  if (rings < 2 || rings > kMaxRings || rounds < 1 || rounds > kMaxRounds) {
    fprintf(stderr, "RINGS in [2, %d], ROUNDS in [1, %d]\n", kMaxRings, kMaxRounds);
    return 2;
  }
  const long long total = 1096LL * 1000 * 1000 / kBufferBytes * kBufferBytes;

  unsigned char* ring[kMaxRings][kBuffers];
  for (int k = 0; k < rings; ++k) {
    if (k % 2) {
      const size_t bytes = (size_t)kBuffers * kBufferBytes;
      unsigned char* m = mmap(NULL, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) die("mmap");
      unsigned char* base = (unsigned char*)(((uintptr_t)m + kHugePage - 1) & ~(uintptr_t)(kHugePage - 1));
      (void)madvise(base, bytes, MADV_HUGEPAGE);
      for (int b = 0; b < kBuffers; ++b) ring[k][b] = base + (size_t)b * kBufferBytes;
    } else {
      for (int b = 0; b < kBuffers; ++b) {
        void* p = NULL;
        if (posix_memalign(&p, 4096, kBufferBytes) != 0) die("posix_memalign");
        ring[k][b] = p;
      }
    }
    for (int b = 0; b < kBuffers; ++b) {
      uint64_t* words = (uint64_t*)ring[k][b];
      for (size_t i = 0; i < kBufferBytes / 8; ++i) words[i] = i * 0x9E3779B97F4A7C15ULL + (uint64_t)(k * kBuffers + b) + 1;
    }
  }
  int pagemap = open("/proc/self/pagemap", O_RDONLY);
  for (int k = 0; k < rings; ++k) {
    printf("ring %d (%s): contiguous runs per buffer", k, k % 2 ? "huge pages" : "posix_memalign");
    for (int b = 0; b < kBuffers; ++b) printf(" %d", pagemap >= 0 ? contiguous_runs(pagemap, ring[k][b], kBufferBytes) : 0);
    printf("\n");
  }
  if (pagemap >= 0) close(pagemap);

  struct stat st;
  if (stat(dir, &st) != 0) die(dir);
  char stat_path[128];
  snprintf(stat_path, sizeof stat_path, "/sys/dev/block/%u:%u/stat", major(st.st_dev), minor(st.st_dev));
  char path[4096];
  snprintf(path, sizeof path, "%s/ring_contiguity.bin", dir);
  struct io_uring uring;
  if (io_uring_queue_init(8, &uring, 0) != 0) die("io_uring_queue_init");

  double gbps[kMaxRings][kMaxRounds], request_kib[kMaxRings][kMaxRounds];
  for (int r = 0; r < rounds; ++r) {
    for (int j = 0; j < rings; ++j) {
      const int k = (j * (r % 2 ? rings - 1 : 1) + r) % rings;
      unlink(path);
      int dfd = open(dir, O_RDONLY | O_DIRECTORY);
      if (dfd < 0) die(dir);
      syncfs(dfd);
      int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
      if (fd < 0) die(path);
      (void)fallocate(fd, 0, 0, total);
      unsigned long long requests0, sectors0, requests1, sectors1;
      device_writes(stat_path, &requests0, &sectors0);
      const double start = now();
      long long offset = 0;
      int in_flight = 0, free_count = 0, free_buffers[kBuffers];
      for (int b = 0; b < kBuffers; ++b) free_buffers[free_count++] = b;
      while (offset < total || in_flight > 0) {
        while (offset < total && free_count > 0 && in_flight < kDepth) {
          const int b = free_buffers[--free_count];
          struct io_uring_sqe* sqe = io_uring_get_sqe(&uring);
          io_uring_prep_write(sqe, fd, ring[k][b], kBufferBytes, (unsigned long long)offset);
          io_uring_sqe_set_data64(sqe, (uint64_t)b);
          io_uring_submit(&uring);
          offset += kBufferBytes;
          ++in_flight;
        }
        struct io_uring_cqe* cqe;
        if (io_uring_wait_cqe(&uring, &cqe) != 0) die("io_uring_wait_cqe");
        if (cqe->res != kBufferBytes) {
          fprintf(stderr, "%s: write returned %d\n", path, cqe->res);
          return 1;
        }
        free_buffers[free_count++] = (int)io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&uring, cqe);
        --in_flight;
      }
      if (fsync(fd) != 0 || fsync(dfd) != 0) die("fsync");
      gbps[k][r] = (double)total / (now() - start) / 1e9;
      device_writes(stat_path, &requests1, &sectors1);
      request_kib[k][r] = requests1 > requests0 ? (double)(sectors1 - sectors0) * 512 / 1024 / (double)(requests1 - requests0) : 0;
      close(fd);
      close(dfd);
    }
  }
  unlink(path);
  for (int k = 0; k < rings; ++k) {
    printf("ring %d GB/s (mean write request KiB) per round:", k);
    for (int r = 0; r < rounds; ++r) printf(" %.2f (%.0f)", gbps[k][r], request_kib[k][r]);
    printf("\n");
  }
  return 0;
}
