// The decode K/V ring filled by the TMA (sm_90a; Variant loader "tma"): the same STAGES
// slots of (K tile, V tile) as kv_ring.cuh, but a producer warp of its own fills them with
// bulk tensor copies and the warps synchronise on mbarriers instead of __syncthreads:
//   full[s]   1 arrival (the producer's expect_tx) + the slot's bytes: tile landed;
//   empty[s]  one arrival per consumer warp: every consumer is done reading the slot.
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
// math and, for paged caches, block-table reads in front of the copies. With TMA the
// producer warp issues one box per (page chunk, 64-column panel) of K and of V, and the
// copies' address generation happens in the copy engine.
#pragma once
#include "plx/params.cuh"
#include "plx/smem_layout_sm90.cuh"
#include "plx/tma.cuh"

namespace plx {

template <int D, int BN, int STAGES, int WARPS>
struct KvTmaRing {
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

  // Every thread of a consumer warp, before reading tile i.
  __device__ __forceinline__ void wait_full(int i) const { sm90::mbar_wait(full(i % STAGES), (i / STAGES) & 1); }

  // Lane 0 of each consumer warp once the whole warp is done with tile i (after a __syncwarp).
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

// The producer warp (one warp of its own, after the consumer warps; decode.cuh): it only
// waits on `empty` barriers and issues boxes, so no consumer's math ever waits behind a
// copy being issued (the first TMA ring had thread 0 of consumer warp 0 do this, and its
// warp's MMAs stalled on every `empty` wait: slower than cp.async everywhere, run 29).
//
// Tiles are BN keys starting at first_key (a multiple of BN for a paged cache, see
// decode.cuh), so a tile is either part of one page (page >= BN: one box of BN rows) or
// BN / page whole pages (one box of `page` rows each). A tile's boxes -- chunk x panel x
// {K, V} -- are spread over the warp's lanes, so up to 32 boxes go out in one step instead
// of one after another from a single thread. Each lane reads the block-table entries of
// its boxes one tile ahead, before it waits for the slot, so the table's L2 round trip
// overlaps the wait. Page chunks at or past L are not copied (their block-table entries
// need not be valid); only whole boxes are issued, so the bytes the full barrier expects
// are known exactly; a contiguous box past kv_len is zero-filled by the TMA and still
// counts whole.
template <int D, int BN, int STAGES, int WARPS>
struct KvTmaProducer {
  static_assert(BN <= 256 && (BN & (BN - 1)) == 0, "see generator/legality.cpp (why_illegal_tma)");
  using Ring = KvTmaRing<D, BN, STAGES, WARPS>;
  static constexpr int kBoxesPerChunk = 2 * Ring::kPanels;      // K and V of each panel
  static constexpr int kMaxChunks = BN >= 16 ? BN / 16 : 1;     // page chunks per tile at page 16
  static constexpr int kLaneBoxes = (kMaxChunks * kBoxesPerChunk + 31) / 32;

  const TmaDesc* mk;
  const TmaDesc* mv;
  const int* table;  // this batch's block-table row; null: contiguous
  int b, hkv, L, shift, first_key;
  int rows;    // rows per box: BN, or the page size when pages are smaller than a tile
  int chunks;  // page chunks per tile: BN / rows

  __device__ __forceinline__ KvTmaProducer(const AttnParams& p, const KvTmaDescs* d, int b_, int hkv_, int L_,
                                           int first_key_)
      : mk(&d->k), mv(&d->v), b(b_), hkv(hkv_), L(L_), shift(p.page_shift), first_key(first_key_) {
    table = p.block_table ? p.block_table + (long long)b * p.max_pages : nullptr;
    rows = table && (1 << shift) < BN ? (1 << shift) : BN;
    chunks = BN / rows;
  }

  __device__ __forceinline__ int key_of(int j) const { return first_key + j * BN; }

  // Box e of a tile: page chunk e / kBoxesPerChunk, then panel, then K (even) or V (odd).
  __device__ __forceinline__ int box_of(int r) const { return (threadIdx.x & 31) + 32 * r; }

  // This lane's pages of tile j (only boxes that will be issued read the table).
  __device__ __forceinline__ void fetch_pages(int (&page)[kLaneBoxes], int j) const {
    if (!table) return;
    const int key0 = key_of(j);
#pragma unroll
    for (int r = 0; r < kLaneBoxes; ++r) {
      const int c = box_of(r) / kBoxesPerChunk, key = key0 + c * rows;
      if (c < chunks && key < L) page[r] = __ldg(table + (key >> shift));
    }
  }

  // The whole producer warp: issues tiles 0 .. n-1 in order into slot j % STAGES, each once
  // every consumer warp has released the slot's previous tile. Returns after the last
  // issue; the copies complete on the full barriers, which the consumers wait on.
  __device__ __forceinline__ void run(const Ring& ring, int n) const {
    const int lane = threadIdx.x & 31;
    if (n <= 0) return;
    if (lane == 0) {
      sm90::tma_prefetch_desc(mk);
      sm90::tma_prefetch_desc(mv);
    }
    int next_page[kLaneBoxes] = {};  // boxes not issued keep 0 (never used)
    fetch_pages(next_page, 0);
    const int mask = (1 << shift) - 1;
    for (int j = 0; j < n; ++j) {
      int page[kLaneBoxes];
#pragma unroll
      for (int r = 0; r < kLaneBoxes; ++r) page[r] = next_page[r];
      if (j + 1 < n) fetch_pages(next_page, j + 1);  // in flight across the wait below
      const int slot = j % STAGES, key0 = key_of(j);
      sm90::mbar_wait(ring.empty(slot), ((j / STAGES) & 1) ^ 1);  // a fresh barrier passes parity 1
      const unsigned bar = ring.full(slot);
      // Live chunks: a contiguous tile is one chunk, always copied whole.
      const int live = table ? min(chunks, (L - key0 + rows - 1) / rows) : 1;
      if (lane == 0) sm90::mbar_arrive_expect_tx(bar, unsigned(live * rows * D * 2 * 2));
      __syncwarp();  // the bytes are expected before any box can land
      const unsigned kb = ring.k(slot).base, vb = ring.v(slot).base;
#pragma unroll
      for (int r = 0; r < kLaneBoxes; ++r) {
        const int e = box_of(r), c = e / kBoxesPerChunk, pn = (e % kBoxesPerChunk) >> 1;
        if (c >= live) continue;
        const bool is_v = e & 1;
        const TmaDesc* m = is_v ? mv : mk;
        const unsigned dst = (is_v ? vb : kb) + unsigned(pn * BN * 128 + c * rows * 128);
        if (!table) {
          sm90::tma_load_4d(dst, m, bar, pn * 64, hkv, key0, b);
        } else {
          const int key = key0 + c * rows;
          sm90::tma_load_3d(dst, m, bar, pn * 64, hkv, (page[r] << shift) | (key & mask));
        }
      }
    }
  }
};

}  // namespace plx
