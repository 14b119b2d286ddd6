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
constexpr std::int64_t ring_bytes(const Variant& v) {
  return std::int64_t{v.tile.stages} * v.tile.block_n * v.head_dim * 2 * 2;
}
constexpr std::int64_t smem_bytes(const Variant& v) {
  const std::int64_t m_tiles = v.tile.block_m / rows_per_tile(v.family);
  const std::int64_t q = m_tiles * 16 * v.head_dim * 2;
  std::int64_t body = ring_bytes(v);
  if (v.op == Op::decode) {
    const std::int64_t merge = std::int64_t{v.tile.warps} * m_tiles * 16 * ((v.head_dim + 8) * 4 + 12);
    body = body > merge ? body : merge;
  }
  return q + body;
}

// nullopt when the templates support v; else one line naming the rule and the numbers,
// e.g. "smem 262144 B (stages 4 x block_n 128 x d 128 x K+V x 2 B) exceeds sm_80's 166912 B".
std::optional<std::string> why_illegal(const Variant& v);

}  // namespace plx
