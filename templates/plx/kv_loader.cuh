// Copies the K and V tiles of one (batch, kv head) into the ring, for a streaming kernel
// that visits consecutive tiles (key0, key0 + BN, ...).
//
// Each thread owns one 16-byte chunk column and the rows row0 + j * kRowStep of every
// tile, so a row's address is worked out once and serves both K and V (they share the
// layout and, when paged, the block table). Decode is issue-bound on its loads (measured
// on the H200: per-chunk address math cost 40% of its bandwidth), which shapes two
// choices here:
//   - paged caches: the page numbers of the *next* tile's rows are loaded while this
//     tile's copies are issued, so the block-table read (an L2 round trip) is never
//     waited on right before a cp.async;
//   - contiguous caches: the batch offset is folded into the head pointers once.
#pragma once
#include "plx/params.cuh"
#include "plx/smem_tile.cuh"

namespace plx {

template <int kThreads, int D, int BN>
struct KvLoader {
  static constexpr int kChunks = D / 8;
  static constexpr int kRowStep = kThreads / kChunks;
  static constexpr int kRows = BN / kRowStep;  // rows of a tile per thread
  static_assert(kThreads % kChunks == 0 && BN % kRowStep == 0, "see generator/legality.cpp");

  const unsigned short* k;  // this (batch, head)'s key 0 (contiguous) or pool head (paged)
  const unsigned short* v;
  const int* table;  // this batch's block-table row; null: contiguous
  long long stride_t;
  int L, shift, row0, col;
  int page[kRows];  // paged: pages of this thread's rows of the next tile

  // k_head, v_head: the head's first element of batch 0 (contiguous) or of the pool.
  __device__ __forceinline__ KvLoader(const AttnParams& p, const unsigned short* k_head,
                                      const unsigned short* v_head, int b, int live_len, int first_key)
      : stride_t(p.k_stride_t), L(live_len), shift(p.page_shift) {
    row0 = threadIdx.x / kChunks;
    col = (threadIdx.x % kChunks) * 8;
    const long long batch_off = p.block_table ? 0 : b * p.k_stride_b;
    k = k_head + batch_off + col;
    v = v_head + batch_off + col;
    table = p.block_table ? p.block_table + (long long)b * p.max_pages : nullptr;
    fetch_pages(first_key);
  }

  __device__ __forceinline__ void fetch_pages(int key0) {
    if (!table) return;
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int key = key0 + row0 + j * kRowStep;
      page[j] = key < L ? __ldg(table + (key >> shift)) : 0;
    }
  }

  // Issues the copies of tile [key0, key0 + BN) (keys at or past L are zero-filled) and
  // prefetches the pages of the tile after it.
  __device__ __forceinline__ void load(SmemTile<D> kt, SmemTile<D> vt, int key0) {
    const int mask = (1 << shift) - 1;
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int row = row0 + j * kRowStep, key = key0 + row;
      const bool live = key < L;
      const long long slot = table ? ((long long)page[j] << shift) | (key & mask) : key;
      const long long off = live ? slot * stride_t : 0;
      cp_async_16(kt.chunk(row, col / 8), k + off, live);
      cp_async_16(vt.chunk(row, col / 8), v + off, live);
    }
    fetch_pages(key0 + BN);
  }
};

}  // namespace plx
