// Prefill on Hopper (sm_90a): wgmma tensor cores, warp-specialised (issue 5).
//
// Grid (row blocks, heads_q, batch) as for prefill.cuh; a CTA owns BM consecutive query
// positions of one q head. Warpgroup 0 is the producer: it streams the K and V tiles of
// BN keys the CTA's rows can see into a ring of STAGES slots with cp.async (zero-filling
// keys at or past the live length, so paged caches and seqused_k work as in the mma.sync
// kernel) and signals each slot through mbarriers. Warpgroups 1.. are consumers; each
// owns one m64 tile of rows and, per K/V tile:
//   S = [Q;R] K^T   wgmma m64 nBN k16, both operands from shared memory (K-major),
//   online softmax  OnlineState::update of online_state.cuh (math 3.2, 3.5), unchanged,
//   O += P V        wgmma m64 nD k16, P from registers (rounded to T), V from shared
//                   memory read MN-major (imm-trans-b), then releases the slot.
// Two consumer loops (the variant's mma field): wgmma runs those steps one after the
// other and relies on the other consumer warpgroups to keep the tensor cores busy during
// its softmax; wgmma-pipe issues S of tile i together with P.V of tile i - 1 and runs the
// softmax of tile i while P.V is in flight (FlashAttention-3's intra-warpgroup overlap;
// it holds one more P in registers and wants a third ring slot).
// The -pp forms (PINGPONG) make the consumers take turns issuing: without turns they all
// leave the same full_k wait together, issue S together (sharing the tensor cores), then
// all compute exponentials together while the tensor cores idle. Turns are round robin
// on named barriers kTurnBar + c; warpgroup c waits for its turn, issues its batch
// (wgmma: S, then separately P.V; wgmma-pipe: S of tile i with P.V of tile i - 1) and
// passes the turn on at once, so its softmax runs under the next one's MMAs.
//
// Rows of a consumer's m64 tile: the wgmma accumulator of warp w covers tile rows
// 16w .. 16w + 15 in exactly the mma.sync C layout (wgmma.cuh), so the Parallax families
// keep the mma.sync packing per warp: rows 16w .. 16w + 7 are the q rows of 8 queries,
// rows 16w + 8 .. 16w + 15 their probes r. One S wgmma yields s1 and s2 of a query in the
// same thread, one P.V wgmma with P = [w; w s2] yields O1 and O2, and the finalizer is
// thread-local (a consumer serves 32 queries). Softmax fills all 64 rows with queries.
// The alternative, separate Q and R tiles with four wgmma chains, would hold S1, S2, O1 and
// O2 at once: 256 fp32 registers per thread at BN = D = 128, past the register file.
//
// Synchronisation per ring slot s: full_k[s] and full_v[s] (128 producer arrivals, each
// also held open by that thread's cp.async copies until they land), empty[s] (one arrival
// per consumer warp after its P.V wgmma completed). Consumers wait for V only before P.V,
// so S and the softmax of a tile overlap the V copy. The producer drops to kProducerRegs
// registers and the consumers rise to kConsumerRegs (setmaxnreg), as FlashAttention-3 does.
// Q tiles are loaded by their own consumer warpgroup (cp.async, wait, proxy fence, named
// barrier) while the producer fills the ring.
//
// Masking as prefill.cuh: only s1 is masked (-inf), keys past the live length are zeros,
// rows with no visible key output 0. A consumer pays the per-element mask only on tiles
// that cross one of its rows' range boundaries; the one-tile loop also skips the math of
// tiles outside its rows' union of ranges (still waiting and releasing, so the ring stays
// in step). With AttnParams::stats set the epilogue also writes the backward's row
// statistics and barv, as prefill.cuh does (the engine's training forward on sm_90a).
// The softmax update is trimmed for this kernel (docs/DESIGN.md, "Less softmax work"):
// conditional O rescaling (kLazyRescale) and, where kMmaSums, d1 and d2 summed by an
// m64n8k16 wgmma of P against an all-ones block after each P.V.
#pragma once
#include "plx/fast_div.cuh"
#include "plx/mask.cuh"
#include "plx/mbarrier.cuh"
#include "plx/online_state.cuh"
#include "plx/row_stats.cuh"
#include "plx/smem_layout_sm90.cuh"
#include "plx/wgmma.cuh"

