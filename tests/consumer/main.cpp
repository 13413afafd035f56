// Writes a small state dict through the installed library and checks the file.
#include <cstdio>
#include <fstream>

#include <torch/torch.h>

#include <ckptw/ckptw.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  torch::nn::Linear model(4, 3);
  ckptw::StateDict sd = ckptw::state_dict(*model);
  ckptw::CheckpointWriter writer(ckptw::CheckpointWriterConfig{}, ckptw::RankInfo{0, 1});
  ckptw::WriteResult result = writer.write(argv[1], sd);
  writer.close();
  std::ifstream file(result.file, std::ios::binary | std::ios::ate);
  if (!file || static_cast<std::uint64_t>(file.tellg()) != result.bytes_written) return 1;
  std::printf("consumer wrote %s (%llu bytes, %llu tensors)\n", result.file.c_str(),
              static_cast<unsigned long long>(result.bytes_written),
              static_cast<unsigned long long>(result.tensor_count));
  return result.tensor_count == 2 ? 0 : 1;
}
