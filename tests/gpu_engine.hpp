// The engine every [gpu] test case shares: one per process (compiled kernels stay loaded
// across cases), or nullptr with one WARN line on a machine without a usable GPU, so the
// case returns early instead of failing. Include after catch2/catch.hpp.
#pragma once
#include <string>

#include "parallax/parallax.hpp"
#include "runtime/driver.hpp"

namespace plx::testing {

inline Engine* engine_or_skip() {
  static std::string why;
  static bool ok = cu::available(&why);
  if (!ok) {
    WARN("skipping [gpu] test: " << why);
    return nullptr;
  }
  static Engine engine(0);
  // The harness allocates its buffers in the same (primary) context the engine uses.
  static cu::Device device(0);
  device.make_current();
  return &engine;
}

}  // namespace plx::testing