namespace plx {

template <Family F, class T, int D, int BM, int BN, int WARPS, int STAGES, bool CAUSAL, bool WINDOW, bool PIPELINED,
          bool PINGPONG>
struct PrefillSm90Config {
  using Elem = T;
  using Traits = FamilyTraits<F>;
  static constexpr Family kFamily = F;
  static constexpr int kD = D, kBM = BM, kBN = BN, kStages = STAGES;
  static constexpr bool kCausal = CAUSAL, kWindow = WINDOW;
  static constexpr bool kPipelined = PIPELINED;  // mma wgmma-pipe: see the consumer loop
  static constexpr bool kPingPong = PINGPONG;     // mma *-pp: consumers take MMA turns
  // Conditional O rescaling (online_state.cuh): not for fp16 probe rows (w s2 range).
  static constexpr bool kLazyRescale = !Traits::probe || sm90::IsBf16<T>::value;
  static constexpr int kThreads = WARPS * 32;
  // Queries per consumer warpgroup: 32 (+ 32 probe rows) or 64.
  static constexpr int kRowsPerWg = Traits::probe ? 32 : 64;
  static constexpr int kConsumers = BM / kRowsPerWg;
  static_assert(kConsumers * kRowsPerWg == BM && kConsumers >= 1 && kConsumers <= 3, "see generator/legality.cpp");
  static_assert(WARPS == 4 * (kConsumers + 1), "one producer warpgroup + the consumers");
  static_assert((BN == 64 || BN == 128) && (D == 64 || D == 128), "wgmma.cuh has n64 and n128");
  static_assert(STAGES >= 2, "one slot filling while another is consumed");
  static_assert(!PINGPONG || kConsumers >= 2, "ping-pong needs a second consumer to hand turns to");
  // Row sums by the tensor cores (OnlineState kMmaSums): in the pipelined loop the extra
  // m64n8k16 chain runs under the softmax; the plain loop waits for P.V right after issuing
  // it, and there the chain cost 4-7% at d 128 and softmax d 64 (2026-12-06 run 50) but
  // gained 1.5% for the Parallax d 64 default, three consumers (run 54, four A/B pairs).
  // Not for three pipelined d 128 consumers: at 152 registers their sums spilled.
  static constexpr bool kMmaSums =
      (PIPELINED && !(kConsumers == 3 && D == 128)) || (Traits::probe && D == 64);
  // Named barriers: 0 is __syncthreads, 1 + c the Q load of consumer c, kTurnBar + c its turns.
  static constexpr int kTurnBar = 4;
  using QTile = sm90::Sw128Tile<64, D>;
  using KvTile = sm90::Sw128Tile<BN, D>;
  // Shared memory, in this order after aligning the base up to 1024 B (the swizzle period):
  // Q tiles (one per consumer), the K/V ring (slot s: K then V), the ones block of the row
  // sums (wgmma.cuh), 3 x STAGES mbarriers, and the work-item decoder (ItemDecode, written
  // by thread 0 before the first barrier).
  static constexpr int kAlignSlack = 1024;
  static constexpr int kQBytes = kConsumers * QTile::kBytes;
  static constexpr int kRingBytes = STAGES * 2 * KvTile::kBytes;
  static constexpr int kBarrierBytes = STAGES * 3 * 8;
  static constexpr int kDecodeBytes = 48;
  static constexpr int kSmemBytes = kAlignSlack + kQBytes + kRingBytes + sm90::kOnesBytes + kBarrierBytes + kDecodeBytes;
  // Register split (64K per SM, one CTA): 128 x 40 + 256 x 232 = 64512 for two consumers,
  // 128 x 40 + 384 x 152 = 63488 for three (with 32 the producer spilled its whole-tile
  // copy state); one consumer needs no reallocation (255 each).
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = kConsumers == 3 ? 152 : 232;
  // Persistent CTAs copy the next item's Q tile while finishing the current item; at 152
  // registers the d 128 accumulators leave no room for that copy's address math (the
  // pipelined loop spilled 12-80 bytes), so three d 128 consumers copy it after the epilogue.
  static constexpr bool kPrefetchQ = !(kConsumers == 3 && D == 128);
};

// Rows [key0, key0 + tile rows) of one K or V head into `tile`, zero-filling keys at or past
// L (contiguous or paged exactly as load_kv_tile in mask.cuh). `head`: the head's first
// element of batch 0 (contiguous) or of the page pool (paged); k0: the sequence's first
// key row (SeqView::k0, contiguous only).
template <int kThreads, class Tile>
__device__ __forceinline__ void load_kv_rows_sm90(const AttnParams& p, Tile tile, const unsigned short* head, int b,
                                                  long long k0, int key0, int L, int tid) {
  if (!p.block_table) {
    const unsigned short* g = head + k0 + (long long)key0 * p.k_stride_t;
    tile.template load_rows<kThreads>(tid, Tile::kRows, [&](int row) -> const unsigned short* {
      return key0 + row < L ? g + (long long)row * p.k_stride_t : nullptr;
    });
  } else {
    const int* table = p.block_table + (long long)b * p.max_pages;
    const int mask = (1 << p.page_shift) - 1;
    tile.template load_rows<kThreads>(tid, Tile::kRows, [&](int row) -> const unsigned short* {
      const int key = key0 + row;
      if (key >= L) return nullptr;
      const long long slot = ((long long)__ldg(table + (key >> p.page_shift)) << p.page_shift) | (key & mask);
      return head + slot * p.k_stride_t;
    });
  }
}

// The producer's copy of whole K or V tiles from a contiguous cache. Thread tid owns chunk
// column tid % kChunks of rows tid / kChunks + kRowStep i; kRowStep is a multiple of the
// 8-row swizzle period, so its shared-memory offsets and its global row step are the same
// for every tile: a tile costs one cp.async and one address add per row. ncu on the H200
// found the generic per-row path (bounds check, 64-bit row multiply, swizzle per row,
// parameters reloaded under the producer's 40 registers) too slow to keep the consumers
// fed: they waited on full_k as long as on their own MMAs. The tile that crosses the live
// length, and paged caches, keep the generic path (load_kv_rows_sm90).
template <int kThreads, class Tile>
struct WholeTileRows {
  static constexpr int kRowStep = kThreads / Tile::kChunks;
  static_assert(kRowStep % 8 == 0, "a thread's rows must share their swizzle phase");
  const unsigned short* src;  // this thread's chunk in key 0's row of the (sequence, head)
  unsigned dst;               // its byte offset inside a tile
  long long step;             // elements between two of its rows (kRowStep keys)

