// Split-KV merge (parallax-math.md 3.6): the num_splits fp32 partials of a logical row,
// weighted by exp(m_s - max m), give the finalized row. Empty splits carry m = -inf and
// d = O = 0, so they weigh nothing.
//
// Two callers: merge_kernel (one CTA of D/2 threads per row, launched after the decode
// kernel) and decode_kernel itself, whose last CTA to finish for a row block merges that
// block in place (merge_if_last), saving the second launch and its gap.
#pragma once
#include "plx/online_state.cuh"
#include "plx/params.cuh"

namespace plx {

// Merges columns col, col + 1 of partial row `row` (in (batch, kv head, token, member)
// order) and stores them at `out`. Loads use ld.global.cg: the partials were written by
// other CTAs of the same grid, so they must come from L2, not a stale L1 line.
template <Family F, class T, int D>
__device__ __forceinline__ void merge_row_pair(const AttnParams& p, long long row, int col, T* out) {
  const long long rows_out = (long long)p.batch * p.heads_q * p.q_len;
  const float log2e = 1.4426950408889634f;
  float M = neg_inf();
  for (int s = 0; s < p.num_splits; ++s) M = fmaxf(M, __ldcg(p.ws_stats + (s * rows_out + row) * 4));
  const float M_safe = M == neg_inf() ? 0.f : M;
  float d1 = 0.f, d2 = 0.f, o1a = 0.f, o1b = 0.f, o2a = 0.f, o2b = 0.f;
  for (int s = 0; s < p.num_splits; ++s) {
    const long long r = s * rows_out + row;
    const float4 st = __ldcg(reinterpret_cast<const float4*>(p.ws_stats + r * 4));
    const float w = exp2_fast((st.x - M_safe) * log2e);
    d1 += w * st.y;
    d2 += w * st.z;
    const float2 x1 = __ldcg(reinterpret_cast<const float2*>(p.ws_o + r * 2 * D + col));
    o1a += w * x1.x;
    o1b += w * x1.y;
    if (FamilyTraits<F>::probe) {
      const float2 x2 = __ldcg(reinterpret_cast<const float2*>(p.ws_o + r * 2 * D + D + col));
      o2a += w * x2.x;
      o2b += w * x2.y;
    }
  }
  *reinterpret_cast<unsigned*>(out) = pack2<T>(finalize<F>(o1a, o2a, d1, d2), finalize<F>(o1b, o2b, d1, d2));
}

// Called by every CTA of a split decode grid after it wrote its partials. The CTAs of a
// row block (same blockIdx.y, z) count themselves on one workspace counter; the last one
// merges the block's rows and puts the counter back to 0 for the next launch on the
// stream (the engine zeroes counters once, when it allocates them).
//
// The merge runs on one CTA while the rest of the GPU may be idle, so it is laid out for
// loads in flight rather than a simple per-column loop (measured on the H200: a per-column
// loop over 33 splits cost batch-1 decode 6 us): every split's stats go to shared memory
// in one parallel pass, each row's weights and sums are formed there, and then each
// thread streams 4 columns of every split's O with independent 16-byte loads.
//   scratch: (BM x num_splits) float4 stats + BM x 2 floats, inside the decode CTA's
//   shared memory (launch.cpp bounds num_splits so it fits).
// out_row(l) -> the output row pointer of logical row l of this (batch, kv head); sync()
// is the barrier of the kThreads threads that call this (__syncthreads, or a named barrier
// when the CTA has a warp that left early: the TMA decode's producer).
template <Family F, class T, int D, int BM, int kThreads, class OutRow, class Sync>
__device__ __forceinline__ void merge_if_last(const AttnParams& p, int row0, int rows_total, float* scratch,
                                              OutRow out_row, Sync sync) {
  __shared__ int is_last;
  __threadfence();  // this CTA's partials are visible device-wide before it is counted
  sync();
  if (threadIdx.x == 0) {
    int* counter = p.ws_counter + blockIdx.z * gridDim.y + blockIdx.y;
    is_last = atomicAdd(counter, 1) == p.num_splits - 1;
    if (is_last) atomicExch(counter, 0);
  }
  sync();
  if (!is_last) return;
  __threadfence();

  const int S = p.num_splits, rows = min(BM, rows_total - row0);
  const long long rows_out = (long long)p.batch * p.heads_q * p.q_len;
  const long long row_base = (long long)blockIdx.z * rows_total + row0;
  float4* st = reinterpret_cast<float4*>(scratch);  // [row][split]: m (ln), d1, d2, weight
  float* sums = scratch + 4 * BM * S;               // [row]: d1, d2
  for (int e = threadIdx.x; e < rows * S; e += kThreads) {
    const int r = e / S, s = e % S;
    st[e] = __ldcg(reinterpret_cast<const float4*>(p.ws_stats + (s * rows_out + row_base + r) * 4));
  }
  sync();
  const float log2e = 1.4426950408889634f;
  for (int r = threadIdx.x; r < rows; r += kThreads) {
    float M = neg_inf();
    for (int s = 0; s < S; ++s) M = fmaxf(M, st[r * S + s].x);
    const float M_safe = M == neg_inf() ? 0.f : M;
    float d1 = 0.f, d2 = 0.f;
    for (int s = 0; s < S; ++s) {
      float4& x = st[r * S + s];
      x.w = exp2_fast((x.x - M_safe) * log2e);
      d1 += x.w * x.y;
      d2 += x.w * x.z;
    }
    sums[2 * r] = d1;
    sums[2 * r + 1] = d2;
  }
  sync();
  constexpr int kQuads = D / 4;
  for (int e = threadIdx.x; e < rows * kQuads; e += kThreads) {
    const int r = e / kQuads, col = 4 * (e % kQuads);
    float4 o1 = make_float4(0.f, 0.f, 0.f, 0.f), o2 = o1;
#pragma unroll 4
    for (int s = 0; s < S; ++s) {
      const float w = st[r * S + s].w;
      const float* src = p.ws_o + (s * rows_out + row_base + r) * 2 * D + col;
      const float4 a = __ldcg(reinterpret_cast<const float4*>(src));
      o1.x += w * a.x; o1.y += w * a.y; o1.z += w * a.z; o1.w += w * a.w;
      if (FamilyTraits<F>::probe) {
        const float4 c = __ldcg(reinterpret_cast<const float4*>(src + D));
        o2.x += w * c.x; o2.y += w * c.y; o2.z += w * c.z; o2.w += w * c.w;
      }
    }
    const float d1 = sums[2 * r], d2 = sums[2 * r + 1];
    unsigned* out = reinterpret_cast<unsigned*>(out_row(row0 + r) + col);
    out[0] = pack2<T>(finalize<F>(o1.x, o2.x, d1, d2), finalize<F>(o1.y, o2.y, d1, d2));
    out[1] = pack2<T>(finalize<F>(o1.z, o2.z, d1, d2), finalize<F>(o1.w, o2.w, d1, d2));
  }
}

template <Family F, class T, int D>
struct MergeConfig {
  static constexpr Family kFamily = F;
  using Elem = T;
  static constexpr int kD = D, kThreads = D / 2;
};

template <class C>
__global__ void __launch_bounds__(C::kThreads) merge_kernel(const AttnParams p) {
  using T = typename C::Elem;
  const int row = blockIdx.x;
  // Row order of decode_kernel: (batch, kv head, token, group member).
  const int rows_total = p.group * p.q_len;
  const int bh = row / rows_total, l = row % rows_total;
  const int b = bh / p.heads_kv, hkv = bh % p.heads_kv;
  const int t = l / p.group, h = hkv * p.group + l % p.group;
  T* out = static_cast<T*>(p.o) + b * p.o_stride_b + t * p.o_stride_t + h * p.o_stride_h + 2 * threadIdx.x;
  merge_row_pair<C::kFamily, T, C::kD>(p, row, 2 * threadIdx.x, out);
}

}  // namespace plx
