// io_uring blocked as Docker's default seccomp profile blocks it: the writer
// falls back to the POSIX backend with one log line and writes the same bytes.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

// io_uring_setup fails with EPERM; every other system call is allowed.
bool block_io_uring() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

StateDict sample() {
  StateDict sd = make_state_dict();
  sd.insert("w", at::arange(100000, at::kFloat));
  sd.insert("b", at::ones({7}, at::kDouble));
  return sd;
}

TEST(IoUringBlocked, AutoFallsBackToPosixWithOneLogLineAndIdenticalBytes) {
  testing::TempDir tmp;
  // Tensors are made before fork(): a forked child must not run parallel
  // (OpenMP) kernels, whose thread pool does not survive the fork.
  const StateDict sd = sample();
  WriteResult reference = CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
  const std::string log = tmp / "stderr.txt";
  int code = testing::run_in_child([&] {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDERR_FILENO);
    if (!block_io_uring()) return 90;
    try {
      CheckpointWriterConfig uring_only;
      uring_only.io_backend = IoBackendKind::kUring;
      CheckpointWriter forced(uring_only, RankInfo{0, 1});
      return 91;  // io_uring should have been refused
    } catch (const IoError& e) {
      if (e.errno_value() != EPERM) return 92;
    }
    WriteResult r = CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "fallback", sd);
    (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "fallback2", sd);
    return r.io_backend == "posix" ? 0 : 93;
  });
  if (code == 90) GTEST_SKIP() << "cannot install a seccomp filter here";
  ASSERT_EQ(code, 0);
  EXPECT_EQ(testing::read_file(tmp / "fallback/checkpoint_0.pt"), testing::read_file(reference.file));
  const std::string messages = testing::read_file(log);
  const std::string line = "ckptw: io_uring unavailable (Operation not permitted); using the POSIX backend\n";
  EXPECT_EQ(messages, line);  // exactly one line, though two writers fell back
}

}  // namespace
}  // namespace ckptw
