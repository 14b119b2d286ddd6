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
// leaves most SMs idle for small batches; splitting the keys fills them. Two CTAs fit per
// SM (79 KB of smem each on 228 KB), so a wave is 2 x SMs CTAs. The time of S splits is
// about waves(S) / S (each CTA streams 1/S of the keys), so pick the S that minimises
// ceil(ctas * S / wave) / S (plus 10% for S > 1: partials and merge), the smallest on ties,
// keeping >= 2 K/V tiles per split so the
// pipeline has something to overlap and the merge stays cheap.
//   H200 (132 SMs, wave 264), 8 kv heads, block_n 64:
//     batch 1, 4096 keys : ctas 8,   tiles 64  -> S 32 (1 wave of 256: 1/32)
//     batch 8, 4096 keys : ctas 64,  tiles 64  -> S 4  (256 CTAs, 1 wave: 1/4; S 5 = 2/5)
//     batch 32, any      : ctas 256            -> S 1  (0.97 of a wave; S 33 = 1.1 x 32/33)
//     batch 64           : ctas 512 >= 264     -> S 1
constexpr int decode_splits(int ctas, int n_tiles, int sm_count) {
  const int wave = 2 * sm_count;
  if (ctas >= wave || n_tiles < 4) return 1;
  int best = 1;
  double best_cost = 1.0 * ((ctas + wave - 1) / wave);
  for (int s = 2; s <= std::min(128, n_tiles / 2); ++s) {
    // 10% for the partials' round trip and the merge launch.
    const double cost = 1.1 * double((ctas * s + wave - 1) / wave) / s;
    if (cost < best_cost - 1e-9) {
      best = s;
      best_cost = cost;
    }
  }
  return best;
}

// The tile the engine uses when nothing better is known (each is in the shipped specs).
//   decode : block_n 64, 4 warps (16 keys each), 3 stages: two tiles in flight while one is
//            consumed; on the H200 at batch 32 x 16384 keys that streams 4.27 TB/s where
//            2 stages reach 3.8 (docs/PERFORMANCE.md, 2026-11-28)
//   prefill: 8 warps x one m-tile each: block_m 64 for the Parallax families (8 q + 8 r
//            rows per tile), 128 for softmax
inline Tile default_tile(Op op, Family f, int decode_rows) {
  Tile t;
  if (op == Op::decode) {
    t.block_m = decode_block_m(f, decode_rows);
    t.block_n = 64;
    t.warps = 4;
    t.stages = 3;
    t.split_kv = 0;
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
