// Which backward Variants templates/plx/backward.cuh (BackwardConfig) and backward_sm90.cuh
// (BackwardSm90Config, mma wgmma) build, with the
// reason for each refusal. The numbers are per thread of one warp, which owns 16 rows.
#include <fmt/format.h>

#include "generator/legality.hpp"

namespace plx {

namespace {
// Accumulator + score floats per thread that compile without spills (ptxas, 255
// registers), measured with NVRTC 13 for sm_80 and sm_90a: parallax d 128 block_n 32 is
// 128 + 48 = 176 (no spill); d 128 block_n 64 is 128 + 96 = 224 (spills).
constexpr int kMaxBackwardFloats = 176;
}  // namespace

std::optional<std::string> why_illegal_backward(const Variant& v) {
  const Tile& t = v.tile;
  const int d = v.head_dim;
  if (d != 64 && d != 128) {
    return fmt::format("head_dim {}: no template for head_dim {} yet (templates cover 64 and 128)", d, d);
  }
  if (t.warps != 1 && t.warps != 2 && t.warps != 4 && t.warps != 8) {
    return fmt::format("warps {} not in {{1, 2, 4, 8}}", t.warps);
  }
  if (t.stages < 1 || t.stages > 8) return fmt::format("stages {} not in 1..8 (cp.async ring depth)", t.stages);
  if (t.split_kv != 0 && t.split_kv != 1) {
    return fmt::format("backward: split_kv {} must be 1 or auto (the backward does not split the keys)", t.split_kv);
  }
  // Each warp owns one m16 tile: 16 queries (dQ/dR CTAs) or 16 keys (dK/dV CTAs).
  //   warps 4 -> block_m 64; warps 8 -> block_m 128; block_m 32 with warps 4 is refused.
  if (t.block_m != 16 * t.warps) {
    return fmt::format("backward: block_m {} must be 16 x warps {} = {} (each warp owns 16 queries or 16 keys)",
                       t.block_m, t.warps, 16 * t.warps);
  }
  // block_n partners per streamed tile: whole k16 steps of the dQ/dK products, and one
  // thread copies each streamed query's 16-byte row terms.
  if (t.block_n < 16 || t.block_n % 16 != 0 || t.block_n > 32 * t.warps) {
    return fmt::format("backward: block_n {} not a multiple of 16 in 16..{} (32 x warps {}: one thread per streamed "
                       "row's terms)",
                       t.block_n, 32 * t.warps, t.warps);
  }
  // Registers: two d-wide accumulators (dQ + dR, or dK + dV) = 2 x d / 2 floats, and the
  // three score tiles S1, S2, A (two for softmax) of block_n / 2 floats each.
  //   parallax d 128 block_n 32: 128 + 3 x 16 = 176 (ok)
  //   parallax d 128 block_n 64: 128 + 3 x 32 = 224 (rejected: spills)
  //   parallax d 64  block_n 64: 64 + 3 x 32 = 160 (ok)
  //   softmax  d 128 block_n 48: 128 + 2 x 24 = 176 (ok)
  const int scores = (has_probe(v.family) ? 3 : 2) * t.block_n / 2;
  if (d + scores > kMaxBackwardFloats) {
    return fmt::format("backward: accumulators {} + scores {} ({} tiles x block_n {} / 2) = {} floats/thread exceed {} "
                       "(spills)",
                       d, scores, has_probe(v.family) ? 3 : 2, t.block_n, d + scores, kMaxBackwardFloats);
  }
  const std::int64_t smem = smem_bytes(v);
  const std::int64_t limit = smem_limit(v.arch);
  if (smem > limit) {
    return fmt::format("backward: smem {} B (the larger of dQ/dR's and dK/dV's own tiles + stages {} x streamed tiles "
                       "of block_n {} x d {}) exceeds {}'s {} B",
                       smem, t.stages, t.block_n, d, to_string(v.arch), limit);
  }
  return std::nullopt;
}

}  // namespace plx

