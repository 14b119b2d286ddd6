// One warp's running state for MT m16 tiles: the accumulators of parallax-math.md 3.1,
// held in mma C-fragment layout, and the per-tile update of 3.2.
//
// Row packing: softmax puts 16 query rows in an m-tile (fragment rows g and g+8 are two
// query rows). The Parallax families put 8 query rows in rows 0..7 and their probes r in
// rows 8..15, so one S = [Q;R] K^T MMA yields s1 (c0, c1) and s2 (c2, c3) of the same
// query row in the same thread, and one P.V MMA with P = [w; w*s2] yields O1 (rows 0..7)
// and O2 (rows 8..15). The thread owning row g therefore holds everything its finalizer
// needs, and K/V fragments feed twice the FLOPs per load.
#pragma once
#include "plx/numeric.cuh"

namespace plx {

enum class Family : int { softmax = 0, parallax = 1, parallax_uncentered = 2 };

template <Family F>
struct FamilyTraits {
  static constexpr bool probe = F != Family::softmax;        // rows 8..15 are r rows
  static constexpr bool d2 = F == Family::parallax;          // centered: needs d2 = sum w*s2
  static constexpr int rows_per_tile = probe ? 8 : 16;       // logical rows per m-tile
  static constexpr int stat_rows = probe ? 1 : 2;            // softmax rows: g and g+8
};

// Key range [lo, hi) visible to one fragment row.
struct RowRange {
  int lo, hi;
};

// kLazy: the running max moves only when a tile's max exceeds it by more than
// kRescaleSlack (log2 units), so weights reach at most 2^kRescaleSlack and O needs no
// rescale on most tiles (FlashAttention-4's conditional rescaling; exact, since m, d1, d2
// and O always refer to the same m). Used where rescale_o_warp can skip whole warps
// (prefill_sm90.cuh). Off for fp16 probe rows: P2 = w s2 would reach 2^8 |s2| and
// overflow fp16 at |s2| > 256.
// kMmaSums: d1 and d2 are not summed here but by the kernel's tensor cores (P times a
// column of ones, into `sums`; prefill_sm90.cuh), which see exactly the T-rounded P, so the
// weights need no round trip to T and back and no adds: 8 of the 16 instructions per
// 4 scores of the Parallax update. take_mma_sums() replaces reduce_rows().
template <Family F, class T, int MT, int D, bool kLazy = false, bool kMmaSums = false>
struct OnlineState {
  using Traits = FamilyTraits<F>;
  static constexpr int R = Traits::stat_rows;
  static constexpr float kRescaleSlack = 8.f;
  float o[MT][D / 8][4];
  float m[MT][R];   // running max of s1, log2 units; -inf while no key was visible
  float d1[MT][R];  // this thread's share of sum w (quad_sum gives the row's total)
  float d2[MT];     // this thread's share of sum w * s2 (centered Parallax only)
  float m_seen[MT][R];  // kLazy: the true running max (m lags it by up to kRescaleSlack)
  float sums[MT][4];    // kMmaSums: P x ones in the C layout, c0 = row g's total, c2 = row g + 8's

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int n = 0; n < D / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) { m[mt][r] = m_seen[mt][r] = neg_inf(); d1[mt][r] = 0.f; }
      d2[mt] = 0.f;
      sums[mt][0] = sums[mt][1] = sums[mt][2] = sums[mt][3] = 0.f;
    }
  }

  // s: raw q.k (and r.k) scores of NK keys for m-tile mt, C layout. Scales, masks s1 to
  // -inf outside each row's range, updates m/d1/d2, rescales O, and leaves the P operand
  // (w, and w*s2 in rows 8..15) in s. key0: key index of this thread's column 0.
  template <int NK, bool kMask>
  __device__ __forceinline__ void update(int mt, float (&s)[NK / 8][4], float scale_log2, int key0,
                                         const RowRange (&rows)[R]) {
    float alpha[R];
    update_weights<NK, kMask>(mt, s, scale_log2, key0, rows, alpha);
    rescale_o(mt, alpha);
  }

  // update() without the rescale of O: alpha receives each row's factor for rescale_o.
  // For kernels whose O is still being written by an asynchronous MMA while the next
  // tile's weights are computed (prefill_sm90.cuh, pipelined).
  template <int NK, bool kMask>
  __device__ __forceinline__ void update_weights(int mt, float (&s)[NK / 8][4], float scale_log2, int key0,
                                                 const RowRange (&rows)[R], float (&alpha)[R]) {
    weights<NK, kMask>(mt, s, scale_log2, key0, rows, alpha, [&](int n, int half, unsigned, float lo, float hi) {
      s[n][2 * half] = lo;
      s[n][2 * half + 1] = hi;
    });
  }

  // update_weights() that hands P to the MMA already packed: pa is the A-operand layout of
  // an m16 (wgmma: m64) x k16 step, pa[ks] = {p[2ks][0..1], p[2ks][2..3], p[2ks+1][0..1],
  // p[2ks+1][2..3]}. The pairs were rounded to T anyway (round_pack), so this saves the
  // second conversion a pack after update() would cost; s is left as scaled scores.
  template <int NK, bool kMask>
  __device__ __forceinline__ void update_weights_packed(int mt, float (&s)[NK / 8][4], float scale_log2, int key0,
                                                        const RowRange (&rows)[R], float (&alpha)[R],
                                                        unsigned (&pa)[NK / 16][4]) {
    weights<NK, kMask>(mt, s, scale_log2, key0, rows, alpha,
                       [&](int n, int half, unsigned packed, float, float) { pa[n >> 1][2 * (n & 1) + half] = packed; });
  }

  // The weights of math 3.2 for one tile. The scale is folded into the exponent
  // (w = 2^(s * scale - m), one FFMA per score) and the running max is taken over raw
  // scores, which is the same max because scale > 0 (runtime/launch.cpp checks it).
  // put(n, half, packed, lo, hi) receives the pair of column block n, c[2 half .. 2 half + 1]:
  // both T-rounded weights (or w * s2) and their packed form.
  template <int NK, bool kMask, class Put>
  __device__ __forceinline__ void weights(int mt, float (&s)[NK / 8][4], float scale_log2, int key0,
                                          const RowRange (&rows)[R], float (&alpha)[R], Put put) {
    const int t = threadIdx.x & 3;
    // Partial maxima per (element, column block parity): four independent FMNMX chains per
    // row instead of one through all NK / 4 scores, whose latency sat on the softmax's
    // critical path. The max is exact in any order.
    float part[4][2];
#pragma unroll
    for (int e = 0; e < 4; ++e) part[e][0] = part[e][1] = neg_inf();
#pragma unroll
    for (int n = 0; n < NK / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = (Traits::probe || e < 2) ? 0 : 1;
        if (Traits::probe && e >= 2) continue;  // s2 is never scaled or masked (3.5)
        if (kMask) {
          const int key = key0 + n * 8 + 2 * t + (e & 1);
          if (key < rows[r].lo || key >= rows[r].hi) s[n][e] = neg_inf();
        }
        part[e][n & 1] = fmaxf(part[e][n & 1], s[n][e]);
      }
    }
    float mx[R];
