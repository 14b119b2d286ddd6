// Copies the K and V tiles of one (batch, kv head) into the ring, for a streaming kernel
// that visits consecutive tiles (key0, key0 + BN, ...) through cp_async_ring.
//
// Each thread owns one 16-byte chunk column and the rows row0 + j * kRowStep of every
// tile, so a row's address is worked out once and serves both K and V (they share the
// layout and, when paged, the block table). Decode is issue-bound on its loads (measured
// on the H200: per-chunk address math cost 40% of its bandwidth), which shapes two
// choices here:
//   - contiguous caches: the batch offset is folded into the head pointers once;
//   - paged caches: a tile's block-table entries are copied into shared memory by
//     cp.async, kAhead tiles early, in the commit group of an older tile, so the ring's
//     wait for that tile also covers them and no register ever waits on a table read.
//     Reading page numbers into registers one tile ahead (the earlier design) stalled
//     every first read of a 128-byte table line: behind a CTA's 64 KB of K/V in flight an
//     L1 miss queues for longer than a tile takes. At page 16 (a new line every 8 tiles)
//     decode of 1 x 32768 keys x 8 kv heads ran 43.1 us against 40.1 contiguous with the
//     same bytes in the same order, page 64 40.6; ncu put the extra samples on the first
//     use of a page number (H200, 2026-11-29 run 43). Prefetching the lines into L1 or
//     L2, or reading two tiles ahead, did not help (runs 40, 42).
#pragma once
#include "plx/params.cuh"
#include "plx/smem_tile.cuh"

namespace plx {

template <int kThreads, int D, int BN, int STAGES>
struct KvLoader {
  static constexpr int kChunks = D / 8;
  static constexpr int kRowStep = kThreads / kChunks;
  static constexpr int kRows = BN / kRowStep;  // rows of a tile per thread
  static_assert(kThreads % kChunks == 0 && BN % kRowStep == 0, "see generator/legality.cpp");

  // Block-table staging. load(i) copies the entries of tile i + kAhead: cp_async_ring
  // waits for tile i's group at iteration i and then loads tile i + STAGES - 1 (a single
  // stage loads tile i + 1 in the next iteration). Slots are reused after kTableSlots
  // tiles: the ring's prologue loads STAGES - 1 tiles with no barrier between them, so a
  // slot must outlive them (2 x STAGES - 2), and at least 2 for one stage.
  static constexpr int kAhead = STAGES > 1 ? STAGES - 1 : 1;
  static constexpr int kTableSlots = 2 * kAhead;
  // Entries one tile touches: BN keys starting anywhere span at most BN / 16 + 1 pages of
  // the smallest page size (16); slots padded to 16 bytes.
  static constexpr int kEntries = BN / 16 + 1;
  static constexpr int kSlotInts = (kEntries + 3) / 4 * 4;
  static constexpr int kTableBytes = kTableSlots * kSlotInts * 4;
  static_assert(kEntries <= kThreads, "one thread per staged entry");

  const unsigned short* k;  // this (batch, head)'s key 0 (contiguous) or pool head (paged)
  const unsigned short* v;
  const int* table;  // this batch's block-table row; null: contiguous
  int* staged;       // shared: kTableSlots x kSlotInts entries
  long long stride_t;
  int L, shift, row0, col;

  // k_head, v_head: the head's first element of batch 0 (contiguous) or of the pool.
  // table_smem: kTableBytes of shared memory, used only for paged caches.
  __device__ __forceinline__ KvLoader(const AttnParams& p, const unsigned short* k_head,
                                      const unsigned short* v_head, int b, int live_len, void* table_smem)
      : staged(static_cast<int*>(table_smem)), stride_t(p.k_stride_t), L(live_len), shift(p.page_shift) {
    row0 = threadIdx.x / kChunks;
    col = (threadIdx.x % kChunks) * 8;
    const long long batch_off = p.block_table ? 0 : b * p.k_stride_b;
    k = k_head + batch_off + col;
    v = v_head + batch_off + col;
    table = p.block_table ? p.block_table + (long long)b * p.max_pages : nullptr;
  }

  // Copies tile i's entries (its keys from key0) into its slot. Entries past the live
  // length are not read; the rows that would use them are dead and take page 0.
  __device__ __forceinline__ void stage(int i, int key0) const {
    const int t = threadIdx.x, idx = (key0 >> shift) + t;
    if (t < kEntries && L > 0 && idx <= (L - 1) >> shift)
      cp_async_4(smem_addr(staged + (i % kTableSlots) * kSlotInts + t), table + idx);
  }

  // Before the ring: the entries of the first kAhead tiles, committed as their own group
  // ahead of anything else the caller commits. The caller waits for it (wait_for_table).
  template <class TileKey>
  __device__ __forceinline__ void stage_first(TileKey tile_key) const {
    if (!table) return;
#pragma unroll
    for (int i = 0; i < kAhead; ++i) stage(i, tile_key(i));
    cp_async_commit();
  }

  // Issues the copies of tile i = [key0, key0 + BN) (keys at or past L are zero-filled)
  // and stages the entries of tile i + kAhead (its first key: key_ahead).
  __device__ __forceinline__ void load(SmemTile<D> kt, SmemTile<D> vt, int i, int key0, int key_ahead) const {
    const int mask = (1 << shift) - 1;
    const int* entries = staged + (i % kTableSlots) * kSlotInts - (key0 >> shift);
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int row = row0 + j * kRowStep, key = key0 + row;
      const bool live = key < L;
      const long long slot = table ? ((long long)(live ? entries[key >> shift] : 0) << shift) | (key & mask) : key;
      const long long off = live ? slot * stride_t : 0;
      cp_async_16(kt.chunk(row, col / 8), k + off, live);
      cp_async_16(vt.chunk(row, col / 8), v + off, live);
    }
    if (table) stage(i + kAhead, key_ahead);
  }
};

}  // namespace plx