namespace plx {

// The sm_90a wgmma backward (templates/plx/backward_sm90.cuh, BackwardSm90Config): a producer
// warpgroup plus consumer warpgroups of 64 own rows (queries or keys) each.
std::optional<std::string> why_illegal_backward_wgmma(const Variant& v) {
  const Tile& t = v.tile;
  const int d = v.head_dim;
  const std::string_view mma = to_string(t.mma);
  if (v.arch != Arch::sm90a) return fmt::format("mma {}: wgmma needs sm_90a (arch is {})", mma, to_string(v.arch));
  // Two consumer loops (backward_sm90.cuh, bwd_consume): plain and pipelined; the two
  // consumers are not ping-ponged.
  if (t.mma == Mma::wgmma_pipe_pp) {
    return fmt::format("backward: mma {} not implemented (the pipelined loop takes no ping-pong turns)", mma);
  }
  // The reduced form stages [c GL^T | GU^T] as one n64 B operand (2 x block_n 32 columns =
  // one 128-byte swizzle line) and each of the two consumers reduces one 64-wide half of
  // dQ^T/dR^T = K^T [c GL^T | GU^T]: so the probe families, d 128, block_m 128, block_n 32.
  if (t.mma == Mma::wgmma_red &&
      (!has_probe(v.family) || d != 128 || t.block_m != 128 || t.block_n != 32)) {
    return fmt::format("mma {}: the reduced dQ/dR form is built for the probe families at head_dim 128, block_m 128, "
                       "block_n 32 (got {} d {} block_m {} block_n {})",
                       mma, to_string(v.family), d, t.block_m, t.block_n);
  }
  if (d != 64 && d != 128) {
    return fmt::format("head_dim {}: no template for head_dim {} yet (templates cover 64 and 128)", d, d);
  }
  if (t.split_kv != 0 && t.split_kv != 1) {
    return fmt::format("backward: split_kv {} must be 1 or auto (the backward does not split the keys)", t.split_kv);
  }
  // Each consumer warpgroup owns one m64 wgmma tile of rows: block_m 128 = 2 consumers.
  if (t.block_m % 64 != 0 || t.block_m / 64 < 1 || t.block_m / 64 > 3) {
    return fmt::format("mma {}: block_m {} is not 1, 2 or 3 consumer warpgroups of 64 rows (queries or keys)", mma,
                       t.block_m);
  }
  const int consumers = t.block_m / 64;
  if (t.warps != 4 * (consumers + 1)) {
    return fmt::format("mma {}: warps {} must be 4 x ({} consumer warpgroups + 1 producer) = {}", mma, t.warps,
                       consumers, 4 * (consumers + 1));
  }
  if (is_pingpong(t.mma) && consumers < 2) {
    return fmt::format("mma {}: ping-pong needs a second consumer warpgroup to hand turns to (block_m {} is one)", mma,
                       t.block_m);
  }
  // block_n partners per streamed tile: the N of the score wgmmas (wgmma.cuh: n32, n64)
  // and the K of the accumulation ones (whole k16 steps). n128 passes the register rule
  // below for softmax d 64 (64 + 2 x 64 + 40 = 232) but spills (measured, NVRTC 13: 276 B
  // with one consumer, 844 B with two), so it is refused outright.
  if (t.block_n != 32 && t.block_n != 64) {
    return fmt::format("mma {}: block_n {} not in {{32, 64}} (the wgmma N of the score tiles; 128 spills)", mma,
                       t.block_n);
  }
  if (t.stages < 2 || t.stages > 4) {
    return fmt::format("mma {}: stages {} not in 2..4 (one ring slot filling while another is consumed)", mma,
                       t.stages);
  }
  // Per consumer thread: dQ + dR (or dK + dV) = 2 x 64 x d / 128 = d fp32 accumulators, the
  // score tiles S1, S2, A (two for softmax) of block_n / 2 each, all live at grad_terms,
  // and ~40 for descriptors, row terms, masks and addresses:
  //   parallax d 128 block_n 32: 128 + 48 + 40 = 216 <= 232 (2 consumers)
  //   parallax d 128 block_n 64: 128 + 96 + 40 = 264 > 232 (refused)
  //   parallax d 64  block_n 64: 64 + 96 + 40 = 200 <= 232
  const int tiles = has_probe(v.family) ? 3 : 2;
  const int need = d + tiles * t.block_n / 2 + 40;
  const int have = wgmma_consumer_registers(consumers);
  if (need > have) {
    return fmt::format("mma {}: backward accumulators {} + scores {} x block_n {} / 2 + 40 = {} registers per consumer "
                       "thread exceed the {} that {} consumer warpgroups get",
                       mma, d, tiles, t.block_n, need, have, consumers);
  }
  // Spills the register rule above does not see, measured at head_dim 128 (NVRTC 13,
  // ptxas sm_90a, 2026-11-29, bytes per thread). The pipelined loop keeps the previous
  // tile's packed operands and the accumulators pinned while the next scores are in
  // flight: the probe families at block_n 32 spill 868 (704 with only the dQ/dR role
  // pipelined), softmax at block_n 64 228, softmax with a window at block_n 32 88. The
  // plain loop: softmax with a window at block_n 64 spills 28. Every d 64 variant (block_n
  // 32 and 64, both loops) and the rest at d 128 spill nothing.
  if (d == 128) {
    const bool pipe = is_pipelined(t.mma);
    int spill = 0;
    if (pipe && has_probe(v.family)) spill = 868;
    else if (pipe && t.block_n > 32) spill = 228;
    else if (pipe && v.window) spill = 88;
    else if (t.block_n > 32 && v.window) spill = 28;
    if (spill > 0) {
      return fmt::format("mma {}: the {} backward loop at head_dim 128 spills for the {} family at block_n {}{} "
                         "({} B per thread measured)",
                         mma, pipe ? "pipelined" : "plain", to_string(v.family), t.block_n, v.window ? " with a window" : "",
                         spill);
    }
  }
  const std::int64_t smem = smem_bytes(v);
  if (smem > kSmemLimitSm90a) {
    return fmt::format("backward: smem {} B (1024 align + the larger of dQ/dR's and dK/dV's own tiles of block_m {} + "
                       "stages {} x streamed tiles of block_n {} x d {} + barriers) exceeds sm_90a's {} B",
                       smem, t.block_m, t.stages, t.block_n, d, kSmemLimitSm90a);
  }
  return std::nullopt;
}

}  // namespace plx
