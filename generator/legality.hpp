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

// The K/V ring: stages x block_n x head_dim x (K and V) x 2 bytes (bf16/fp16).
constexpr std::int64_t smem_bytes(const Variant& v) {
  return std::int64_t{v.tile.stages} * v.tile.block_n * v.head_dim * 2 * 2;
}

// nullopt when the templates support v; else one line naming the rule and the numbers,
// e.g. "smem 262144 B (stages 4 x block_n 128 x d 128 x K+V x 2 B) exceeds sm_80's 166912 B".
std::optional<std::string> why_illegal(const Variant& v);

}  // namespace plx
