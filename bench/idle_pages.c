// Is memory that sat idle slow to read again on this machine?
//
//   idle_pages [ROUNDS [MIN_IDLE_S MAX_IDLE_S]]
//
// Fills 1.096 GB (the bench model's size) once, then ROUNDS times: sleeps a
// random 5-40 s (or MIN..MAX), reads one byte in every 4 KiB page of it
// ("touch", as `ckptw bench` does before each run) and then copies all of it
// into a 32 MiB ring of 8 MiB buffers ("copy", as ckptw's copy into its ring
// does). Prints both times and the minor faults the round took. On a VM
// whose host takes idle guest memory away, some touches are many times the
// usual ~0.01 s with no minor fault in the guest, and the copy after them
// runs at its usual rate: the cost is per page and paid once, by whatever
// reads the page first (why `ckptw bench` touches a row's model before
// timing it; docs/performance.md).
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { kPage = 4096 };
static const size_t kModelBytes = 1096ul << 20, kBufferBytes = 8ul << 20, kBuffers = 4;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static long minor_faults(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 12;
  const int min_idle = argc > 3 ? atoi(argv[2]) : 5, max_idle = argc > 3 ? atoi(argv[3]) : 40;
  if (rounds < 1 || min_idle < 0 || max_idle < min_idle) {
    fprintf(stderr, "usage: idle_pages [ROUNDS [MIN_IDLE_S MAX_IDLE_S]]\n");
    return 2;
  }
  unsigned char* model = malloc(kModelBytes);
  unsigned char* ring = aligned_alloc(2u << 20, kBuffers * kBufferBytes);
  if (!model || !ring) {
    perror("malloc");
    return 1;
  }
  for (size_t i = 0; i < kModelBytes; ++i) model[i] = (unsigned char)(i * 131);
  memset(ring, 1, kBuffers * kBufferBytes);  // not 0: a compiler may turn alloc + zeroing into calloc, which touches nothing
  srand(7);
  const double start = now();
  for (int r = 0; r < rounds; ++r) {
    const int idle = min_idle + rand() % (max_idle - min_idle + 1);
    sleep((unsigned)idle);
    const long faults = minor_faults();
    double t = now();
    const volatile unsigned char* pages = model;
    for (size_t i = 0; i < kModelBytes; i += kPage) (void)pages[i];
    const double touch = now() - t;
    t = now();
    for (size_t off = 0, b = 0; off < kModelBytes; off += kBufferBytes, ++b) {
      const size_t n = kModelBytes - off < kBufferBytes ? kModelBytes - off : kBufferBytes;
      memcpy(ring + (b % kBuffers) * kBufferBytes, model + off, n);
    }
    const double copy = now() - t;
    printf("t=%5.0f s  idle %2d s  touch %.3f s  copy %.3f s  minor faults %ld\n", now() - start, idle, touch, copy,
           minor_faults() - faults);
    fflush(stdout);
  }
  free(model);
  free(ring);
  return 0;
}
