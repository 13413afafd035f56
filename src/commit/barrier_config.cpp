#include "ckptw/barriers.hpp"
#include "ckptw/error.hpp"

namespace ckptw {

const char* to_string(BarrierType type) {
  switch (type) {
    case BarrierType::kNone: return "none";
    case BarrierType::kNccl: return "nccl";
    case BarrierType::kTcpStore: return "tcp_store";
    case BarrierType::kProcessGroup: return "process_group";
  }
  return "unknown";
}

BarrierType parse_barrier_type(const std::string& text) {
  for (BarrierType type : {BarrierType::kNone, BarrierType::kNccl, BarrierType::kTcpStore, BarrierType::kProcessGroup}) {
    if (text == to_string(type)) return type;
  }
  throw UsageError("unknown barrier type '" + text + "' (expected none, nccl, tcp_store or process_group)");
}

std::shared_ptr<Barrier> create_barrier_from_config(const BarrierConfig& config, const RankInfo& rank_info) {
  switch (config.type) {
    case BarrierType::kNone:
      return nullptr;
    case BarrierType::kTcpStore: {
      TcpStoreBarrier::Options options = config.tcp_store;
      options.timeout_secs = config.timeout_secs;
      if (config.store) return std::make_shared<TcpStoreBarrier>(rank_info, config.store, options);
      return std::make_shared<TcpStoreBarrier>(rank_info, options);
    }
    case BarrierType::kNccl: {
      NcclBarrier::Options options;
      options.store = config.tcp_store;
      options.device = config.nccl_device;
      options.timeout_secs = config.timeout_secs;
      return std::make_shared<NcclBarrier>(rank_info, options, config.store);
    }
    case BarrierType::kProcessGroup:
      if (!config.process_group) throw UsageError("BarrierConfig: process_group barrier needs a process_group");
      return std::make_shared<ProcessGroupBarrier>(rank_info, config.process_group,
                                                   std::chrono::seconds(config.timeout_secs));
  }
  throw UsageError("BarrierConfig: unknown barrier type");
}

}  // namespace ckptw
