// Hosting (rank 0) or joining the c10d TCPStore named by TcpStoreBarrier::Options.
#pragma once

#include "ckptw/barriers.hpp"

namespace ckptw::detail {

/// Fills in the address and port from RankInfo (MASTER_ADDR/MASTER_PORT) or
/// the defaults 127.0.0.1:29500.
TcpStoreBarrier::Options resolve_store_options(const RankInfo& info, TcpStoreBarrier::Options options);

/// Throws ckptw::Error naming the address when the store cannot be hosted or reached.
c10::intrusive_ptr<c10d::Store> connect_tcp_store(const RankInfo& info, const TcpStoreBarrier::Options& options);

}  // namespace ckptw::detail
