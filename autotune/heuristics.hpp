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
// leaves most SMs idle for small batches; splitting the keys fills them. A wave is
// ctas_per_sm x SMs CTAs (2 per SM for the 100 KiB default decode tile). The time of S
// splits is about waves(S) x (tiles per split + 3), the 3 being a CTA's fixed cost
// (Q load, pipeline fill, warp merge) in tile-times, plus 5% for S > 1 (partials and the
// merge launch). Pick the cheapest S, the smallest on ties, with >= 2 tiles per split.
//   H200 (132 SMs, 2 CTAs/SM: wave 264), 8 kv heads, block_n 64:
//     batch 1, 16384 keys: ctas 8,   tiles 256 -> S 33 (1 wave x (7.8 + 3) = 10.8)
//     batch 1, 4096 keys : ctas 8,   tiles 64  -> S 32 (1 wave x (2 + 3) = 5)
//     batch 8, 16384 keys: ctas 64,  tiles 256 -> S 4  (1 wave x 67; S 33 = 8 x 10.8 = 86)
//     batch 32, any      : ctas 256            -> S 1  (1 wave x 259; S 2 = 2 x 131 x 1.05)
//     batch 64           : ctas 512 >= 264     -> S 1
constexpr int decode_splits(int ctas, int n_tiles, int sm_count, int ctas_per_sm = 2) {
  const int wave = std::max(1, ctas_per_sm) * sm_count;
  if (ctas >= wave || n_tiles < 4) return 1;
  auto cost = [&](int s) {
    const double waves = double((ctas * s + wave - 1) / wave);
    return waves * (double(n_tiles) / s + 3.0) * (s > 1 ? 1.05 : 1.0);
  };
  int best = 1;
  double best_cost = cost(1);
  for (int s = 2; s <= std::min(128, n_tiles / 2); ++s) {
    if (cost(s) < best_cost - 1e-9) {
      best = s;
      best_cost = cost(s);
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
