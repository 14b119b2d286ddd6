#include "generator/legality.hpp"

#include <fmt/format.h>

namespace plx {

namespace {
// Accumulator + score floats per thread that still compile without spills (ptxas, 255
// registers): decode parallax d 128, 2 m-tiles, 32 keys/warp = 128 + 32 = 160 uses 248.
constexpr int kMaxStateFloats = 160;

std::string family_note(Family f) {
  return has_probe(f) ? fmt::format("{}: 8 q + 8 r rows", to_string(f))
                      : fmt::format("{}: 16 q rows", to_string(f));
}

// The wgmma prefill (templates/plx/prefill_sm90.cuh, PrefillSm90Config).
std::optional<std::string> why_illegal_wgmma(const Variant& v) {
  const Tile& t = v.tile;
  const int d = v.head_dim;
  const std::string_view mma = to_string(t.mma);
  if (v.op != Op::prefill) {
    return fmt::format("mma {}: only the prefill and backward templates use wgmma (op is {})", mma, to_string(v.op));
  }
  if (v.arch != Arch::sm90a) return fmt::format("mma {}: wgmma needs sm_90a (arch is {})", mma, to_string(v.arch));
  if (t.mma == Mma::wgmma_red) return fmt::format("mma {}: a backward loop (dQ/dR reduced from the dK/dV pass)", mma);
  if (d != 64 && d != 128) {
    return fmt::format("head_dim {}: no template for head_dim {} yet (templates cover 64 and 128)", d, d);
  }
  if (t.split_kv != 0 && t.split_kv != 1) {
    return fmt::format("prefill: split_kv {} must be 1 or auto (prefill does not split the keys)", t.split_kv);
  }
  // S = [Q;R] K^T is one m64 nBN k16 wgmma chain and O += P V one m64 nD chain; the
  // templates spell out n64 and n128 (wgmma.cuh).
  if (t.block_n != 64 && t.block_n != 128) {
    return fmt::format("mma {}: block_n {} not in {{64, 128}} (the wgmma N of S = Q K^T)", mma, t.block_n);
  }
  // A consumer warpgroup owns one m64 tile: 32 queries + their 32 probes, or 64 softmax
  // queries. block_m 64 parallax = 2 consumers; block_m 64 softmax = 1.
  const int rw = wgmma_rows_per_warpgroup(v.family);
  if (t.block_m % rw != 0 || t.block_m / rw < 1 || t.block_m / rw > 3) {
    return fmt::format("mma {}: block_m {} is not 1, 2 or 3 consumer warpgroups of {} queries ({})", mma, t.block_m,
                       rw, has_probe(v.family) ? "32 q + 32 r rows of an m64 tile" : "64 q rows of an m64 tile");
  }
  const int consumers = t.block_m / rw;
  // Ping-pong alternates MMA turns between consumer warpgroups: one alone has nobody to
  // hand its turn to (and plain wgmma is the same kernel then).
  if (is_pingpong(t.mma) && consumers < 2) {
    return fmt::format("mma {}: ping-pong needs 2 or 3 consumer warpgroups; block_m {} gives {}", mma, t.block_m,
                       consumers);
  }
  if (t.warps != 4 * (consumers + 1)) {
    return fmt::format("mma {}: warps {} must be 4 x ({} consumer warpgroups + 1 producer) = {}", mma, t.warps,
                       consumers, 4 * (consumers + 1));
  }
  if (t.stages < 2 || t.stages > 4) {
    return fmt::format("mma {}: stages {} not in 2..4 (one ring slot filling while another is consumed)", mma,
                       t.stages);
  }
  // Per consumer thread: O = d / 2 fp32 accumulators, S = block_n / 2, plus about 40 for
  // the online state, addresses and descriptors; the pipelined loop also keeps the packed
  // P of the previous tile (block_n / 4 registers) while the next S lands.
  //   wgmma,      d 128, block_n 128: 64 + 64 + 40 = 168 <= 232 (2 consumers), > 152 (3)
  //   wgmma,      d 64,  block_n 128: 32 + 64 + 40 = 136 <= 152
  //   wgmma-pipe, d 128, block_n 128: 64 + 64 + 32 + 40 = 200 <= 232
  const bool pipe = is_pipelined(t.mma);
  const int need = d / 2 + t.block_n / 2 + (pipe ? t.block_n / 4 : 0) + 40;
  const int have = wgmma_consumer_registers(consumers);
  if (need > have) {
    return fmt::format("mma {}: O {} + S {}{} + 40 = {} registers per consumer thread exceed the {} that {} "
                       "consumer warpgroups get",
                       to_string(t.mma), d / 2, t.block_n / 2, pipe ? fmt::format(" + P {}", t.block_n / 4) : "",
                       need, have, consumers);
  }
  const std::int64_t smem = smem_bytes(v);
  if (smem > kSmemLimitSm90a) {
    return fmt::format("smem {} B (1024 align + Q {} x 64 x d {} x 2 B + K/V ring stages {} x block_n {} x d {} x "
                       "K+V x 2 B + barriers) exceeds sm_90a's {} B",
                       smem, consumers, d, t.stages, t.block_n, d, kSmemLimitSm90a);
  }
  return std::nullopt;
}

// The TMA K/V ring of the decode kernel (templates/plx/kv_tma.cuh); the decode rules below
// apply on top.
std::optional<std::string> why_illegal_tma(const Variant& v) {
  const Tile& t = v.tile;
  if (v.op != Op::decode) return fmt::format("loader tma: only the decode template has a TMA ring (op is {})", to_string(v.op));
  if (v.arch != Arch::sm90a) return fmt::format("loader tma: bulk tensor copies need sm_90a (arch is {})", to_string(v.arch));
  if (is_wgmma(t.mma)) return fmt::format("loader tma: decode uses mma.sync, not {}", to_string(t.mma));
  // A tile must be whole pages or part of one page for every page size 16..256, so that
  // one box of min(page, block_n) rows per page chunk covers it; and a box has at most
  // 256 rows.
  if (t.block_n > 256 || (t.block_n & (t.block_n - 1)) != 0) {
    return fmt::format("loader tma: block_n {} not a power of two up to 256 (a tile is whole pages or part of "
                       "one, and one TMA box holds at most 256 rows)",
                       t.block_n);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> why_illegal(const Variant& v) {
  const Tile& t = v.tile;
  const int d = v.head_dim;
  if (t.loader == Loader::tma)
    if (auto why = why_illegal_tma(v)) return why;
  if (is_wgmma(t.mma)) return v.op == Op::backward ? why_illegal_backward_wgmma(v) : why_illegal_wgmma(v);
  if (v.op == Op::backward) return why_illegal_backward(v);

  // ---- axes every template shares ---------------------------------------------------
  if (d != 64 && d != 128) {
    return fmt::format("head_dim {}: no template for head_dim {} yet (templates cover 64 and 128)", d, d);
  }
  if (t.warps != 1 && t.warps != 2 && t.warps != 4 && t.warps != 8) {
    return fmt::format("warps {} not in {{1, 2, 4, 8}}", t.warps);
  }
  if (t.stages < 1 || t.stages > 8) {
    return fmt::format("stages {} not in 1..8 (cp.async ring depth)", t.stages);
  }
  if (t.block_m < 1) return fmt::format("block_m {} must be positive", t.block_m);
  if (t.block_n < 16 || t.block_n % 16 != 0) {
    return fmt::format("block_n {} not a positive multiple of 16 (the k16 step of the P.V MMA)", t.block_n);
  }

  // One m16n8k16 MMA tile has 16 rows. Softmax fills them with 16 q rows; the Parallax
  // families put 8 q rows in rows 0..7 and their probes r in rows 8..15, so one tile
  // serves 8 logical rows (e.g. block_m 16 = 1 m-tile for softmax, 2 for parallax).
  const int rpt = rows_per_tile(v.family);

  if (v.op == Op::decode) {
    // Decode: the CTA's block_m rows share every K/V tile and the warps split its keys.
    // Each warp needs whole k16 steps: block_n 64 / warps 4 = 16 keys per warp (ok);
    // block_n 64 / warps 8 = 8 keys (not a k16 step, rejected).
    if (t.split_kv < 0) return fmt::format("split_kv {} must be >= 0 (0 = auto)", t.split_kv);
    if (t.block_n % (16 * t.warps) != 0) {
      return fmt::format("decode: block_n {} not a multiple of 16 x warps {} = {} (each warp takes whole "
                         "k16 steps of the tile's keys)",
                         t.block_n, t.warps, 16 * t.warps);
    }
    if (t.block_m % rpt != 0) {
      return fmt::format("decode: block_m {} not a multiple of {} rows per m16 tile ({})", t.block_m, rpt,
                         family_note(v.family));
    }
    if (t.block_m > 64) return fmt::format("decode: block_m {} exceeds 64", t.block_m);
    // Every warp holds the whole output tile for its keys (merged across warps at the end):
    // an m16 x d accumulator is 16*d/32 = d/2 floats per thread per m-tile.
    //   parallax, block_m 16, d 128: 2 m-tiles x 64 = 128 floats (ok, the budget)
    //   parallax, block_m 32, d 128: 4 m-tiles x 64 = 256 floats (rejected)
    //   parallax, block_m 32, d 64 : 4 m-tiles x 32 = 128 floats (ok)
    const int m_tiles = t.block_m / rpt;
    if (m_tiles * d / 2 > 128) {
      return fmt::format("decode: accumulators m_tiles {} x d {} / 2 = {} floats/thread exceed 128",
                         m_tiles, d, m_tiles * d / 2);
    }
    // Scores: each warp's block_n/warps keys for every m-tile, 16*keys/32 = keys/2 floats.
    //   parallax, block_m 16, block_n 128, warps 4: 2 x 32 / 2 = 32 floats (ok)
    //   parallax, block_m 64, block_n 256, warps 2: 8 x 128 / 2 = 512 floats (rejected)
    const int keys_per_warp = t.block_n / t.warps;
    if (m_tiles * keys_per_warp / 2 > 64) {
      return fmt::format("decode: scores m_tiles {} x (block_n {} / warps {}) / 2 = {} floats/thread exceed 64",
                         m_tiles, t.block_n, t.warps, m_tiles * keys_per_warp / 2);
    }
    if (m_tiles * d / 2 + m_tiles * keys_per_warp / 2 > kMaxStateFloats) {
      return fmt::format("decode: accumulators {} + scores {} = {} floats/thread exceed {} (spills)", m_tiles * d / 2,
                         m_tiles * keys_per_warp / 2, m_tiles * d / 2 + m_tiles * keys_per_warp / 2, kMaxStateFloats);
    }
  } else {
    // Prefill: the warps split the rows, every warp reads every key of the tile.
    //   softmax, block_m 64, warps 4: 64 % (4 x 16) = 0 (ok, 1 m-tile per warp)
    //   softmax, block_m 64, warps 8: 64 % (8 x 16) = 64 (rejected)
    //   parallax, block_m 64, warps 8: 64 % (8 x 8) = 0 (ok, 1 m-tile per warp)
    if (t.split_kv != 0 && t.split_kv != 1) {
      return fmt::format("prefill: split_kv {} must be 1 or auto (prefill does not split the keys)", t.split_kv);
    }
    if (t.block_m % (t.warps * rpt) != 0) {
      return fmt::format("prefill: block_m {} not a multiple of warps {} x {} rows per m16 tile ({}) = {}",
                         t.block_m, t.warps, rpt, family_note(v.family), t.warps * rpt);
    }
    // Per warp: m_tiles_per_warp accumulators of d/2 floats and scores of block_n/2 floats.
    //   parallax, block_m 128, warps 4, d 128: 4 x 128 / 2 = 256 floats (rejected)
    //   parallax, block_m 128, warps 8, d 128: 2 x 128 / 2 = 128 floats (ok);
    //     with block_n 64: 2 x 64 / 2 = 64 score floats (ok), block_n 128: 128 (rejected)
    const int mt = t.block_m / t.warps / rpt;
    if (mt * d / 2 > 128) {
      return fmt::format("prefill: accumulators m_tiles_per_warp {} x d {} / 2 = {} floats/thread exceed 128",
                         mt, d, mt * d / 2);
    }
    if (mt * t.block_n / 2 > 64) {
      return fmt::format("prefill: scores m_tiles_per_warp {} x block_n {} / 2 = {} floats/thread exceed 64",
                         mt, t.block_n, mt * t.block_n / 2);
    }
    // Together they must leave room for the fragments and addresses: ptxas spills past
    // 160 (measured: 2 m-tiles x d 128 = 128 + 2 x 64 / 2 = 64 -> 192 spills 100+ bytes).
    if (mt * d / 2 + mt * t.block_n / 2 > kMaxStateFloats) {
      return fmt::format("prefill: accumulators {} + scores {} = {} floats/thread exceed {} (spills)", mt * d / 2,
                         mt * t.block_n / 2, mt * d / 2 + mt * t.block_n / 2, kMaxStateFloats);
    }
  }

  // Shared memory (smem_bytes: Q tiles + the K/V ring, or the decode merge buffer):
  //   ring stages 2 x block_n 128 x d 128 x 2 x 2 B = 131072 B (ok on both)
  //   ring stages 3 x block_n 128 x d 128 x 2 x 2 B = 196608 B (sm_90a only: > 166912)
  //   ring stages 4 x block_n 128 x d 128 x 2 x 2 B = 262144 B (neither: > 232448)
  const std::int64_t smem = smem_bytes(v);
  const std::int64_t limit = smem_limit(v.arch);
  if (smem > limit) {
    return fmt::format("smem {} B (K/V ring: stages {} x block_n {} x d {} x K+V x 2 B = {} B, plus Q tiles"
                       "{}) exceeds {}'s {} B", smem, t.stages, t.block_n, d, ring_bytes(v),
                       v.op == Op::decode ? " or the warp merge buffer" : "", to_string(v.arch), limit);
  }
  return std::nullopt;
}

}  // namespace plx
