// The decode K/V ring filled by the TMA (sm_90a; Variant loader "tma"): the same STAGES
// slots of (K tile, V tile) as kv_ring.cuh, but one elected thread fills them with bulk
// tensor copies and the warps synchronise on mbarriers instead of __syncthreads:
//   full[s]   1 arrival (the producer's expect_tx) + the slot's bytes: tile landed;
//   empty[s]  one arrival per warp: every warp is done reading the slot.
// Tile i lives in slot i % STAGES; its full phase is i / STAGES, and the producer may
// refill the slot with tile i + STAGES once empty's phase i / STAGES has completed.
//
// Layout: each K or V tile is sm90::Sw128Tile<BN, D> -- D / 64 panels of BN rows x 128 B,
// chunks XOR-swizzled by row % 8 -- which is exactly what a TMA box of 64 columns writes
// with CU_TENSOR_MAP_SWIZZLE_128B at a 1024-byte aligned address. (The cp.async ring's
// SmemTile keeps whole 256-byte rows at d 128; the TMA swizzle cannot produce that without
// 2-way bank conflicts on ldmatrix, so the consumers read this layout through the tile's
// chunk(), which both share.)
//
// Why TMA here: the cp.async loader spends issue slots of every thread on per-row address
// math and, for paged caches, block-table reads in front of the copies. With TMA one
// thread issues one box per (page chunk, 64-column panel) of K and of V, and the copies'
// address generation happens in the copy engine.
#pragma once
#include "plx/params.cuh"
#include "plx/smem_layout_sm90.cuh"
#include "plx/tma.cuh"

namespace plx {

template <int D, int BN, int STAGES, int WARPS>
struct KvTmaRing {
  static_assert(BN <= 256 && (BN & (BN - 1)) == 0, "see generator/legality.cpp (why_illegal_tma)");
  using Tile = sm90::Sw128Tile<BN, D>;
  static constexpr int kTileBytes = BN * D * 2;
  static constexpr int kBytes = STAGES * 2 * kTileBytes;
  static constexpr int kBarBytes = STAGES * 2 * 8;
  static constexpr int kPanels = D / 64;

  unsigned base;  // 1024-byte aligned: the swizzle period
  unsigned bars;  // full[STAGES], then empty[STAGES]

  __device__ __forceinline__ Tile k(int slot) const { return {base + unsigned(slot * 2 * kTileBytes)}; }
  __device__ __forceinline__ Tile v(int slot) const { return {base + unsigned((slot * 2 + 1) * kTileBytes)}; }
  __device__ __forceinline__ unsigned full(int slot) const { return bars + unsigned(slot * 8); }
  __device__ __forceinline__ unsigned empty(int slot) const { return bars + unsigned((STAGES + slot) * 8); }

  // One thread, followed by a __syncthreads before any other thread touches a barrier.
  __device__ __forceinline__ void init() const {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      sm90::mbar_init(full(s), 1);
      sm90::mbar_init(empty(s), WARPS);
    }
    sm90::mbar_init_fence();
  }

  // Every thread of a warp, before reading tile i.
  __device__ __forceinline__ void wait_full(int i) const { sm90::mbar_wait(full(i % STAGES), (i / STAGES) & 1); }

  // Lane 0 of each warp once the whole warp is done with tile i (after a __syncwarp).
  __device__ __forceinline__ void release(int i) const { sm90::mbar_arrive(empty(i % STAGES)); }

  // Zeroes rows [row0, row0 + rows) of K and V in `slot` whose key (key_of_row0 + r) is at
  // or past L, by the 32 lanes of one warp. TMA leaves real cache contents there (keys in
  // [L, kv_len) of a contiguous cache, the tail of a page) or, for page chunks it never
  // copied, an older tile; they must be finite zeros like the cp.async path's zero-fill
  // (0 * NaN would poison P.V and s2). A later TMA overwrites these bytes through the
  // async proxy, hence the proxy fence before the warp releases the slot.
  __device__ __forceinline__ void zero_tail(int slot, int row0, int rows, int key_of_row0, int L) const {
    const int lane = threadIdx.x & 31;
    constexpr int kChunks = D / 8;
    for (int idx = lane; idx < rows * kChunks; idx += 32) {
      const int r = idx / kChunks, c = idx % kChunks;
      if (key_of_row0 + r < L) continue;
      const unsigned zero = 0;
      asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(k(slot).chunk(row0 + r, c)), "r"(zero)
                   : "memory");
      asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(v(slot).chunk(row0 + r, c)), "r"(zero)
                   : "memory");
    }
    sm90::fence_proxy_async();
  }
};