  __device__ __forceinline__ WholeTileRows(const unsigned short* head_b, long long stride_t, int tid) {
    const int c = tid % Tile::kChunks, row0 = tid / Tile::kChunks;
    src = head_b + row0 * stride_t + c * 8;
    dst = Tile{0u}.chunk(row0, c);
    step = kRowStep * stride_t;
  }
  __device__ __forceinline__ void copy(Tile tile, int key0, long long stride_t) const {
    const unsigned short* g = src + key0 * stride_t;
#pragma unroll
    for (int i = 0; i < Tile::kRows / kRowStep; ++i)
      cp_async_16(tile.base + dst + unsigned(i * kRowStep * 128), g + i * step, true);
  }
};

// One work item: BM consecutive query positions of one q head of one sequence, and the keys
// they see. Items are numbered in the order they should start; row blocks go last-first:
// under a causal mask the last rows see the most keys, and starting the longest first
// shortens the tail.
//   cta_order 0 (default), every head's longest row block first: the best tail (LPT);
//     ~132 heads' K/V are live at once (ncu: 39% L2 hits on 8 x 4096 x 16 heads), which
//     the H200 absorbs: head-major measured 0-22% slower on every issue-5 shape
//     (docs/PERFORMANCE.md, 2026-11-29 run 10);
//   cta_order 1 (PLX_PREFILL_ORDER=head), head-major: the items in flight at one time are
//     the row blocks of a few heads and share their K/V through L2.
// The divisors of the item numbering as multiply-shifts (fast_div.cuh). One copy in shared
// memory (after the mbarriers), written before the CTA's first barrier: the consumers
// decode items three times at every item boundary (nine runtime divisions there cost both
// of them ~300 dependent instructions while the tensor cores idle), and the producer has
// no registers to spare.
struct ItemDecode {
  FastDiv heads_batch, heads_q, row_blocks;
};
static_assert(sizeof(ItemDecode) <= 48, "PrefillSm90Config::kDecodeBytes");

template <class C>
struct WorkItem {
  int h, b, row0, n_tiles;
  bool live;  // false: a row block past its (varlen) sequence's length, nothing to do
  SeqView sv;
  BlockKeys keys;  // of the item's rows

