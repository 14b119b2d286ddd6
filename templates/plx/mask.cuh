// Which keys a query row sees (parallax-math.md 3.5; the same rule as the CPU oracle's
// visible_range): row t of q_len rows against L live keys sits on diagonal
// i' = L - q_len + t; causal keeps keys <= i', a window of W keeps keys > i' - W.
// Always one contiguous range, possibly empty.
#pragma once
#include "plx/online_state.cuh"
#include "plx/params.cuh"

namespace plx {

template <bool kCausal, bool kWindow>
__device__ __forceinline__ RowRange visible_keys(int L, int q_len, int t, int window) {
  const int last = L - q_len + t;
  const int hi = kCausal ? min(max(last + 1, 0), L) : L;
  const int lo = kWindow ? max(0, last - window + 1) : 0;
  return {min(lo, hi), hi};
}

// Live KV length of batch b: seqused_k[b] clamped to [0, kv_len], or kv_len.
__device__ __forceinline__ int live_len(const AttnParams& p, int b) {
  return p.seqused_k ? min(max(p.seqused_k[b], 0), p.kv_len) : p.kv_len;
}

// Element offset of key `key` of batch b in K (and V), head offset excluded: contiguous
// [batch, kv_len, ...] or, with a block table, the key's page in the pool. The branch is
// uniform across the grid.
__device__ __forceinline__ long long kv_row_offset(const AttnParams& p, int b, int key) {
  if (!p.block_table) return b * p.k_stride_b + (long long)key * p.k_stride_t;
  const int page = __ldg(p.block_table + (long long)b * p.max_pages + (key >> p.page_shift));
  const int row = key & ((1 << p.page_shift) - 1);
  return ((long long)page << p.page_shift | row) * p.k_stride_t;
}

// Keys of a block of rows t_first..t_last (consecutive diagonals): `any` is the union of
// their ranges (what must be streamed), `all` the intersection (where no mask is needed).
struct BlockKeys {
  RowRange any, all;
};
template <bool kCausal, bool kWindow>
__device__ __forceinline__ BlockKeys block_keys(int L, int q_len, int t_first, int t_last, int window) {
  const RowRange first = visible_keys<kCausal, kWindow>(L, q_len, t_first, window);
  const RowRange last = visible_keys<kCausal, kWindow>(L, q_len, t_last, window);
  BlockKeys k;
  k.any = {first.lo, max(first.lo, last.hi)};
  k.all = {last.lo, first.hi};  // may be empty (lo >= hi): then every tile is masked
  return k;
}

// Does the key span [k0, k0 + n) need the per-element mask / any work at all?
__device__ __forceinline__ bool span_needs_mask(const BlockKeys& k, int k0, int n) {
  return !(k0 >= k.all.lo && k0 + n <= k.all.hi);
}
__device__ __forceinline__ bool span_is_dead(const BlockKeys& k, int k0, int n) {
  return k0 >= k.any.hi || k0 + n <= k.any.lo;
}

}  // namespace plx
