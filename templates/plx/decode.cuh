// Decode: a few new tokens per sequence against a long KV cache (flash-decoding).
//
// Grid (num_splits, row blocks, batch * heads_kv). A CTA owns BM logical rows of one KV
// head -- the q heads of its GQA group times the new tokens, row = token * group + member
// -- so every K/V tile is loaded once for the whole group. The WARPS warps split each
// tile's BN keys (NK = BN / WARPS each) and keep private online states, merged through
// shared memory at the end. With num_splits > 1 each CTA covers a slice of the tiles and
// writes fp32 partials (parallax-math.md 3.6); the last CTA of a row block to finish
// merges them (merge.cuh), or, without a counter workspace, merge_kernel does.
//
// Two ways to fill the K/V ring, one kernel body: decode_kernel copies with cp.async from
// every thread (kv_loader.cuh, kv_ring.cuh); decode_tma_kernel (sm_90a, DecodeConfig's TMA
// flag) has one more warp, the producer, issue bulk tensor copies on mbarriers
// (kv_tma.cuh) while the WARPS consumer warps do all the math. The producer leaves once
// its last tile is issued, so after the roles part the consumers synchronise among
// themselves on named barrier 1 (sync_math), never on __syncthreads.
#pragma once
#include "plx/kv_loader.cuh"
#include "plx/kv_ring.cuh"
#include "plx/kv_tma.cuh"
#include "plx/merge.cuh"
#include "plx/mask.cuh"
#include "plx/tile_config.cuh"
#include "plx/warp_mma.cuh"

