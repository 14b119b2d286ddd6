// Split-KV merge (parallax-math.md 3.6): one CTA of D/2 threads per logical row combines
// the num_splits fp32 partials written by decode_kernel, weighting split s by
// exp(m_s - max m), and writes the finalized row. Empty splits carry m = -inf, d = O = 0.
#pragma once
#include "plx/online_state.cuh"
#include "plx/params.cuh"

namespace plx {

template <Family F, class T, int D>
struct MergeConfig {
  static constexpr Family kFamily = F;
  using Elem = T;
  static constexpr int kD = D, kThreads = D / 2;
};

template <class C>
__global__ void __launch_bounds__(C::kThreads) merge_kernel(const AttnParams p) {
  using T = typename C::Elem;
  constexpr int D = C::kD;
  const int rows_out = p.batch * p.heads_q * p.q_len;
  const int row = blockIdx.x;
  const int col = 2 * threadIdx.x;
  const float log2e = 1.4426950408889634f;

  float M = neg_inf();
  for (int s = 0; s < p.num_splits; ++s) M = fmaxf(M, p.ws_stats[((long long)s * rows_out + row) * 4]);
  const float M_safe = M == neg_inf() ? 0.f : M;
  float d1 = 0.f, d2 = 0.f, o1a = 0.f, o1b = 0.f, o2a = 0.f, o2b = 0.f;
  for (int s = 0; s < p.num_splits; ++s) {
    const long long r = (long long)s * rows_out + row;
    const float* st = p.ws_stats + r * 4;
    const float w = exp2_fast((st[0] - M_safe) * log2e);
    d1 += w * st[1];
    d2 += w * st[2];
    const float2 x1 = *reinterpret_cast<const float2*>(p.ws_o + r * 2 * D + col);
    const float2 x2 = *reinterpret_cast<const float2*>(p.ws_o + r * 2 * D + D + col);
    o1a += w * x1.x;
    o1b += w * x1.y;
    o2a += w * x2.x;
    o2b += w * x2.y;
  }
  // Row order of decode_kernel: (batch, kv head, token, group member).
  const int rows_total = p.group * p.q_len;
  const int bh = row / rows_total, l = row % rows_total;
  const int b = bh / p.heads_kv, hkv = bh % p.heads_kv;
  const int t = l / p.group, h = hkv * p.group + l % p.group;
  T* out = static_cast<T*>(p.o) + b * p.o_stride_b + t * p.o_stride_t + h * p.o_stride_h + col;
  *reinterpret_cast<unsigned*>(out) =
      pack2<T>(finalize<C::kFamily>(o1a, o2a, d1, d2), finalize<C::kFamily>(o1b, o2b, d1, d2));
}

}  // namespace plx
