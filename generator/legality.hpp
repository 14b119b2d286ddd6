// Which Variants the device templates can build. One pure function, so the expander, the
// tuner and the engine (for a variant named on the command line) all agree.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "generator/variant.hpp"

namespace plx {

// Opt-in dynamic shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin).
inline constexpr std::int64_t kSmemLimitSm80 = 166912;   // A100: 163 KiB
inline constexpr std::int64_t kSmemLimitSm90a = 232448;  // H100/H200: 227 KiB

constexpr std::int64_t smem_limit(Arch a) { return a == Arch::sm80 ? kSmemLimitSm80 : kSmemLimitSm90a; }

// q rows one m16 MMA tile holds: 8 q rows + their 8 probe rows r for Parallax families,
// 16 q rows for softmax.
constexpr int rows_per_tile(Family f) { return has_probe(f) ? 8 : 16; }

// Dynamic shared memory of a variant, mirroring DecodeConfig/PrefillConfig::kSmemBytes in
// templates/plx (the kernels check it against %dynamic_smem_size):
//   Q tiles   m_tiles x 16 rows x d x 2 B        (m_tiles = block_m / rows_per_tile)
//   K/V ring  stages x block_n x d x (K and V) x 2 B
//   decode reuses the ring for the warp merge: warps x m_tiles x 16 x (d + 8) x 4 B of O
//   plus warps x m_tiles x 16 x 3 x 4 B of (m, d1, d2), and needs the larger of the two.
// e.g. decode parallax d128 block_m 16 block_n 64 warps 4 stages 2:
//   Q 2 x 16 x 128 x 2 = 8192; ring 2 x 64 x 128 x 4 = 65536; merge 4 x 2 x 16 x 136 x 4
//   + 4 x 2 x 16 x 12 = 71168; total 8192 + 71168 = 79360 B.
//   With loader tma: 1024 alignment slack + 79360 + 2 stages x 2 mbarriers x 8 B = 80416 B.
constexpr std::int64_t ring_bytes(const Variant& v) {
  return std::int64_t{v.tile.stages} * v.tile.block_n * v.head_dim * 2 * 2;
}

// The sm_90a wgmma prefill (templates/plx/prefill_sm90.cuh): one producer warpgroup plus
// consumer warpgroups of 32 queries with their 32 probes (Parallax families) or 64 softmax
// queries, each an m64 wgmma tile.
constexpr int wgmma_rows_per_warpgroup(Family f) { return has_probe(f) ? 32 : 64; }
constexpr int wgmma_consumers(const Variant& v) { return v.tile.block_m / wgmma_rows_per_warpgroup(v.family); }
// Registers per consumer thread after setmaxnreg (PrefillSm90Config): 1 consumer 255 (no
// reallocation), 2 consumers 232, 3 consumers 160.
constexpr int wgmma_consumer_registers(int consumers) { return consumers == 1 ? 255 : consumers == 2 ? 232 : 152; }

// Shared memory of a wgmma prefill, mirroring PrefillSm90Config::kSmemBytes:
//   1024 B of slack to align the base to the 128-byte swizzle period
//   + Q tiles   consumers x 64 rows x d x 2 B
//   + K/V ring  stages x block_n x d x (K and V) x 2 B
//   + 512 B     the all-ones block of the row-sum wgmma (sm90::kOnesBytes)
//   + mbarriers stages x 3 x 8 B (full K, full V, empty)
//   + 48 B      the work-item decoder (ItemDecode: three FastDivs)
// e.g. parallax d128 block_m 64 (2 consumers) block_n 128 stages 2:
//   1024 + 2 x 16384 + 2 x 128 x 128 x 4 + 512 + 48 + 48 = 1024 + 32768 + 131072 + 608 = 165472 B.
constexpr std::int64_t wgmma_smem_bytes(const Variant& v) {
  return 1024 + std::int64_t{wgmma_consumers(v)} * 64 * v.head_dim * 2 + ring_bytes(v) + 512 +
         std::int64_t{v.tile.stages} * 3 * 8 + 48;
}

// Shared memory of a backward kernel, mirroring BackwardConfig::kSmemBytes (backward.cuh):
// the larger of its two CTA roles, with qs = 3 tiles (q, r, dO) for the probe families
// and 2 (q, dO) for softmax:
//   dQ/dR : qs x block_m x d x 2 B own rows + stages x (K + V) x block_n x d x 2 B
//   dK/dV : 2 x block_m x d x 2 B own K, V + stages x (qs x block_n x d x 2 B + block_n x 16 B
//           of row terms)
// e.g. parallax d128 block_m 64 block_n 32 stages 2: dQ/dR 3 x 16384 + 2 x 2 x 8192 = 81920;
//   dK/dV 2 x 16384 + 2 x (3 x 8192 + 512) = 82944 B.
constexpr std::int64_t backward_smem_bytes(const Variant& v) {
  const std::int64_t qs = has_probe(v.family) ? 3 : 2, d = v.head_dim;
  const std::int64_t own = std::int64_t{v.tile.block_m} * d * 2, part = std::int64_t{v.tile.block_n} * d * 2;
  const std::int64_t dq = qs * own + v.tile.stages * 2 * part;
  const std::int64_t dkv = 2 * own + v.tile.stages * (qs * part + std::int64_t{v.tile.block_n} * 16);
  return dq > dkv ? dq : dkv;
}

// Shared memory of the sm_90a wgmma backward (templates/plx/backward_sm90.cuh,
// BackwardSm90Config::kSmemBytes): 1024 B alignment slack + the larger role body +
// stages x 2 mbarriers (full, empty) of 8 B, with own = block_m x d x 2 B, part = block_n x
// d x 2 B and qs as above:
//   dQ/dR : qs x own + stages x (K + V) x part
//   dK/dV : 2 x own + stages x (qs x part + block_n x 16 B of row terms)
// e.g. parallax d128 block_m 128 block_n 32 stages 2: dQ/dR 3 x 32768 + 2 x 2 x 8192 = 131072;
//   dK/dV 2 x 32768 + 2 x (3 x 8192 + 512) = 115712; 1024 + 131072 + 32 = 132128 B.
// mma wgmma-red (dK/dV CTAs only, block_m 128, block_n 32, probe families) adds to the
// dK/dV body two [c GL^T | GU^T] buffers of block_m x 2 block_n x 2 B and, per consumer, an
// fp32 dQ/dR staging tile of 2 block_n rows x 64 floats:
//   parallax d128 stages 3: 2 x 32768 + 3 x (3 x 8192 + 512) + 2 x 16384 + 2 x 16384
//   = 206336; 1024 + 206336 + 48 = 207408 B.
constexpr std::int64_t backward_wgmma_smem_bytes(const Variant& v) {
  const std::int64_t qs = has_probe(v.family) ? 3 : 2, d = v.head_dim;
  const std::int64_t own = std::int64_t{v.tile.block_m} * d * 2, part = std::int64_t{v.tile.block_n} * d * 2;
  const std::int64_t dq = qs * own + v.tile.stages * 2 * part;
  std::int64_t dkv = 2 * own + v.tile.stages * (qs * part + std::int64_t{v.tile.block_n} * 16);
  if (v.tile.mma == Mma::wgmma_red) {
    const std::int64_t nq = 2 * std::int64_t{v.tile.block_n}, consumers = v.tile.block_m / 64;
    return 1024 + dkv + 2 * std::int64_t{v.tile.block_m} * nq * 2 + consumers * nq * 64 * 4 +
           std::int64_t{v.tile.stages} * 2 * 8;
  }
  return 1024 + (dq > dkv ? dq : dkv) + std::int64_t{v.tile.stages} * 2 * 8;
}

// why_illegal for op backward (generator/legality_backward.cpp): the mma.sync kernel and
// the sm_90a wgmma one.
std::optional<std::string> why_illegal_backward(const Variant& v);
std::optional<std::string> why_illegal_backward_wgmma(const Variant& v);

constexpr std::int64_t smem_bytes(const Variant& v) {
  if (is_wgmma(v.tile.mma)) return v.op == Op::backward ? backward_wgmma_smem_bytes(v) : wgmma_smem_bytes(v);
  if (v.op == Op::backward) return backward_smem_bytes(v);
  const std::int64_t m_tiles = v.tile.block_m / rows_per_tile(v.family);
  const std::int64_t q = m_tiles * 16 * v.head_dim * 2;
  std::int64_t body = ring_bytes(v);
  if (v.op == Op::decode) {
    const std::int64_t merge = std::int64_t{v.tile.warps} * m_tiles * 16 * ((v.head_dim + 8) * 4 + 12);
    body = body > merge ? body : merge;
    // The TMA ring (kv_tma.cuh): 1024 B to align the base to the 128-byte swizzle period,
    // and a full and an empty mbarrier of 8 B per stage after the ring / merge buffer.
    if (v.tile.loader == Loader::tma) return 1024 + q + body + std::int64_t{v.tile.stages} * 2 * 8;
  }
  return q + body;
}

// The block size v is built and launched with: the tile's warps, plus for a TMA decode
// kernel its producer warp (kv_tma.cuh), which issues the copies and does no math.
constexpr int block_threads(const Variant& v) {
  return v.tile.warps * 32 + (v.op == Op::decode && v.tile.loader == Loader::tma ? 32 : 0);
}

// nullopt when the templates support v; else one line naming the rule and the numbers,
// e.g. "smem 262144 B (stages 4 x block_n 128 x d 128 x K+V x 2 B) exceeds sm_80's 166912 B".
std::optional<std::string> why_illegal(const Variant& v);

}  // namespace plx
