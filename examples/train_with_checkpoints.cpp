// A LibTorch trainer that saves a checkpoint every N steps with ckptw.
//
// Launch one process per rank, as torchrun does (it sets RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT):
//
//   torchrun --standalone --nproc-per-node 2 --no-python \
//       build/examples/train_with_checkpoints /tmp/run --steps 20 --every 5
//
// Every rank writes /tmp/run/step_<k>/checkpoint_<rank>.pt; the ranks vote
// over a TCPStore barrier and rank 0 commits each step with
// /tmp/run/step_<k>/checkpoint_manifest.json. A hook logs each commit.
//
// Each checkpoint is what a Python trainer saves, {"model": ..., "optimizer":
// ..., "step": k}, laid out as Python's state dicts, so a Python process can
// resume from it (tests/distributed/test_commit.py does, and takes the next
// steps to the same parameters):
//
//   model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
//   opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
//   ckpt = torch.load("/tmp/run/step_5/checkpoint_0.pt")
//   model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optimizer"])
//
// --optimizer adam or adamw trains with torch::optim::Adam / AdamW (lr 1e-3)
// instead. The data is synthetic and a function of the step (batch()), so a
// resumed run sees the same batches.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <torch/torch.h>

#include <ckptw/ckptw.hpp>

namespace {

class LoggingHook : public ckptw::WriterHook {
 public:
  explicit LoggingHook(int rank) : rank_(rank) {}
  void pre_commit(const std::string& path, const ckptw::HookArgs& kwargs) override {
    std::printf("[rank %d] %s written (step %lld), waiting for the other ranks\n", rank_, path.c_str(),
                static_cast<long long>(kwargs.at("step").toInt()));
  }
  void post_commit(const std::string& path, const ckptw::HookArgs&) override {
    std::printf("[rank %d] %s committed\n", rank_, path.c_str());
  }

 private:
  int rank_;
};

// The batch of step `step`: the same numbers in C++ and in Python
// (torch.sin(torch.arange(512.).reshape(16, 32) * 0.01 * step)).
torch::Tensor batch(int step) {
  return torch::sin(torch::arange(16 * 32, torch::kFloat).reshape({16, 32}) * 0.01 * step);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& kind, torch::nn::Sequential& model) {
  if (kind == "adam") return std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(1e-3));
  if (kind == "adamw") {
    return std::make_unique<torch::optim::AdamW>(model->parameters(), torch::optim::AdamWOptions(1e-3));
  }
  if (kind != "sgd") throw ckptw::UsageError("--optimizer is sgd, adam or adamw, not '" + kind + "'");
  return std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--steps N] [--every K] [--optimizer sgd|adam|adamw]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int steps = 20, every = 5;
  std::string optimizer_kind = "sgd";
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--steps") steps = std::atoi(argv[i + 1]);
    if (std::string(argv[i]) == "--every") every = std::atoi(argv[i + 1]);
    if (std::string(argv[i]) == "--optimizer") optimizer_kind = argv[i + 1];
  }
  try {
    const ckptw::RankInfo rank_info = ckptw::RankInfo::from_env();
    torch::manual_seed(rank_info.global_rank);
    torch::nn::Sequential model(torch::nn::Linear(32, 64), torch::nn::ReLU(), torch::nn::Linear(64, 1));
    std::unique_ptr<torch::optim::Optimizer> optimizer = make_optimizer(optimizer_kind, model);

    ckptw::BarrierConfig barrier_config;
    barrier_config.type = rank_info.global_world_size > 1 ? ckptw::BarrierType::kTcpStore : ckptw::BarrierType::kNone;
    ckptw::CheckpointWriterConfig config;
    config.write_barrier_timeout_secs = 60;
    ckptw::CheckpointWriter writer(config, rank_info,
                                   ckptw::create_barrier_from_config(barrier_config, rank_info),
                                   std::make_shared<LoggingHook>(rank_info.global_rank));

    for (int step = 1; step <= steps; ++step) {
      torch::Tensor loss = model->forward(batch(step)).pow(2).mean();
      optimizer->zero_grad();
      loss.backward();
      optimizer->step();
      if (step % every == 0) {
        ckptw::StateDict sd = ckptw::make_state_dict();
        sd.insert("model", ckptw::state_dict(*model));
        sd.insert("optimizer", ckptw::optimizer_state_dict(*optimizer));
        sd.insert("step", static_cast<int64_t>(step));
        ckptw::HookArgs kwargs = ckptw::make_state_dict();
        kwargs.insert("step", static_cast<int64_t>(step));
        ckptw::WriteResult r = writer.write(dir + "/step_" + std::to_string(step), sd, kwargs);
        std::printf("[rank %d] step %d: loss %.4f, %llu bytes in %.3f s\n", rank_info.global_rank, step,
                    loss.item<float>(), static_cast<unsigned long long>(r.bytes_written), r.total_secs);
      }
    }
    writer.close();
  } catch (const ckptw::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
