// The roofline model the tuner ranks variants by before (or instead of) timing them: bytes
// moved and FLOPs done by one launch, against a GPU's two ceilings (HBM bandwidth, dense
// tensor-core rate), stretched by how well the grid fills the SMs, plus launch overheads.
// Tiny pure functions with worked numbers (FlashAttention-3 heuristics.h style), so a
// reader can check a prediction by hand; no GPU is needed.
#pragma once
#include <string>
#include <string_view>

#include "generator/variant.hpp"

namespace plx {

struct GpuProfile {
  std::string name;       // "h200"
  double hbm_GBps = 0;    // attainable HBM bandwidth, GB/s (1e9 B/s)
  double tc_tflops_bf16 = 0;  // attainable dense bf16 tensor-core rate, TFLOP/s
  int sm_count = 0;
  long smem_per_sm = 0;   // shared memory per SM usable by CTAs, bytes
  double launch_us = 0;   // fixed cost of one kernel launch on the GPU timeline
  std::string source;     // where the ceilings come from, for labels ("datasheet", ...)
};

// "h200", "h100" or "a100"; throws UnsupportedError naming the known profiles otherwise.
GpuProfile profile(std::string_view name);

// One attention problem: [batch, len, heads, head_dim] tensors; window -1 = none.
struct Problem {
  int batch = 1, q_len = 1, kv_len = 1, heads_q = 1, heads_kv = 1;
  int window = -1;
};

struct Prediction {
  double us = 0;          // predicted GPU time of one call, microseconds
  double bytes = 0;       // HBM traffic, bytes
  double flops = 0;       // tensor-core work including padding, FLOPs
  double intensity = 0;   // flops / bytes
  bool compute_bound = false;
  int splits = 1;         // decode KV splits (1 = no merge kernel)
  int ctas = 0;           // CTAs of the main kernel
  double wave_efficiency = 1;  // roofline::wave_efficiency(ctas), in (0, 1]
};

// Does a CTA of v (its shared memory plus the 1 KiB the hardware reserves) fit on an SM?
//   decode parallax d128 m16 n64 s4: 139264 + 1024 B fits both the h200 (233472) and the
//   a100 (167936); n128 s4 (270336 B) fits neither
bool fits(const Variant& v, const GpuProfile& g);

// Throws UnsupportedError when v cannot be predicted (illegal variant, a CTA that does not
// fit on the profile's SM, empty problem).
Prediction predict(const Variant& v, const Problem& p, const GpuProfile& g);

namespace roofline {

// FLOPs per visible (query, key) pair (parallax-math.md 3.7): softmax does q.k and p.v
// (2D + 2D); the Parallax families add r.k and the second p.v (8D in all).
//   softmax d128 -> 512; parallax d128 -> 1024
constexpr double flops_per_pair(Family f, int head_dim) { return (has_probe(f) ? 8.0 : 4.0) * head_dim; }

// FLOPs per visible pair of the backward (templates/plx/backward*.cuh, two CTA roles that
// both recompute the scores): the probe families do 11 products of 2D (dQ/dR role S1, S2,
// A, dQ, dR; dK/dV role S1, S2, A, dV and two for dK) = 22D, the count the benchmarks use
// (tools/bench/train_step.py, docs/PERFORMANCE.md); softmax 7 (S1, A, dQ; S1, A, dV, dK) = 14D.
//   parallax d128 -> 2816; softmax d128 -> 1792
constexpr double backward_flops_per_pair(Family f, int head_dim) { return (has_probe(f) ? 22.0 : 14.0) * head_dim; }

// Rows an m-tiled kernel computes for `rows` real rows: whole tiles of block_m.
//   rows 4, block_m 16 -> 16 (a GQA group of 4 pays for 16 rows); rows 1000, block_m 64 -> 1024
constexpr long padded_rows(long rows, int block_m) { return (rows + block_m - 1) / block_m * block_m; }

// Fraction of the SMs' time that does work when `ctas` equal CTAs are spread evenly: the
// busiest SM runs ceil(ctas / SMs) of them one after another (or side by side, sharing its
// throughput: the same time). How many CTAs fit on an SM at once does not enter: one
// resident decode CTA keeps 2-4 K/V tiles (64-128 KiB) in flight, 132 x 64 KiB = 8.4 MB,
// well above the ~2.6 MB that 4.28 TB/s x ~600 ns of latency needs to saturate HBM; the
// residency limit shapes the split count instead (runtime/launch.hpp decode_splits_for).
//   132 SMs: 264 CTAs -> 1.0; 265 -> 265 / 396 = 0.67; 64 -> 0.48; 512 -> 512 / 528 = 0.97
constexpr double wave_efficiency(long ctas, int sm_count) {
  if (ctas <= 0 || sm_count <= 0) return 1.0;
  const long per_sm = (ctas + sm_count - 1) / sm_count;
  return double(ctas) / double(per_sm * sm_count);
}

// Seconds of the slower ceiling, in microseconds.
//   134.2 MB at 4280 GB/s = 31.4 us; 17.6 GFLOP at 754 TFLOP/s = 23.3 us -> 31.4 us, memory
constexpr double roofline_us(double bytes, double flops, const GpuProfile& g) {
  const double mem = bytes / (g.hbm_GBps * 1e3);        // GB/s x 1e3 = bytes per us
  const double math = flops / (g.tc_tflops_bf16 * 1e6);  // TFLOP/s x 1e6 = FLOPs per us
  return mem > math ? mem : math;
}

}  // namespace roofline
}  // namespace plx
