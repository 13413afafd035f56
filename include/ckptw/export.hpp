// Symbol visibility for the ckptw shared library. The library is built with
// -fvisibility=hidden; only declarations marked CKPTW_EXPORT are part of the ABI.
#pragma once

#if defined(CKPTW_COMPILE_LIBRARY)
#define CKPTW_EXPORT __attribute__((visibility("default")))
#else
#define CKPTW_EXPORT
#endif
