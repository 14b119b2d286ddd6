// Which keys a query row sees (parallax-math.md 3.5; the same rule as the CPU oracle's
// visible_range): row t of q_len rows against L live keys sits on diagonal
// i' = L - q_len + t; causal keeps keys <= i', a window of W keeps keys > i' - W.
// Always one contiguous range, possibly empty.
#pragma once
#include "plx/online_state.cuh"
#include "plx/params.cuh"
#include "plx/smem_tile.cuh"

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

// One sequence of the batch as a prefill or backward kernel sees it: its query count, its
// live keys, the element offsets of its first query row (q, r, o, barv; the backward's
// dout, dq, dr) and first key row (k, v; dk, dv), and kv_len, its stored key rows: the
// backward writes dk / dv for all of them (zero past L, the keys seqused_k cuts off).
// A padded batch [batch, len, heads, d] and a packed varlen batch (cu_seqlens) differ only
// here; for the padded one every field is what the kernels computed before varlen.
struct SeqView {
  int q_len, L;
  long long q0, o0, k0;
  int kv_len;
};
__device__ __forceinline__ SeqView seq_view(const AttnParams& p, int b) {
  if (!p.cu_seqlens_q)
    return {p.q_len, live_len(p, b), b * p.q_stride_b, b * p.o_stride_b, b * p.k_stride_b, p.kv_len};
  // Varlen: the device reads the offsets (the host cannot validate them). A sequence with
  // cu[b + 1] <= cu[b] is empty (its CTAs exit): both lengths are clamped at 0, so no loop
  // count derived from them can go negative; the live keys are clamped to [0, length].
  const int qs = p.cu_seqlens_q[b], ks = p.cu_seqlens_k[b];
  const int kv_len = max(p.cu_seqlens_k[b + 1] - ks, 0);
  const int L = p.seqused_k ? min(max(p.seqused_k[b], 0), kv_len) : kv_len;
  return {max(p.cu_seqlens_q[b + 1] - qs, 0), L, qs * p.q_stride_t, qs * p.o_stride_t, ks * p.k_stride_t, kv_len};
}

// Loads rows [key0, key0 + rows) of one head of K (or V) into `tile`, zero-filling keys at
// or past L. `head` points at the head's first element of batch 0 (contiguous) or of the
// pool (paged: key j of batch b lives in page block_table[b * max_pages + j >> shift]);
// k0: the sequence's first key row (SeqView::k0; contiguous only). The paged/contiguous
// branch is taken once per tile, outside the row loop.
template <int kThreads, int D>
__device__ __forceinline__ void load_kv_tile(const AttnParams& p, SmemTile<D> tile, const unsigned short* head,
                                             int b, long long k0, int key0, int rows, int L) {
  if (!p.block_table) {
    const unsigned short* g = head + k0 + (long long)key0 * p.k_stride_t;
    tile.template load_rows<kThreads>(rows, [&](int row) -> const unsigned short* {
      return key0 + row < L ? g + (long long)row * p.k_stride_t : nullptr;
    });
  } else {
    const int* table = p.block_table + (long long)b * p.max_pages;
    const int mask = (1 << p.page_shift) - 1;
    tile.template load_rows<kThreads>(rows, [&](int row) -> const unsigned short* {
      const int key = key0 + row;
      if (key >= L) return nullptr;
      const long long slot = ((long long)__ldg(table + (key >> p.page_shift)) << p.page_shift) | (key & mask);
      return head + slot * p.k_stride_t;
    });
  }
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