#pragma unroll
    for (int r = 0; r < R; ++r)
      mx[r] = fmaxf(fmaxf(part[2 * r][0], part[2 * r][1]), fmaxf(part[2 * r + 1][0], part[2 * r + 1][1]));
    float neg_m[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float m_tile = quad_max(mx[r]) * scale_log2;
      // Lazy: -inf + slack stays -inf, so a row's first visible key always sets m.
      if (kLazy) m_seen[mt][r] = fmaxf(m_seen[mt][r], m_tile);
      const float m_new = kLazy ? (m_tile > m[mt][r] + kRescaleSlack ? m_tile : m[mt][r]) : fmaxf(m[mt][r], m_tile);
      // A row that has seen no visible key keeps m = -inf; subtracting 0 instead makes its
      // alpha = exp2(-inf) = 0 and every w = 0 instead of exp2(-inf - -inf) = NaN.
      neg_m[r] = m_new == neg_inf() ? 0.f : -m_new;
      alpha[r] = m_new == m[mt][r] ? 1.f : exp2_fast(m[mt][r] + neg_m[r]);  // exactly 1 for rescale_o_warp
      m[mt][r] = m_new;
      if (!kMmaSums) d1[mt][r] *= alpha[r];
    }
    if (Traits::d2 && !kMmaSums) d2[mt] *= alpha[0];