// The elected producer thread's state: which tile it issues next and, for a paged cache,
// the page numbers of that tile, loaded one tile ahead so the block-table read (an L2
// round trip) is never waited on right before the copies (as in kv_loader.cuh).
//
// Tiles are BN keys starting at first_key (a multiple of BN for a paged cache, see
// decode.cuh), so a tile is either part of one page (page >= BN: one box of BN rows) or
// BN / page whole pages (one box of `page` rows each). Page chunks at or past L are not
// copied: their block-table entries need not be valid. Only whole in-range boxes are
// issued, so the bytes the full barrier expects are known exactly; a contiguous box past
// kv_len is zero-filled by the TMA and still counts whole.
template <int D, int BN, int STAGES, int WARPS>
struct KvTmaProducer {
  using Ring = KvTmaRing<D, BN, STAGES, WARPS>;
  static constexpr int kMaxChunks = BN >= 16 ? BN / 16 : 1;  // page chunks per tile at page 16

  const TmaDesc* mk;
  const TmaDesc* mv;
  const int* table;  // this batch's block-table row; null: contiguous
  int b, hkv, L, shift, first_key;
  int rows;    // rows per box: BN, or the page size when pages are smaller than a tile
  int chunks;  // boxes per tile and panel: BN / rows
  int next;    // the next tile to issue
  int page[kMaxChunks];  // paged: pages of tile `next`'s chunks

  __device__ __forceinline__ KvTmaProducer(const AttnParams& p, const KvTmaDescs* d, int b_, int hkv_, int L_,
                                           int first_key_)
      : mk(&d->k), mv(&d->v), b(b_), hkv(hkv_), L(L_), shift(p.page_shift), first_key(first_key_), next(0) {
    table = p.block_table ? p.block_table + (long long)b * p.max_pages : nullptr;
    rows = table && (1 << shift) < BN ? (1 << shift) : BN;
    chunks = BN / rows;
  }

  // The producer thread, once, before its first refill.
  __device__ __forceinline__ void start() {
    sm90::tma_prefetch_desc(mk);
    sm90::tma_prefetch_desc(mv);
    fetch_pages(first_key);
  }

  __device__ __forceinline__ int key_of(int j) const { return first_key + j * BN; }

  __device__ __forceinline__ void fetch_pages(int key0) {
    if (!table) return;
#pragma unroll
    for (int c = 0; c < kMaxChunks; ++c) {
      const int key = key0 + c * rows;
      if (c < chunks && key < L) page[c] = __ldg(table + (key >> shift));
    }
  }

  // Issues tile j into slot j % STAGES (whose empty phase the caller has seen complete).
  __device__ __forceinline__ void issue(const Ring& ring, int j) {
    const int slot = j % STAGES, key0 = key_of(j);
    const unsigned bar = ring.full(slot);
    const unsigned kb = ring.k(slot).base, vb = ring.v(slot).base;
    if (!table) {
      sm90::mbar_arrive_expect_tx(bar, 2 * Ring::kTileBytes);
#pragma unroll
      for (int pn = 0; pn < Ring::kPanels; ++pn) {
        const unsigned off = unsigned(pn * BN * 128);
        sm90::tma_load_4d(kb + off, mk, bar, pn * 64, hkv, key0, b);
        sm90::tma_load_4d(vb + off, mv, bar, pn * 64, hkv, key0, b);
      }
    } else {
      int live = 0;
#pragma unroll
      for (int c = 0; c < kMaxChunks; ++c) live += c < chunks && key0 + c * rows < L;
      sm90::mbar_arrive_expect_tx(bar, unsigned(live * rows * D * 2 * 2));
      const int mask = (1 << shift) - 1;
#pragma unroll
      for (int c = 0; c < kMaxChunks; ++c) {
        const int key = key0 + c * rows;
        if (c >= chunks || key >= L) continue;
        const int slot_row = (page[c] << shift) | (key & mask);
#pragma unroll
        for (int pn = 0; pn < Ring::kPanels; ++pn) {
          const unsigned off = unsigned(pn * BN * 128 + c * rows * 128);
          sm90::tma_load_3d(kb + off, mk, bar, pn * 64, hkv, slot_row);
          sm90::tma_load_3d(vb + off, mv, bar, pn * 64, hkv, slot_row);
        }
      }
    }
    fetch_pages(key_of(j + 1));
  }

  // Called at the top of consumer iteration i (tiles < i are released by this thread's
  // warp): issues every tile up to i + STAGES - 1 whose slot is free, waiting only for
  // tile i itself -- the one this warp needs next -- and merely testing for later ones,
  // so a slow warp on an older tile does not stall this warp's math.
  __device__ __forceinline__ void refill(const Ring& ring, int i, int n) {
    while (next < n && next < i + STAGES) {
      const int slot = next % STAGES;
      const unsigned parity = ((next / STAGES) & 1) ^ 1;  // a fresh barrier passes parity 1
      if (next <= i) sm90::mbar_wait(ring.empty(slot), parity);
      else if (!sm90::mbar_test_wait(ring.empty(slot), parity)) break;
      issue(ring, next);
      ++next;
    }
  }
};

}  // namespace plx
