// The per-row statistics a training forward leaves for the backward (params.cuh `stats`;
// the CPU reference is runtime/oracle_backward.hpp): m, d1, bart = d2/d1 and
// lse = m + log d1, in natural-log units so that they read like any other attention
// library's logsumexp. The kernels keep m in log2 units of the scaled score; the backward
// turns lse back into log2 units once per row.
#pragma once
#include "plx/numeric.cuh"

namespace plx {

inline constexpr float kLn2 = 0.693147180559945309f;
inline constexpr float kLog2e = 1.442695040888963407f;

// m_log2: running max in log2 units; d1, d2: row totals. A row that saw no key (d1 = 0)
// stores lse = +inf, so that exp(s - lse) = 0 for every finite s, and zeros elsewhere.
__device__ __forceinline__ void store_row_stats(float* stats, long long row, float m_log2, float d1, float d2) {
  float4 s;
  if (d1 > 0.f) {
    float l2;
    asm("lg2.approx.f32 %0, %1;" : "=f"(l2) : "f"(d1));
    s = make_float4(m_log2 * kLn2, d1, d2 / d1, (m_log2 + l2) * kLn2);
  } else {
    s = make_float4(0.f, 0.f, 0.f, __int_as_float(0x7f800000));
  }
  *reinterpret_cast<float4*>(stats + row * 4) = s;
}

}  // namespace plx