#pragma unroll
    for (int n = 0; n < NK / 8; ++n) {
      float w0 = exp2_fast(fmaf(s[n][0], scale_log2, neg_m[0])), w1 = exp2_fast(fmaf(s[n][1], scale_log2, neg_m[0]));
      const unsigned p01 = kMmaSums ? pack2<T>(w0, w1) : round_pack<T>(w0, w1);
      if (!kMmaSums) d1[mt][0] += w0 + w1;
      float w2, w3;
      if (Traits::probe) {
        w2 = w0 * s[n][2];
        w3 = w1 * s[n][3];
      } else {
        w2 = exp2_fast(fmaf(s[n][2], scale_log2, neg_m[R - 1]));
        w3 = exp2_fast(fmaf(s[n][3], scale_log2, neg_m[R - 1]));
      }
      const unsigned p23 = kMmaSums ? pack2<T>(w2, w3) : round_pack<T>(w2, w3);
      if (!kMmaSums) {
        if (Traits::probe) {
          if (Traits::d2) d2[mt] += w2 + w3;
        } else {
          d1[mt][R - 1] += w2 + w3;
        }
      }
      put(n, 0, p01, w0, w1);
      put(n, 1, p23, w2, w3);
    }
  }

  // O *= alpha, per row (Parallax: O1 and O2 of a query share its alpha).
  __device__ __forceinline__ void rescale_o(int mt, const float (&alpha)[R]) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[mt][n][0] *= alpha[0];
      o[mt][n][1] *= alpha[0];
      o[mt][n][2] *= alpha[R - 1];
      o[mt][n][3] *= alpha[R - 1];
    }
    if (kMmaSums) {
      sums[mt][0] *= alpha[0];
      sums[mt][1] *= alpha[0];
      sums[mt][2] *= alpha[R - 1];
      sums[mt][3] *= alpha[R - 1];
    }
  }

  // rescale_o unless every row of the warp keeps alpha = 1 (the usual case under kLazy).
  // The whole warp must be converged here (a vote).
  __device__ __forceinline__ void rescale_o_warp(int mt, const float (&alpha)[R]) {
    bool need = false;
#pragma unroll
    for (int r = 0; r < R; ++r) need |= alpha[r] != 1.f;
    if (__any_sync(0xffffffffu, need)) rescale_o(mt, alpha);
  }

  // The row's statistics as the backward defines them (m the true max, d1 and d2 relative
  // to it): under kLazy, m may lag the max, and d1, d2 are moved from m to it. After
  // reduce_rows() or take_mma_sums().
  __device__ __forceinline__ void true_stats(int mt, int r, float& m_out, float& d1_out, float& d2_out) const {
    m_out = m[mt][r];
    d1_out = d1[mt][r];
    d2_out = Traits::d2 ? d2[mt] : 0.f;
    if (kLazy && m_seen[mt][r] != m[mt][r]) {  // both -inf for a row that saw no key
      const float f = exp2_fast(m[mt][r] - m_seen[mt][r]);
      m_out = m_seen[mt][r];
      d1_out *= f;
      d2_out *= f;
    }
  }

  // kMmaSums: the row totals from the ones column (every column of it holds the total).
  __device__ __forceinline__ void take_mma_sums() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      d1[mt][0] = sums[mt][0];
      if (R > 1) d1[mt][R - 1] = sums[mt][2];
      if (Traits::d2) d2[mt] = sums[mt][2];
    }
  }

  // Row totals of d1/d2 (each quad of lanes shares a row).
  __device__ __forceinline__ void reduce_rows() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int r = 0; r < R; ++r) d1[mt][r] = quad_sum(d1[mt][r]);
      if (Traits::d2) d2[mt] = quad_sum(d2[mt]);
    }
  }
};

// What section 3.3 needs of a row's totals, computed once per row: 1 / d1 (0 for a row
// that saw no key, so it outputs 0) and d2 / d1. Hoisted out of the per-column finalize:
// inlined per element, the IEEE reciprocal (MUFU.RCP, a Newton step, a slow-path branch)
// was repeated for every column pair, ~500 branchy instructions in the Hopper prefill's
// epilogue of each work item.
struct RowTotals {
  float inv, d2_inv;
};
__device__ __forceinline__ RowTotals row_totals(float d1, float d2) {
  const float inv = d1 > 0.f ? 1.f / d1 : 0.f;
  return {inv, d2 * inv};
}

// Section 3.3 (and the uncentered member of section 6): the output of one row and one
// column from its accumulators.
template <Family F>
__device__ __forceinline__ float finalize(float o1, float o2, RowTotals t) {
  if (F == Family::softmax) return o1 * t.inv;
  if (F == Family::parallax_uncentered) return (o1 - o2) * t.inv;
  const float barv = o1 * t.inv;
  return barv + t.d2_inv * barv - o2 * t.inv;
}
template <Family F>
__device__ __forceinline__ float finalize(float o1, float o2, float d1, float d2) {
  return finalize<F>(o1, o2, row_totals(d1, d2));
}

}  // namespace plx
