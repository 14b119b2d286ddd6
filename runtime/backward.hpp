// AttentionArgs + BackwardArgs -> which backward variant, which grids, which parameters.
// Pure host code (no driver calls), like launch.hpp, so it is tested without a GPU.
#pragma once
#include <cstddef>

#include "generator/variant.hpp"
#include "parallax/parallax.hpp"
#include "plx/params_bwd.cuh"
#include "runtime/driver.hpp"

namespace plx {

// Throws UnsupportedError naming the field: the forward's shape rules (launch.hpp's
// validate, including its varlen checks), no paged K/V, and (with `pointers`) every
// pointer the family needs non-null and 16-byte aligned. Varlen batches (cu_seqlens) are
// accepted: dout, o, barv, dq, dr packed like q, dk, dv like k, stats as the forward wrote
// them.
void validate_backward(const AttentionArgs& fwd, const BackwardArgs& g, bool pointers = true);
// Throws UnsupportedError when v is not a backward variant that serves fwd.
void check_fits_backward(const Variant& v, const AttentionArgs& fwd);

// The mma.sync choice (sm_80, and sm_90a under PLX_BACKWARD_MMA=sync): 4 warps (block_m
// 64); block_n 32 at head_dim 128, 64 at head_dim 64 (the largest that legality's register
// budget allows for the probe families); 2 stages.
Variant default_backward_variant(const AttentionArgs& fwd, Arch arch);
// The sm_90a choice (templates/plx/backward_sm90.cuh), what the engine runs on sm_90a
// devices: 2 consumer warpgroups (block_m 128, warps 12), 4 stages, the plain loop;
// block_n 64 at head_dim 64 and for softmax at 128 without a window, else 32
// (measurements in the .cpp). A tuned database winner takes precedence in the engine.
// PLX_BACKWARD_MMA=sync makes the engine run default_backward_variant there instead.
Variant wgmma_backward_variant(const AttentionArgs& fwd);

struct BackwardPlan {
  cu::Dim3 pre_grid, pre_block;  // bwd_pre_kernel: one row per D / 8 threads
  cu::Dim3 grid, block;          // backward_kernel: kv CTAs then q CTAs in x, batch in y
  unsigned smem_bytes = 0;
  std::size_t rows_floats = 0;   // BwdParams::rows: batch x heads_q x q_len x 4
  // mma wgmma-red: BwdParams::accum, 2 x batch x heads_q x q_len x head_dim (dQ then dR),
  // right after the row terms in the same workspace; the post kernel's grid. Else 0.
  std::size_t accum_floats = 0;
  cu::Dim3 post_grid{0, 0, 0};
  BwdParams params{};            // everything but `rows` and `accum`
};

BackwardPlan plan_backward(const Variant& v, const AttentionArgs& fwd, const BackwardArgs& g);

}  // namespace plx
