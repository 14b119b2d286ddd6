// Prefill: many query rows against their keys (FlashAttention-2 structure).
//
// Grid (row blocks, heads_q, batch). A CTA owns BM consecutive query positions of one q
// head; warp w owns MT = BM / (WARPS * rows_per_tile) m-tiles of them and reads every key
// of each K/V tile, so no cross-warp merge is needed and each thread finalizes its own
// rows from registers. Causal: tiles past a warp's last diagonal are skipped, and only
// tiles crossing a row's range boundary pay for the per-element mask.
#pragma once
#include "plx/kv_ring.cuh"
#include "plx/mask.cuh"
#include "plx/row_stats.cuh"
#include "plx/tile_config.cuh"
#include "plx/warp_mma.cuh"

namespace plx {

template <Family F, class T, int D, int BM, int BN, int WARPS, int STAGES, bool CAUSAL, bool WINDOW>
struct PrefillConfig : TileConfig<F, T, D, BM, BN, WARPS, STAGES, CAUSAL, WINDOW> {
  using Base = TileConfig<F, T, D, BM, BN, WARPS, STAGES, CAUSAL, WINDOW>;
  static constexpr int kMT = Base::kMTiles / WARPS;  // m-tiles per warp
  static_assert(kMT * WARPS == Base::kMTiles && kMT >= 1, "see generator/legality.cpp");
  static constexpr int kSmemBytes = Base::kQBytes + Base::kRingBytes;
};

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) prefill_kernel(const AttnParams p) {
  using T = typename C::Elem;
  using Traits = typename C::Traits;
  constexpr int D = C::kD, MT = C::kMT, NK = C::kBN, RPT = Traits::rows_per_tile;
  constexpr int R = Traits::stat_rows;
  extern __shared__ __align__(128) unsigned char smem[];

  const int row0 = blockIdx.x * C::kBM;
  const int h = blockIdx.y, b = blockIdx.z, hkv = h / p.group;
  const SeqView sv = seq_view(p, b);
  if (row0 >= sv.q_len) return;  // varlen: a sequence shorter than the longest (whole CTA)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int L = sv.L;

  const unsigned q_base = smem_addr(smem);
  auto cta_tile = [&](int mt) { return SmemTile<D>{q_base + unsigned(mt * 16 * D * 2)}; };
  auto warp_tile = [&](int mt) { return cta_tile(warp * MT + mt); };
  const KvRing<D, C::kBN, C::kStages> ring{q_base + C::kQBytes};

  auto position = [&](int cta_mt, int i) { return row0 + cta_mt * RPT + (Traits::probe ? (i & 7) : i); };
  const long long q_off = sv.q0 + h * p.q_stride_h;
  for (int mt = 0; mt < C::kMTiles; ++mt) {
    cta_tile(mt).template load_rows<C::kThreads>(16, [&](int i) -> const unsigned short* {
      const int pos = position(mt, i);
      if (pos >= sv.q_len) return nullptr;
      const void* base = (Traits::probe && i >= 8) ? p.r : p.q;
      return static_cast<const unsigned short*>(base) + q_off + pos * p.q_stride_t;
    });
  }
  cp_async_commit();

  RowRange rows[MT][R];
  for (int mt = 0; mt < MT; ++mt)
    for (int r = 0; r < R; ++r) {
      const int pos = position(warp * MT + mt, (lane >> 2) + 8 * r);
      rows[mt][r] = pos < sv.q_len ? visible_keys<C::kCausal, C::kWindow>(L, sv.q_len, pos, p.window) : RowRange{0, 0};
    }
  const int cta_last = min(row0 + C::kBM, sv.q_len) - 1;
  const BlockKeys cta_keys = block_keys<C::kCausal, C::kWindow>(L, sv.q_len, row0, cta_last, p.window);
  const int warp_first = row0 + warp * MT * RPT;
  const int warp_last = min(warp_first + MT * RPT, sv.q_len) - 1;
  const bool warp_live = warp_first < sv.q_len;
  const BlockKeys warp_keys =
      block_keys<C::kCausal, C::kWindow>(L, sv.q_len, warp_first, max(warp_last, warp_first), p.window);

  const long long kv_off = hkv * p.k_stride_h;
  const unsigned short* kg = static_cast<const unsigned short*>(p.k) + kv_off;
  const unsigned short* vg = static_cast<const unsigned short*>(p.v) + kv_off;
  const int n_tiles = (cta_keys.any.hi - cta_keys.any.lo + NK - 1) / NK;
  auto tile_key = [&](int i) { return cta_keys.any.lo + i * NK; };

  OnlineState<C::kFamily, T, MT, D> st;
  st.init();
  ring.run(
      n_tiles,
      [&](int i, int slot) {
        load_kv_tile<C::kThreads>(p, ring.k(slot), kg, b, sv.k0, tile_key(i), C::kBN, L);
        load_kv_tile<C::kThreads>(p, ring.v(slot), vg, b, sv.k0, tile_key(i), C::kBN, L);
      },
      [&](int i, int slot) {
        const int key0 = tile_key(i);
        if (!warp_live || span_is_dead(warp_keys, key0, NK)) return;
        float s[MT][NK / 8][4];
        scores<T, MT, NK, D>(s, warp_tile, ring.k(slot), 0);
        if (span_needs_mask(warp_keys, key0, NK)) {
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) st.template update<NK, true>(mt, s[mt], p.scale_log2, key0, rows[mt]);
        } else {
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) st.template update<NK, false>(mt, s[mt], p.scale_log2, key0, rows[mt]);
        }
        accumulate_pv<T, MT, NK, D>(st.o, s, ring.v(slot), 0);
      });
  st.reduce_rows();

  const int g = lane >> 2, t4 = lane & 3;
  const long long o_off = sv.o0 + h * p.o_stride_h;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int pos = position(warp * MT + mt, g + 8 * r);
      if (pos >= sv.q_len) continue;
      T* out = static_cast<T*>(p.o) + o_off + pos * p.o_stride_t + 2 * t4;
      const float d1 = st.d1[mt][r], d2 = Traits::d2 ? st.d2[mt] : 0.f;
      // Training forward: the quad's four lanes hold the same row totals; one writes them.
      if (p.stats && t4 == 0)
        store_row_stats(p.stats, ((long long)b * p.heads_q + h) * p.q_len + pos, st.m[mt][r], d1, d2);
      T* barv = Traits::d2 && p.barv ? static_cast<T*>(p.barv) + o_off + pos * p.o_stride_t + 2 * t4 : nullptr;
      const RowTotals tot = row_totals(d1, d2);
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        // Parallax: O1 in c0 c1, O2 in c2 c3 of the same thread; softmax: row r's O in
        // c(2r), c(2r+1) and no O2.
        const float* c = st.o[mt][n];
        const float a = Traits::probe ? finalize<C::kFamily>(c[0], c[2], tot) : finalize<C::kFamily>(c[2 * r], 0.f, tot);
        const float z = Traits::probe ? finalize<C::kFamily>(c[1], c[3], tot) : finalize<C::kFamily>(c[2 * r + 1], 0.f, tot);
        *reinterpret_cast<unsigned*>(out + n * 8) = pack2<T>(a, z);
        if (barv) *reinterpret_cast<unsigned*>(barv + n * 8) = pack2<T>(c[0] * tot.inv, c[1] * tot.inv);
      }
    }
  }
}

}  // namespace plx
