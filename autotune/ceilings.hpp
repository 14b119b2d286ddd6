// The two ceilings of a GPU's roofline, measured on the GPU itself (issue 6, point 1):
//   copy_GBps   device-to-device cuMemcpyDtoDAsync of a large buffer, bytes read + written
//               per second (the reference figures' convention: 4.28 TB/s on the H200);
//   tc_tflops   dense bf16 tensor-core rate of our own MMA kernels: mma.sync m16n8k16 (what
//               the sm_80 and current sm_90a templates issue) and, on sm_90a, wgmma
//               m64n128k16 with both operands in shared memory; the higher of the two.
// `plx tune` measures them once per GPU identity and keeps them in the tuning database
// (autotune/tuning_db.hpp); the roofline model then uses them instead of the built-in
// profile, and the ridge point (FLOP per byte) follows.
#pragma once
#include <cstdint>
#include <string>

#include "autotune/roofline.hpp"
#include "common/json.hpp"

namespace plx {
namespace cu {
class Device;
}

struct Ceilings {
  double copy_GBps = 0;        // 1e9 B/s, read + written
  double tc_tflops = 0;        // max(mma_sync_tflops, wgmma_tflops)
  double mma_sync_tflops = 0;  // 0: not measured
  double wgmma_tflops = 0;     // 0: not measured (sm_80, or the measurement failed)
  std::string tc_kernel;       // which kernel gave tc_tflops, e.g. "wgmma m64n128k16 bf16"
  std::int64_t measured_at = 0;  // unix seconds
  bool operator==(const Ceilings&) const = default;

  bool valid() const { return copy_GBps > 0 && tc_tflops > 0; }
  // FLOP per byte where the two roofs meet: 754 TFLOP/s / 4280 GB/s = 176.2
  double ridge() const { return copy_GBps > 0 ? tc_tflops * 1e3 / copy_GBps : 0; }
};

// The measured fields as a JSON object, as the tuning database stores them (the tune
// report adds the derived ridge point).
json::Value ceilings_to_json(const Ceilings& c);

// `base` with the measured ceilings in place of its bandwidth and tensor-core rate (the
// SM count, shared memory and launch cost stay), named "<base> (measured)". An invalid
// `c` returns base unchanged.
GpuProfile with_ceilings(GpuProfile base, const Ceilings& c);

// Measures both ceilings on `dev` (its primary context is made current for the call).
// Takes about a second. Throws DriverError / CompileError on failure; a wgmma failure
// alone is not fatal (mma.sync then sets tc_tflops, and `wgmma_error` says why).
Ceilings measure_ceilings(const cu::Device& dev, std::string* wgmma_error = nullptr);

namespace ceilings_detail {
// The CUDA source of the MMA kernels for `arch` ("sm_80" or "sm_90a"; wgmma only in the
// latter). Exposed so CI compiles it without a GPU.
std::string mma_source(const std::string& arch);
// FLOPs one launch of each kernel performs for `ctas` CTAs and `iters` loop iterations.
double mma_sync_flops(long ctas, long iters);
double wgmma_flops(long ctas, long iters);
}  // namespace ceilings_detail

}  // namespace plx
