// What the host side costs per kernel, measured on the GPU at hand (issue 3's bars): the
// cold NVRTC compile, a new engine's load from the disk cache, and the host time of one
// Engine::attention call against a bare cuLaunchKernel of the same kernel on the same
// stream. `plx bench overhead` and `plx-bench overhead` print it.
#pragma once
#include <string>

#include "generator/variant.hpp"

namespace plx::measure {

struct HostOverhead {
  double cold_compile_ms = 0;  // render + NVRTC + ptxas, no cache
  double disk_load_ms = 0;     // a new engine: disk hit, verify, cuModuleLoadData
  double auto_us = 0;          // host time per call, engine's choice (lookup + launch)
  double named_us = 0;         // host time per call, variant named by the caller
  double raw_us = 0;           // host time per bare cuLaunchKernel: the floor
  int registers = 0;
};

// Decode of 4 q heads x 1 kv head x 64 keys (launch cost dominates), 2000 calls per
// figure after 100 warm-up calls each. A cache in a fresh temporary directory, removed
// afterwards. Throws NoGpuError without a GPU.
HostOverhead host_overhead(const Variant& v);

}  // namespace plx::measure