  __device__ __forceinline__ WorkItem(const AttnParams& p, const ItemDecode& dec, int index) {
    const int rbs = dec.row_blocks.d, heads_batch = dec.heads_batch.d;
    int rb;
    if (p.cta_order == 0) {
      const int wave = dec.heads_batch.div(index), hb = index - wave * heads_batch;
      rb = rbs - 1 - wave;
      b = dec.heads_q.div(hb);
      h = hb - b * p.heads_q;
    } else {
      const int head = dec.row_blocks.div(index);
      rb = rbs - 1 - (index - head * rbs);
      b = dec.heads_q.div(head);
      h = head - b * p.heads_q;
    }
    row0 = rb * C::kBM;
    sv = seq_view(p, b);
    live = row0 < sv.q_len;
    const int last = min(row0 + C::kBM, sv.q_len) - 1;
    keys = block_keys<C::kCausal, C::kWindow>(sv.L, sv.q_len, row0, max(last, row0), p.window);
    const int span = keys.any.hi - keys.any.lo;
    n_tiles = live && span > 0 ? (span + C::kBN - 1) / C::kBN : 0;
  }
  __device__ __forceinline__ int tile_key(int i) const { return keys.any.lo + i * C::kBN; }
};

// The items a CTA works through. AttnParams::persistent 0: one CTA per item (item =
// linear block index). 1: gridDim.x CTAs (one per SM) take the items in waves of
// gridDim.x, snaking: CTA c takes item c of even waves and gridDim.x - 1 - c of odd ones,
// so no CTA always draws the longest item of a wave (items are sorted longest first; with
// plain striding CTA 0 would do ~20% more work than CTA 131 on 1 x 4096 x 16 heads).
// Persistence lets the producer stream the next item's K/V while the consumers finish the
// previous one, and pays the CTA launch, barrier setup and register reallocation once.
struct WorkSchedule {
  int first, waves_stride, total;
  __device__ __forceinline__ WorkSchedule(const AttnParams& p, int rbs) {
    total = rbs * p.heads_q * p.batch;
    first = p.persistent ? int(blockIdx.x)
                         : int(blockIdx.x) + int(gridDim.x) * (int(blockIdx.y) + int(gridDim.y) * int(blockIdx.z));
    waves_stride = p.persistent ? int(gridDim.x) : total;
  }
  // The k-th item of this CTA, or -1 past the end.
  __device__ __forceinline__ int item(int k) const {
    const int wave = k * waves_stride;
    const int idx = (k & 1) ? wave + waves_stride - 1 - first : wave + first;
    return (k == 0 || waves_stride < total) && idx < total ? idx : -1;
  }
};

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) prefill_sm90_kernel(const AttnParams p) {
  using T = typename C::Elem;
  using Traits = typename C::Traits;
  using QTile = typename C::QTile;
  using KvTile = typename C::KvTile;
  constexpr int D = C::kD, BN = C::kBN, S = C::kStages, RW = C::kRowsPerWg, R = Traits::stat_rows;
  extern __shared__ __align__(1024) unsigned char smem[];

  const unsigned base = (smem_addr(smem) + 1023u) & ~1023u;
  const unsigned ring = base + C::kQBytes;
  const unsigned ones = ring + C::kRingBytes;
  const unsigned bars = ones + sm90::kOnesBytes;
  ItemDecode& dec = *reinterpret_cast<ItemDecode*>(smem + (bars + C::kBarrierBytes - smem_addr(smem)));
  auto k_tile = [&](int s) { return KvTile{ring + unsigned(2 * s * KvTile::kBytes)}; };
  auto v_tile = [&](int s) { return KvTile{ring + unsigned((2 * s + 1) * KvTile::kBytes)}; };
  auto full_k = [&](int s) { return bars + 8u * unsigned(s); };
  auto full_v = [&](int s) { return bars + 8u * unsigned(S + s); };
  auto empty = [&](int s) { return bars + 8u * unsigned(2 * S + s); };

  const int row_blocks = (p.q_len + C::kBM - 1) / C::kBM;
  const WorkSchedule sched(p, row_blocks);

  const int wg = threadIdx.x / 128;  // 0: producer; 1..: consumers
  if (threadIdx.x < sm90::kOnesBytes / 4) {
    reinterpret_cast<unsigned*>(smem + (ones - smem_addr(smem)))[threadIdx.x] = pack2<T>(1.f, 1.f);
    sm90::fence_proxy_async();  // generic-proxy stores, read by wgmma (async proxy)
  }
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      sm90::mbar_init(full_k(s), 128);
      sm90::mbar_init(full_v(s), 128);
      sm90::mbar_init(empty(s), 4 * C::kConsumers);
    }
    sm90::mbar_init_fence();
    dec = {FastDiv(p.heads_q * p.batch), FastDiv(p.heads_q), FastDiv(row_blocks)};
  }
  __syncthreads();

  // Ring slot and phase of the i-th tile of the item whose first tile is the CTA's it0-th
  // (the ring runs on across items).
  auto slot = [&](int it) { return it % S; };
  auto parity = [&](int it) { return unsigned(it / S) & 1u; };

  if (wg == 0) {
    // ---------------------------------------------------------------- producer
    if constexpr (C::kConsumers > 1) sm90::regs_dealloc<C::kProducerRegs>();
    const int tid = threadIdx.x;
    int it0 = 0;
    for (int k = 0;; ++k) {
      const int idx = sched.item(k);
      if (idx < 0) break;
      const WorkItem<C> w(p, dec, idx);
      const long long kv_off = (w.h / p.group) * p.k_stride_h;
      const unsigned short* kg = static_cast<const unsigned short*>(p.k) + kv_off;
      const unsigned short* vg = static_cast<const unsigned short*>(p.v) + kv_off;
      // Whole tiles of the sequence's keys (padded batch or varlen: SeqView::k0 is its first
      // key row) take the fast path; the tile crossing L and paged caches the per-row one.
      const WholeTileRows<128, KvTile> k_rows(kg + w.sv.k0, p.k_stride_t, tid), v_rows(vg + w.sv.k0, p.k_stride_t, tid);
      for (int i = 0; i < w.n_tiles; ++i) {
        const int s = slot(it0 + i), key0 = w.tile_key(i);
        const bool whole = !p.block_table && key0 + BN <= w.sv.L;
        sm90::mbar_wait(empty(s), parity(it0 + i) ^ 1);  // the previous round released (round 0: free)
        if (whole) k_rows.copy(k_tile(s), key0, p.k_stride_t);
        else load_kv_rows_sm90<128>(p, k_tile(s), kg, w.b, w.sv.k0, key0, w.sv.L, tid);
        sm90::mbar_arrive_cp_async(full_k(s));
        sm90::mbar_arrive(full_k(s));
        if (whole) v_rows.copy(v_tile(s), key0, p.k_stride_t);
        else load_kv_rows_sm90<128>(p, v_tile(s), vg, w.b, w.sv.k0, key0, w.sv.L, tid);
        sm90::mbar_arrive_cp_async(full_v(s));
        sm90::mbar_arrive(full_v(s));
      }
      it0 += w.n_tiles;
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");  // leave no copy in flight
    return;
  }

  // ------------------------------------------------------------------ consumers
  if constexpr (C::kConsumers > 1) sm90::regs_alloc<C::kConsumerRegs>();
  const int cw = wg - 1;
  const int ctid = threadIdx.x - 128 * wg;
  const int warp = ctid >> 5, lane = ctid & 31, g = lane >> 2, t4 = lane & 3;
  const QTile qt{base + unsigned(cw * QTile::kBytes)};

  // Ping-pong turns (no-ops without PINGPONG). Each turn is a bar.sync of 256 threads: this
  // warpgroup's 128 plus the 128 arrivals of the previous consumer passing the turn on.
  auto turn_begin = [&] {
    if constexpr (C::kPingPong) sm90::named_barrier_sync(C::kTurnBar + cw, 256);
  };
  auto turn_end = [&] {
    if constexpr (C::kPingPong) sm90::named_barrier_arrive(C::kTurnBar + (cw + 1) % C::kConsumers, 256);
  };
  // Every consumer takes the same number of turns (every tile of every item's span, dead
  // or not), so the round robin runs on across items; the last consumer opens the first.
  if (C::kPingPong && cw == C::kConsumers - 1) sm90::named_barrier_arrive(C::kTurnBar, 256);

  // Query position of this consumer's m64 tile row i in an item whose rows start at row0
  // (Parallax: rows 16w + 8.. of a warp slab are the probes of rows 16w..).
  auto position_in = [&](int row0, int i) {
    const int q_first = row0 + cw * RW;
    return Traits::probe ? q_first + 8 * (i >> 4) + (i & 7) : q_first + i;
  };
  // Issues (does not wait for) the copy of an item's [Q; R] rows into this consumer's tile.
  auto load_q = [&](const WorkItem<C>& w) {
    const long long q_off = w.sv.q0 + w.h * p.q_stride_h;
    qt.template load_rows<128>(ctid, 64, [&](int i) -> const unsigned short* {
      const int pos = position_in(w.row0, i);
      if (pos >= w.sv.q_len) return nullptr;
      const void* src = (Traits::probe && (i & 8)) ? p.r : p.q;
      return static_cast<const unsigned short*>(src) + q_off + (long long)pos * p.q_stride_t;
    });
    cp_async_commit();
  };
  // This CTA's k-th item if live, else the next live one after it; -1 past the end. Items
  // that are not live (varlen row blocks past their sequence) are the same for every
  // thread of the CTA, so skipping them skips no barrier unevenly. An item is decoded again
  // where it is used rather than held: its fields would stay live across the whole item,
  // and the 3-consumer kernels at 152 registers spilled them.
  auto next_live = [&](int k) {
    for (;; ++k) {
      const int idx = sched.item(k);
      if (idx < 0) return -1;
      if (WorkItem<C>(p, dec, idx).live) return k;
    }
  };

  int it0 = 0;
  int k = next_live(0);
  if (k >= 0) load_q(WorkItem<C>(p, dec, sched.item(k)));
  while (k >= 0) {
    const WorkItem<C> w(p, dec, sched.item(k));
    const int k_next = next_live(k + 1);
    const SeqView& sv = w.sv;
    const int L = sv.L, h = w.h, b = w.b, n_tiles = w.n_tiles;
    const int q_first = w.row0 + cw * RW;
    auto position = [&](int i) { return position_in(w.row0, i); };
    cp_async_wait<0>();
    sm90::fence_proxy_async();  // the copies are generic-proxy writes; wgmma reads via the async proxy
    sm90::named_barrier_sync(1 + cw, 128);
    // The next item's Q is copied as soon as this item's last S wgmma has completed in all
    // four warps (the barrier: one warp's wgmma wait says nothing of the others'), so its
    // latency hides under this item's last softmax, P.V and epilogue. The call sites are
    // uniform across the warpgroup (they depend on i and n_tiles only).
    bool q_next_issued = false;
    auto issue_next_q = [&] {
      if (q_next_issued || k_next < 0) return;
      q_next_issued = true;
      sm90::named_barrier_sync(1 + cw, 128);
      load_q(WorkItem<C>(p, dec, sched.item(k_next)));
    };
    auto prefetch_q = [&] {
      if constexpr (C::kPrefetchQ) issue_next_q();
    };

    // The rows this thread finalizes: tile row 16 warp + g (+ 8 for softmax's second row).
    auto my_pos = [&](int r) { return position(16 * warp + g + 8 * r); };
    RowRange rows[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int pos = my_pos(r);
      rows[r] = pos < sv.q_len ? visible_keys<C::kCausal, C::kWindow>(L, sv.q_len, pos, p.window) : RowRange{0, 0};
    }
    const bool wg_live = q_first < sv.q_len;
    const int wg_last = min(q_first + RW, sv.q_len) - 1;
    const BlockKeys wg_keys = block_keys<C::kCausal, C::kWindow>(L, sv.q_len, q_first, max(wg_last, q_first), p.window);

    OnlineState<C::kFamily, T, 1, D, C::kLazyRescale, C::kMmaSums> st;
    st.init();
    // The two wgmma chains of a tile, each closed by a commit (the caller fences and waits).
    auto issue_s = [&](float (&sc)[BN / 8][4], int s) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        sm90::wgmma_ss<T, BN>(sc, qt.kmajor_desc(0, kk), k_tile(s).kmajor_desc(0, kk), kk > 0 ? 1 : 0);
      sm90::wgmma_commit();
    };
    auto issue_pv = [&](const unsigned (&pa)[BN / 16][4], int s) {
#pragma unroll
      for (int ks = 0; ks < BN / 16; ++ks) sm90::wgmma_rs<T, D>(st.o[0], pa[ks], v_tile(s).mnmajor_desc(ks));
      // d1 and d2 (OnlineState kMmaSums): the same rounded P times ones, k16 at a time.
      if constexpr (C::kMmaSums) {
#pragma unroll
        for (int ks = 0; ks < BN / 16; ++ks) sm90::wgmma_rs_n8<T>(st.sums[0], pa[ks], sm90::ones_desc(ones));
      }
      sm90::wgmma_commit();
    };
    // P in the A-register layout: the C layout of 16 keys (two n8 blocks) is exactly it.
    auto pack_p = [&](const float (&sc)[BN / 8][4], unsigned (&pa)[BN / 16][4]) {
#pragma unroll
      for (int ks = 0; ks < BN / 16; ++ks) {
        pa[ks][0] = pack2<T>(sc[2 * ks][0], sc[2 * ks][1]);
        pa[ks][1] = pack2<T>(sc[2 * ks][2], sc[2 * ks][3]);
        pa[ks][2] = pack2<T>(sc[2 * ks + 1][0], sc[2 * ks + 1][1]);
        pa[ks][3] = pack2<T>(sc[2 * ks + 1][2], sc[2 * ks + 1][3]);
      }
    };
    auto release = [&](int s) {
      __syncwarp();
      if (lane == 0) sm90::mbar_arrive(empty(s));
    };
    if constexpr (!C::kPipelined) {
      // One tile at a time; the other consumer warpgroups fill the tensor cores meanwhile.
      for (int i = 0; i < n_tiles; ++i) {
        const int s = slot(it0 + i), key0 = w.tile_key(i);
        sm90::mbar_wait(full_k(s), parity(it0 + i));
        // One branch around each tile's whole wgmma sequence: ptxas serialises every wgmma
        // of the kernel when an issue and its wait sit in different divergent regions
        // (C7518), so the dead-tile path repeats the turns instead of sharing them.
        if (wg_live && !span_is_dead(wg_keys, key0, BN)) {
          float sc[BN / 8][4];
          unsigned pa[BN / 16][4];
          float alpha[R];
          turn_begin();
          // Cheap insurance for the cp.async -> wgmma hand-off (CUTLASS's cp.async GMMA
          // mainloop relies on the mbarrier alone); one fence per thread and chain.
          sm90::fence_proxy_async();
          sm90::wgmma_fence();
          issue_s(sc, s);
          turn_end();
          sm90::wgmma_wait<0>();
          sm90::fence_regs(sc);
          if (i == n_tiles - 1) prefetch_q();
          if (span_needs_mask(wg_keys, key0, BN))
            st.template update_weights_packed<BN, true>(0, sc, p.scale_log2, key0, rows, alpha, pa);
          else st.template update_weights_packed<BN, false>(0, sc, p.scale_log2, key0, rows, alpha, pa);
          st.rescale_o_warp(0, alpha);
          sm90::mbar_wait(full_v(s), parity(it0 + i));
          turn_begin();
          sm90::fence_proxy_async();
          sm90::wgmma_fence();
          issue_pv(pa, s);
          turn_end();
          sm90::wgmma_wait<0>();
          sm90::fence_regs(st.o[0]);
          sm90::fence_regs(st.sums);
        } else {
          turn_begin();
          turn_end();
          if (i == n_tiles - 1) prefetch_q();
          sm90::mbar_wait(full_v(s), parity(it0 + i));  // the slot is released only once it has landed
          turn_begin();
          turn_end();
        }
        release(s);
      }
    } else {
      // Pipelined (FlashAttention-3's intra-warpgroup overlap): S of tile i and P.V of tile
      // i - 1 are issued together, and the softmax of tile i runs while P.V is in flight. O
      // is rescaled only after that P.V landed: it then holds the sum up to tile i - 1 at
      // the old maximum, which alpha_i moves to the new one. Every tile of the CTA's span
      // is computed (masked), so the pipeline has no holes. P.V reads pa asynchronously, so
      // the next tile's weights stay in sc (floats) until it has landed.
      float sc[BN / 8][4];
      unsigned pa[BN / 16][4];
      float alpha[R];
      auto weights = [&](int key0) {
        if (span_needs_mask(wg_keys, key0, BN)) st.template update_weights<BN, true>(0, sc, p.scale_log2, key0, rows, alpha);
        else st.template update_weights<BN, false>(0, sc, p.scale_log2, key0, rows, alpha);
      };
      if (n_tiles > 0) {
        sm90::mbar_wait(full_k(slot(it0)), parity(it0));
        turn_begin();
        sm90::fence_proxy_async();
        sm90::wgmma_fence();
        issue_s(sc, slot(it0));
        turn_end();
        sm90::wgmma_wait<0>();
        sm90::fence_regs(sc);
        if (n_tiles == 1) prefetch_q();
        weights(w.tile_key(0));  // O is still zero: nothing to rescale
        pack_p(sc, pa);
      }
      for (int i = 1; i < n_tiles; ++i) {
        const int s = slot(it0 + i), sp = slot(it0 + i - 1);
        sm90::mbar_wait(full_k(s), parity(it0 + i));
        sm90::mbar_wait(full_v(sp), parity(it0 + i - 1));
        turn_begin();
        sm90::fence_proxy_async();
        sm90::wgmma_fence();  // sc, pa and O were last written by ordinary instructions
        issue_s(sc, s);
        issue_pv(pa, sp);
        turn_end();
        sm90::wgmma_wait<1>();  // groups retire in order: S of tile i is done
        sm90::fence_regs(sc);
        if (i == n_tiles - 1) prefetch_q();
        weights(w.tile_key(i));   // touches neither O nor pa, which P.V still reads
        sm90::wgmma_wait<0>();
        sm90::fence_regs(st.o[0]);
        sm90::fence_regs(st.sums);
        release(sp);
        st.rescale_o_warp(0, alpha);
        pack_p(sc, pa);
      }
      if (n_tiles > 0) {
        const int sp = slot(it0 + n_tiles - 1);
        sm90::mbar_wait(full_v(sp), parity(it0 + n_tiles - 1));
        turn_begin();
        sm90::fence_proxy_async();
        sm90::wgmma_fence();
        issue_pv(pa, sp);
        turn_end();
        sm90::wgmma_wait<0>();
        sm90::fence_regs(st.o[0]);
        sm90::fence_regs(st.sums);
        release(sp);
      }
    }
    it0 += n_tiles;
    if constexpr (C::kMmaSums) st.take_mma_sums();
    else st.reduce_rows();

    const long long o_off = sv.o0 + h * p.o_stride_h;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int pos = my_pos(r);
      if (pos >= sv.q_len) continue;
      T* out = static_cast<T*>(p.o) + o_off + pos * p.o_stride_t + 2 * t4;
      const float d1 = st.d1[0][r], d2 = Traits::d2 ? st.d2[0] : 0.f;
      // Training forward, as prefill.cuh: the quad's four lanes hold the same row totals.
      if (p.stats && t4 == 0) {
        float m_row, d1_row, d2_row;
        st.true_stats(0, r, m_row, d1_row, d2_row);
        store_row_stats(p.stats, ((long long)b * p.heads_q + h) * p.q_len + pos, m_row, d1_row, d2_row);
      }
      T* barv = Traits::d2 && p.barv ? static_cast<T*>(p.barv) + o_off + pos * p.o_stride_t + 2 * t4 : nullptr;
      const RowTotals tot = row_totals(d1, d2);
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        // Parallax: O1 in c0 c1, O2 in c2 c3 of the same thread; softmax: row r's O in
        // c(2r), c(2r+1) and no O2.
        const float* c = st.o[0][n];
        const float a = Traits::probe ? finalize<C::kFamily>(c[0], c[2], tot) : finalize<C::kFamily>(c[2 * r], 0.f, tot);
        const float z = Traits::probe ? finalize<C::kFamily>(c[1], c[3], tot) : finalize<C::kFamily>(c[2 * r + 1], 0.f, tot);
        *reinterpret_cast<unsigned*>(out + n * 8) = pack2<T>(a, z);
        if (barv) *reinterpret_cast<unsigned*>(barv + n * 8) = pack2<T>(c[0] * tot.inv, c[1] * tot.inv);
      }
    }
    issue_next_q();  // not prefetched (kPrefetchQ false, or an item without tiles)
    k = k_next;
  }  // items
  // The last consumer's final turn_end left an arrival on consumer 0's barrier: take it, so
  // no barrier phase is left open when the CTA exits.
  if (C::kPingPong && cw == 0) sm90::named_barrier_sync(C::kTurnBar, 256);
}

}  // namespace plx