namespace plx {

template <Family F, class T, int D, int BM, int BN, int WARPS, int STAGES, bool CAUSAL, bool WINDOW,
          bool TMA = false>
struct DecodeConfig : TileConfig<F, T, D, BM, BN, WARPS, STAGES, CAUSAL, WINDOW> {
  using Base = TileConfig<F, T, D, BM, BN, WARPS, STAGES, CAUSAL, WINDOW>;
  using TmaRing = KvTmaRing<D, BN, STAGES, WARPS>;
  static constexpr bool kTma = TMA;
  static constexpr int kMT = Base::kMTiles;  // every warp works on all m-tiles
  static constexpr int kNK = BN / WARPS;     // keys per warp per tile
  static_assert(kNK % 16 == 0, "see generator/legality.cpp");
  // The ring is reused at the end for the warp merge: O of every warp plus (m, d1, d2).
  static constexpr int kOPitch = D + 8;  // floats; the pad spreads rows g over banks
  static constexpr int kMergeOBytes = WARPS * kMT * 16 * kOPitch * 4;
  static constexpr int kMergeBytes = kMergeOBytes + WARPS * kMT * 16 * 3 * 4;
  static constexpr int kBodyBytes = Base::kRingBytes > kMergeBytes ? Base::kRingBytes : kMergeBytes;
  // TMA: 1024 B of slack to align Q and the ring to the swizzle period (Q tiles are whole
  // KiB, so the ring stays aligned), and the mbarriers after the ring / merge buffer, which
  // the merge must not overwrite.
  static constexpr int kAlignSlack = TMA ? 1024 : 0;
  static_assert(!TMA || Base::kQBytes % 1024 == 0, "the TMA ring must start 1024-byte aligned");
  static constexpr int kSmemBytes = kAlignSlack + Base::kQBytes + kBodyBytes + (TMA ? TmaRing::kBarBytes : 0);
  // The threads doing math; TMA adds the producer warp (index WARPS) to the block.
  static constexpr int kMathThreads = WARPS * 32;
  static constexpr int kThreads = kMathThreads + (TMA ? 32 : 0);
};

// The tiles a CTA streams: the union of its rows' visible keys, this split's share of it.
// The TMA ring starts a paged cache's tiles at a multiple of BN, so a tile is part of one
// page or whole pages (keys before any.lo are real keys < L that the rows' ranges mask,
// like every masked key of a window). The producer warp and the consumers work it out
// alike.
struct DecodeSpan {
  BlockKeys keys;
  int first_key;  // of this split's first tile
  int tiles;      // this split's tile count (0 or less: none)
};
template <class C>
__device__ __forceinline__ DecodeSpan decode_span(const AttnParams& p, int L, int row0, int rows_total) {
  const int last_row = min(row0 + C::kBM, rows_total) - 1;
  DecodeSpan s;
  s.keys = block_keys<C::kCausal, C::kWindow>(L, p.q_len, row0 / p.group, last_row / p.group, p.window);
  const int span_lo = C::kTma && p.block_table ? s.keys.any.lo / C::kBN * C::kBN : s.keys.any.lo;
  const int n_tiles = (s.keys.any.hi - span_lo + C::kBN - 1) / C::kBN;
  const int split = blockIdx.x;
  const int tile_begin = int((long long)split * n_tiles / p.num_splits);
  const int tile_end = int((long long)(split + 1) * n_tiles / p.num_splits);
  s.first_key = span_lo + tile_begin * C::kBN;
  s.tiles = tile_end - tile_begin;
  return s;
}

// The kernel body; `tma` is null for the cp.async kernel.
template <class C>
__device__ __forceinline__ void decode_body(const AttnParams& p, const KvTmaDescs* tma) {
  using T = typename C::Elem;
  using Traits = typename C::Traits;
  constexpr int D = C::kD, MT = C::kMT, NK = C::kNK, RPT = Traits::rows_per_tile;
  constexpr int R = Traits::stat_rows;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // merge_if_last's static __shared__ sits in front of the dynamic block, so the 1024-byte
  // alignment the TMA swizzle needs is made here, not assumed.
  unsigned char* smem = smem_raw + (C::kTma ? (1024u - (smem_addr(smem_raw) & 1023u)) & 1023u : 0u);

  const int split = blockIdx.x;
  const int row0 = blockIdx.y * C::kBM;
  const int b = blockIdx.z / p.heads_kv, hkv = blockIdx.z % p.heads_kv;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rows_total = p.group * p.q_len;
  const int L = live_len(p, b);

  const unsigned q_base = smem_addr(smem);
  // The TMA ring's slots follow Q, its barriers the ring / merge buffer (unused by cp.async).
  using TmaRing = typename C::TmaRing;
  const TmaRing tma_ring{q_base + C::kQBytes, q_base + C::kQBytes + C::kBodyBytes};
  if constexpr (C::kTma) {
    if (threadIdx.x == 0) tma_ring.init();
    __syncthreads();  // the last CTA-wide barrier: barriers initialised before anyone waits
    if (warp == C::kWarps) {  // the producer warp: copies only, then leaves
      const DecodeSpan span = decode_span<C>(p, L, row0, rows_total);
      KvTmaProducer<D, C::kBN, C::kStages, C::kWarps>(p, tma, b, hkv, L, span.first_key).run(tma_ring, span.tiles);
      return;
    }
  }
  // Barrier of the math threads (all of them but the producer warp).
  auto sync_math = [] {
    if constexpr (C::kTma) sm90::named_barrier_sync(1, C::kMathThreads);
    else __syncthreads();
  };
  auto q_tile = [&](int mt) { return SmemTile<D>{q_base + unsigned(mt * 16 * D * 2)}; };

  // Q (and R) rows into shared memory: m-tile mt, fragment row i.
  auto logical_row = [&](int mt, int i) { return row0 + mt * RPT + (Traits::probe ? (i & 7) : i); };
  for (int mt = 0; mt < MT; ++mt) {
    q_tile(mt).template load_rows<C::kMathThreads>(16, [&](int i) -> const unsigned short* {
      const int l = logical_row(mt, i);
      if (l >= rows_total) return nullptr;
      const int t = l / p.group, h = hkv * p.group + l % p.group;
      const void* base = (Traits::probe && i >= 8) ? p.r : p.q;
      return static_cast<const unsigned short*>(base) + b * p.q_stride_b + t * p.q_stride_t + h * p.q_stride_h;
    });
  }
  cp_async_commit();

  // This thread's fragment rows: g (and g + 8 for softmax) of every m-tile.
  RowRange rows[MT][R];
  for (int mt = 0; mt < MT; ++mt)
    for (int r = 0; r < R; ++r) {
      const int l = logical_row(mt, (lane >> 2) + 8 * r);
      rows[mt][r] = l < rows_total ? visible_keys<C::kCausal, C::kWindow>(L, p.q_len, l / p.group, p.window)
                                   : RowRange{0, 0};
    }
  const DecodeSpan span = decode_span<C>(p, L, row0, rows_total);
  const BlockKeys& keys = span.keys;
  auto tile_key = [&](int i) { return span.first_key + i * C::kBN; };

  OnlineState<C::kFamily, T, MT, D> st;
  st.init();
  // One warp's share of a tile: keys k0 .. k0 + NK of the tile at key tile_key(i).
  auto consume = [&](int i, auto kt, auto vt) {
    const int k0 = warp * NK, key0 = tile_key(i) + k0;
    if (span_is_dead(keys, key0, NK)) return;
    float s[MT][NK / 8][4];
    scores<T, MT, NK, D>(s, q_tile, kt, k0);
    const int col0 = key0;
    if (span_needs_mask(keys, key0, NK)) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) st.template update<NK, true>(mt, s[mt], p.scale_log2, col0, rows[mt]);
    } else {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) st.template update<NK, false>(mt, s[mt], p.scale_log2, col0, rows[mt]);
    }
    accumulate_pv<T, MT, NK, D>(st.o, s, vt, k0);
  };
  const int tiles = span.tiles;
  if constexpr (!C::kTma) {
    const long long kv_head_off = hkv * p.k_stride_h;
    const unsigned short* kg = static_cast<const unsigned short*>(p.k) + kv_head_off;
    const unsigned short* vg = static_cast<const unsigned short*>(p.v) + kv_head_off;
    const KvRing<D, C::kBN, C::kStages> ring{q_base + C::kQBytes};
    KvLoader<C::kThreads, D, C::kBN> loader(p, kg, vg, b, L, tile_key(0));
    ring.run(
        tiles, [&](int i, int slot) { loader.load(ring.k(slot), ring.v(slot), tile_key(i)); },
        [&](int i, int slot) { consume(i, ring.k(slot), ring.v(slot)); });
  } else {
    // The consumers wait for every tile the producer issues (this split's tiles only) and
    // release every tile they waited for, dead spans included, so no barrier is left
    // waiting for an arrival that never comes; a split without tiles touches none.
    cp_async_wait<0>();
    sync_math();  // Q (cp.async) visible to every consumer warp
    for (int i = 0; i < tiles; ++i) {
      tma_ring.wait_full(i);
      const int slot = i % C::kStages, k0 = warp * NK, key0 = tile_key(i) + k0;
      // Keys at or past L in this warp's rows: zero them (kv_tma.cuh zero_tail).
      if (key0 + NK > L && !span_is_dead(keys, key0, NK)) tma_ring.zero_tail(slot, k0, NK, key0, L);
      __syncwarp();
      consume(i, tma_ring.k(slot), tma_ring.v(slot));
      __syncwarp();
      if (lane == 0) tma_ring.release(i);
    }
    sync_math();  // every consumer is done with the ring: the merge below reuses it
  }
  st.reduce_rows();

  // Warp merge through shared memory (the ring is free now).
  float* mo = reinterpret_cast<float*>(smem + C::kQBytes);
  float* ms = mo + C::kMergeOBytes / 4;
  const int g = lane >> 2, t4 = lane & 3;
  auto o_at = [&](int w, int mt, int row) { return mo + ((w * MT + mt) * 16 + row) * C::kOPitch; };
  auto stat_at = [&](int w, int mt, int row) { return ms + ((w * MT + mt) * 16 + row) * 3; };
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<float2*>(o_at(warp, mt, g) + n * 8 + 2 * t4) = make_float2(st.o[mt][n][0], st.o[mt][n][1]);
      *reinterpret_cast<float2*>(o_at(warp, mt, g + 8) + n * 8 + 2 * t4) = make_float2(st.o[mt][n][2], st.o[mt][n][3]);
    }
    if (t4 == 0) {
      for (int r = 0; r < R; ++r) {
        float* s = stat_at(warp, mt, g + 8 * r);
        s[0] = st.m[mt][r];
        s[1] = st.d1[mt][r];
        s[2] = Traits::d2 ? st.d2[mt] : 0.f;
      }
    }
  }
  sync_math();

  const int rows_out = p.batch * p.heads_q * p.q_len;
  auto out_row = [&](int l) {
    const int t = l / p.group, h = hkv * p.group + l % p.group;
    return static_cast<T*>(p.o) + b * p.o_stride_b + t * p.o_stride_t + h * p.o_stride_h;
  };
  for (int idx = threadIdx.x; idx < C::kBM * (D / 2); idx += C::kMathThreads) {
    const int lr = idx / (D / 2), col = 2 * (idx % (D / 2));
    const int l = row0 + lr;
    if (l >= rows_total) continue;
    const int mt = lr / RPT, fr = lr % RPT;  // O1 in fragment row fr, O2 in fr + 8
    float M = neg_inf();
    for (int w = 0; w < C::kWarps; ++w) M = fmaxf(M, stat_at(w, mt, fr)[0]);
    const float M_safe = M == neg_inf() ? 0.f : M;
    float d1 = 0.f, d2 = 0.f, o1a = 0.f, o1b = 0.f, o2a = 0.f, o2b = 0.f;
    for (int w = 0; w < C::kWarps; ++w) {
      const float* s = stat_at(w, mt, fr);
      const float sc = exp2_fast(s[0] - M_safe);
      d1 += sc * s[1];
      d2 += sc * s[2];
      const float2 x1 = *reinterpret_cast<const float2*>(o_at(w, mt, fr) + col);
      o1a += sc * x1.x;
      o1b += sc * x1.y;
      if (Traits::probe) {
        const float2 x2 = *reinterpret_cast<const float2*>(o_at(w, mt, fr + 8) + col);
        o2a += sc * x2.x;
        o2b += sc * x2.y;
      }
    }
    if (p.num_splits == 1) {
      T* out = out_row(l) + col;
      *reinterpret_cast<unsigned*>(out) =
          pack2<T>(finalize<C::kFamily>(o1a, o2a, d1, d2), finalize<C::kFamily>(o1b, o2b, d1, d2));
    } else {
      // Partial rows in (batch, kv head, logical row) order; m leaves in natural log.
      const long long row = ((long long)split * rows_out + (long long)blockIdx.z * rows_total + l);
      float* wo = p.ws_o + row * 2 * D + col;
      *reinterpret_cast<float2*>(wo) = make_float2(o1a, o1b);
      *reinterpret_cast<float2*>(wo + D) = make_float2(o2a, o2b);
      if (col == 0) {
        float* ws = p.ws_stats + row * 4;
        ws[0] = M == neg_inf() ? M : M * 0.69314718055994531f;
        ws[1] = d1;
        ws[2] = d2;
        ws[3] = 0.f;
      }
    }
  }
  if (p.num_splits > 1 && p.ws_counter)
    merge_if_last<C::kFamily, T, D, C::kBM, C::kMathThreads>(p, row0, rows_total, mo, out_row, sync_math);
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) decode_kernel(const AttnParams p) {
  static_assert(!C::kTma, "a TMA config runs as decode_tma_kernel");
  decode_body<C>(p, nullptr);
}

// The tensor maps stay in parameter space (__grid_constant__): the TMA reads them through
// their generic address.
template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) decode_tma_kernel(const AttnParams p,
                                                                    const __grid_constant__ KvTmaDescs tma) {
  static_assert(C::kTma, "a cp.async config runs as decode_kernel");
  decode_body<C>(p, &tma);
}

}  // namespace plx
