// The model's choices for a problem the tuning database has not seen: which op, which
// tile, how many KV splits. Tiny pure functions with worked numbers, so a reader can check
// them by hand and the engine never stalls on an untuned shape.
#pragma once
#include <algorithm>

#include "generator/legality.hpp"

namespace plx::heuristics {

// Decode serves up to this many new tokens per sequence; longer queries are prefill.
//   q_len 1 (generation), 4 (speculative draft) -> decode; q_len 512 -> prefill.
inline constexpr int kMaxDecodeTokens = 16;
constexpr Op choose_op(int q_len) { return q_len <= kMaxDecodeTokens ? Op::decode : Op::prefill; }

// Decode CTA rows: the q heads of a GQA group x the new tokens, in as few m16 tiles as
// possible. Parallax packs 8 rows (+ their 8 probes) per tile, softmax 16.
//   parallax, group 4, q_len 1 -> 4 rows  -> block_m 8  (one m-tile)
//   parallax, group 8, q_len 2 -> 16 rows -> block_m 16 (two m-tiles)
//   softmax,  group 8, q_len 1 -> 8 rows  -> block_m 16 (one m-tile, half empty)
constexpr int decode_block_m(Family f, int rows) {
  const int rpt = rows_per_tile(f);
  return rows <= rpt ? rpt : 16;
}

// Number of KV splits for decode (flash-decoding). A CTA per (batch, kv head, row block)
// leaves most SMs idle for small batches; splitting the keys fills them. Decode is bound
// by each SM's share of the memory bandwidth, so the cost of S splits, in tile-times, is
// what the busiest SM streams: its ceil(ctas x S / SMs) CTAs, each n_tiles / S tiles plus
// a fixed 4 (Q load, pipeline fill, warp merge, partials), whether they run side by side
// or in waves; plus 0.02 per split for the merge. An SM only streams at its share when
// enough bytes are in flight: about 4.3 TB/s x 1.5 us of latency / 132 SMs = 48 KiB, so
// with fewer (the CTAs resident on it x the ring's tiles in flight) the cost grows by that
// ratio. Cheapest S wins, the smallest on ties, with >= 2 tiles per split.
//   H200 (132 SMs), 8 kv heads, block_n 64, 3 stages; the split sweep of 2026-11-29
//   (docs/PERFORMANCE.md) measured the same best S:
//     d128 (2 x 32 KiB in flight per CTA):
//     batch 1, 4096 keys  : ctas 8,  tiles 64   -> S 16 (1 x (4 + 4) = 8.3;
//                                                   S 33: 2 x (1.9 + 4) = 12.5)   13.9 us vs 15.8
//     batch 1, 131072 keys: ctas 8,  tiles 2048 -> S 16 (1 x (128 + 4) = 132.3;
//                                                   S 33: 2 x (62 + 4) = 132.8)  126.8 us vs 130.1
//     batch 8, 8192 keys  : ctas 64, tiles 128  -> S 2  (1 x (64 + 4) = 68.0; S 4: 72.1)
//     batch 32, any       : ctas 256            -> S 1  (2 x (n + 4); S 2: 4 x (n/2 + 4))
//     d64 (2 x 16 KiB in flight per CTA, 4 CTAs fit an SM):
//     batch 4, 8192 keys, 8 kv heads: ctas 32, tiles 128 -> S 8 (2 x (16 + 4) = 40.2;
//                                     S 4: 1 x (32 + 4) x 48/32 = 54.1)           24.0 us vs 25.7
inline constexpr double kInflightPerSm = 48 * 1024;
constexpr double decode_split_cost(int ctas, int n_tiles, int sm_count, int s, double inflight_per_cta = 65536,
                                   int ctas_per_sm = 2) {
  const int per_sm = (ctas * s + sm_count - 1) / sm_count;
  const double resident = std::min(per_sm, std::max(1, ctas_per_sm));
  const double starve = std::max(1.0, kInflightPerSm / (resident * inflight_per_cta));
  return per_sm * (double(n_tiles) / s + 4.0) * starve + (s > 1 ? 0.02 * s : 0.0);
}
constexpr int decode_splits(int ctas, int n_tiles, int sm_count, double inflight_per_cta = 65536,
                            int ctas_per_sm = 2) {
  if (n_tiles < 4 || sm_count < 1) return 1;
  int best = 1;
  double best_cost = decode_split_cost(ctas, n_tiles, sm_count, 1, inflight_per_cta, ctas_per_sm);
  for (int s = 2; s <= std::min(128, n_tiles / 2); ++s) {
    const double c = decode_split_cost(ctas, n_tiles, sm_count, s, inflight_per_cta, ctas_per_sm);
    if (c < best_cost - 1e-9) {
      best = s;
      best_cost = c;
    }
  }
  return best;
}

// CTAs of a kernel that fit on one SM by shared memory (the binding limit for these
// tiles): sm_90a has 228 KiB per SM, sm_80 164 KiB, and each CTA reserves 1 KiB.
//   decode d128 block_m 8, stages 3: 102400 B -> 233472 / 103424 = 2 on sm_90a
constexpr int ctas_per_sm_by_smem(long smem_bytes, Arch arch) {
  const long per_sm = arch == Arch::sm90a ? 233472 : 167936;
  return std::max(1L, per_sm / (smem_bytes + 1024));
}

// Whether an untuned decode call fills its K/V ring with TMA (a producer warp, kv_tma.cuh)
// rather than cp.async: on sm_90a, for paged caches with pages under 64 keys, when few
// (batch, kv head) pairs share the GPU (<= 16: the keys are split many ways), with 4
// stages. Such a tile spans 2 or 4 pages; cp.async threads then read block-table entries
// behind their own K/V copies, while the producer warp reads them ahead. H200, d 128
// (2026-11-29, runs 45-46; paged / contiguous time of the same run):
//   1 x 32768 keys x 32/8 heads (8 pairs), page 16: TMA 1.055-1.061, cp.async 1.10-1.11
//   8 x 8192 x 32/8 (64 pairs), page 16: TMA 1.14, cp.async 1.04 (run 44)
//   32 x 4096 / 16384 x 8/8 (256 pairs), page 16: TMA 1.12-1.13
// and contiguous caches stay on cp.async (TMA 1.5-6.5% slower on every shape).
constexpr bool decode_prefers_tma(bool sm90a, bool paged, int page_size, long long kv_pairs) {
  return sm90a && paged && page_size < 64 && kv_pairs <= 16;
}

// The tile the engine uses when nothing better is known (each is in the shipped specs).
//   decode : block_n 64, 4 warps (16 keys each), 3 stages: two tiles in flight while one is
//            consumed; on the H200 at batch 32 x 16384 keys that streams 4.27 TB/s where
//            2 stages reach 3.8 (docs/PERFORMANCE.md, 2026-11-28)
//   prefill, Hopper (wgmma): block_n 128, 2 stages, 32 queries + 32 probes (Parallax
//            families) or 64 queries (softmax) per consumer warpgroup; training forwards
//            (stats) too. On the H200 (docs/PERFORMANCE.md, 2026-11-29, second session):
//            - head_dim 128: 2 consumers + 1 producer (12 warps, block_m 64 / 128); a
//              third consumer does not fit (O 64 + S 64 + 40 > 152 registers).
//              Parallax: wgmma-pipe, 3 stages. Plain wgmma led from the persistent CTAs
//              (run 17: 550 / 647 / 565 TFLOP/s on the issue-5 shapes) until the
//              pipelined loop took its row sums from the tensor cores (2026-12-06, run 50,
//              H100: pipe 624 / 720 / 612 against plain 596-600 / 675 / 622 the run
//              before). Softmax: wgmma-pipe-pp, 3 stages, the best of 12 since run 17;
//            - head_dim 64: 3 consumers (16 warps, block_m 96 / 192), plain wgmma (the
//              pipelined loop does not fit 152 registers): 489 vs 437 TFLOP/s for
//              Parallax at 2 x 8192 x 32 heads with 2 consumers.
//   prefill, mma.sync: 8 warps x one m-tile each: block_m 64 for the Parallax families
//            (8 q + 8 r rows per tile), 128 for softmax
inline Tile default_tile(Op op, Family f, int decode_rows, bool wgmma_prefill = false, int head_dim = 128) {
  Tile t;
  if (op == Op::decode) {
    t.block_m = decode_block_m(f, decode_rows);
    t.block_n = 64;
    t.warps = 4;
    t.stages = 3;
    t.split_kv = 0;
  } else if (wgmma_prefill) {
    const int consumers = head_dim <= 64 ? 3 : 2;
    t.block_m = consumers * (has_probe(f) ? 32 : 64);
    t.block_n = 128;
    t.warps = 4 * (consumers + 1);
    t.stages = consumers == 2 ? 3 : 2;
    t.split_kv = 1;
    t.mma = consumers == 3 ? Mma::wgmma : has_probe(f) ? Mma::wgmma_pipe : Mma::wgmma_pipe_pp;
  } else {
    t.block_m = has_probe(f) ? 64 : 128;
    t.block_n = 64;
    t.warps = 8;
    t.stages = 2;
    t.split_kv = 1;
  }
  return t;
}

}  // namespace plx::heuristics
