// AttentionArgs -> which variant, which grid, which parameters. Pure host code: no driver
// calls, so the CLI and the tests use it without a GPU.
#pragma once
#include <cstddef>

#include "generator/variant.hpp"
#include "parallax/parallax.hpp"
#include "plx/params.cuh"
#include "runtime/driver.hpp"

namespace plx {

// Throws UnsupportedError naming the field, its value and what is allowed. Pointers
// (non-null, 16-byte aligned) are checked only when `pointers` is set.
void validate(const AttentionArgs& a, bool pointers = true);
// Throws UnsupportedError when variant v cannot serve a (family, dtype, head_dim, mask).
void check_fits(const Variant& v, const AttentionArgs& a);

// The model's choice (autotune/heuristics.hpp) for validated arguments on `arch`.
Variant default_variant(const AttentionArgs& a, Arch arch);

struct LaunchPlan {
  cu::Dim3 grid, block;
  unsigned smem_bytes = 0;
  int splits = 1;                  // decode KV splits; > 1 needs the workspace + merge
  std::size_t ws_o_floats = 0;     // AttnParams::ws_o size
  std::size_t ws_stats_floats = 0; // AttnParams::ws_stats size
  AttnParams params{};             // everything but ws_o / ws_stats
};

int decode_splits_for(const Variant& v, const AttentionArgs& a, int sm_count);
// persistent_prefill false: a wgmma prefill gets one CTA per work item instead of one
// persistent CTA per SM (the engine's PLX_PREFILL_GRID=items, kept to measure the two).
LaunchPlan plan_launch(const Variant& v, const AttentionArgs& a, int sm_count, bool persistent_prefill = true);

}  // namespace plx
