// Umbrella header: everything a user of ckptw needs.
#pragma once

#include "ckptw/barrier.hpp"
#include "ckptw/barriers.hpp"
#include "ckptw/build_info.hpp"
#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/checkpointer.hpp"
#include "ckptw/crc32.hpp"
#include "ckptw/dcp.hpp"
#include "ckptw/config.hpp"
#include "ckptw/error.hpp"
#include "ckptw/hooks.hpp"
#include "ckptw/module.hpp"
#include "ckptw/payload_source.hpp"
#include "ckptw/types.hpp"
#include "ckptw/value.hpp"
