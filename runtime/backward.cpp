#include "runtime/backward.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

#include "generator/legality.hpp"
#include "runtime/launch.hpp"

namespace plx {

namespace {
[[noreturn]] void bad(const std::string& what) { throw UnsupportedError("attention_backward arguments: " + what); }

void check_pointer(const void* p, const char* name) {
  if (!p) bad(fmt::format("{} is null", name));
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) bad(fmt::format("{} = {} is not 16-byte aligned", name, p));
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }
}  // namespace

void validate_backward(const AttentionArgs& a, const BackwardArgs& g, bool pointers) {
  validate(a, /*pointers=*/false);
  if (a.block_table || a.page_size || a.max_pages)
    bad("paged K/V (block_table) has no backward: pass contiguous k and v");
  // Varlen batches (cu_seqlens) need nothing more than the forward's checks (validate: both
  // or neither, int32 alignment, no paged cache): the gradients are packed like their inputs.
  if (!pointers) return;
  const bool probe = has_probe(a.family);
  check_pointer(a.q, "q");
  if (probe) check_pointer(a.r, "r");
  check_pointer(a.k, "k");
  check_pointer(a.v, "v");
  check_pointer(g.dout, "dout");
  check_pointer(g.o, "o");
  check_pointer(g.stats, "stats (the forward's AttentionArgs::stats)");
  if (a.family == Family::parallax) check_pointer(g.barv, "barv (the forward's AttentionArgs::barv)");
  check_pointer(g.dq, "dq");
  if (probe) check_pointer(g.dr, "dr");
  check_pointer(g.dk, "dk");
  check_pointer(g.dv, "dv");
}

void check_fits_backward(const Variant& v, const AttentionArgs& a) {
  if (v.op != Op::backward)
    throw UnsupportedError(fmt::format("variant {} is a {} kernel, not a backward one (plx_backward_...)", v.name(),
                                       to_string(v.op)));
  auto mismatch = [&](const char* field, auto want, auto got) {
    throw UnsupportedError(fmt::format("variant {} cannot serve these arguments: {} is {} but the arguments need {}",
                                       v.name(), field, got, want));
  };
  if (v.family != a.family) mismatch("family", to_string(a.family), to_string(v.family));
  if (v.dtype != a.dtype) mismatch("dtype", to_string(a.dtype), to_string(v.dtype));
  if (v.head_dim != a.head_dim) mismatch("head_dim", a.head_dim, v.head_dim);
  if (v.causal != a.causal) mismatch("causal", a.causal, v.causal);
  if (v.window != (a.window_left >= 0)) mismatch("window", a.window_left >= 0, v.window);
  if (auto why = why_illegal(v)) throw UnsupportedError(fmt::format("variant {} is illegal: {}", v.name(), *why));
}

Variant default_backward_variant(const AttentionArgs& a, Arch arch) {
  Variant v;
  v.op = Op::backward;
  v.family = a.family;
  v.dtype = a.dtype;
  v.head_dim = a.head_dim;
  v.causal = a.causal;
  v.window = a.window_left >= 0;
  v.arch = arch;
  v.tile.block_m = 64;
  v.tile.warps = 4;
  v.tile.block_n = a.head_dim == 64 ? 64 : 32;
  v.tile.stages = 2;
  v.tile.split_kv = 1;
  return v;
}

Variant wgmma_backward_variant(const AttentionArgs& a) {
  Variant v = default_backward_variant(a, Arch::sm90a);
  v.tile.block_m = 128;
  v.tile.warps = 12;
  v.tile.stages = 4;
  // Measured on the H200, training step bf16 causal (docs/PERFORMANCE.md, 2026-11-29 runs
  // 21-23), backward ms: d 128 parallax 1 x 16384: stages 2 / 3 / 4 = 13.4 / 13.0 / 13.0
  // before and 12.1 / 11.8 at stages 3 / 4 after the uniform descriptors; softmax block_n
  // 32 plain / pipelined 7.43 / 6.99. d 64 parallax 2 x 8192 x 32 heads: block_n 32 plain / pipelined
  // 7.48 / 7.09, block_n 64 plain / pipelined 6.16 / 7.32, three consumers 6.72 (mma.sync
  // 11.67). block_n 64 at d 128 does not fit the registers (legality).
  // Softmax d 128 (two score tiles) affords block_n 64 without a window (legality: it spills
  // with one); `plx tune` (run 26) measured it 1.19-1.20x faster than the pipelined block_n
  // 32 loop at 1024-16384 keys.
  const bool wide = a.head_dim == 64 || (a.family == Family::softmax && a.window_left < 0);
  v.tile.block_n = wide ? 64 : 32;
  v.tile.mma = Mma::wgmma;
  return v;
}

BackwardPlan plan_backward(const Variant& v, const AttentionArgs& a, const BackwardArgs& g) {
  BackwardPlan bp;
  // The forward's strides, shapes and scale; the 65535 limits on heads_q and batch.
  AttentionArgs fwd = a;
  fwd.stats = nullptr;
  fwd.barv = nullptr;
  BwdParams& p = bp.params;
  // sm_count 0: the plain (row blocks, heads_q, batch) grid, whose checks give the 65535
  // limits; a wgmma variant would otherwise take the persistent prefill grid, whose
  // AttnParams::persistent the backward kernels do not read (cleared below regardless).
  p.f = plan_launch(v, fwd, 0).params;
  p.f.persistent = 0;
  p.f.o = const_cast<void*>(g.o);  // read only: the preprocess takes t = dO.o from it
  p.dout = g.dout;
  p.barv = a.family == Family::parallax ? g.barv : nullptr;
  p.stats = g.stats;
  p.rows = nullptr;
  p.dq = g.dq;
  p.dr = has_probe(a.family) ? g.dr : nullptr;
  p.dk = g.dk;
  p.dv = g.dv;
  p.scale = a.qk_scale > 0 ? a.qk_scale : static_cast<float>(1.0 / std::sqrt(double(a.head_dim)));
  // Varlen: q_len / kv_len are the longest sequence, so the grid covers every sequence's
  // tiles; a CTA past its own sequence's end exits at once (backward.cuh, backward_sm90.cuh).
  p.q_tiles = ceil_div(a.q_len, v.tile.block_m);
  p.kv_tiles = ceil_div(a.kv_len, v.tile.block_m);
  p.kv_ctas = p.kv_tiles * a.heads_kv;

  // wgmma-red: the dK/dV CTAs also reduce dQ/dR, so there are no dQ/dR CTAs.
  const bool red = v.tile.mma == Mma::wgmma_red;
  const long long ctas = (long long)p.kv_ctas + (red ? 0LL : (long long)p.q_tiles * a.heads_q);
  if (ctas > INT32_MAX)
    throw UnsupportedError(fmt::format("attention_backward arguments: {} CTAs per batch exceed a grid's x limit", ctas));
  bp.grid = {unsigned(ctas), unsigned(a.batch), 1};
  // mma.sync: warps x 32; wgmma (backward_sm90.cuh): 128 x (consumer warpgroups + 1
  // producer), which legality pins to warps x 32 as well; block_m is 64 x consumers there.
  bp.block = {unsigned(v.tile.warps * 32), 1, 1};
  bp.smem_bytes = static_cast<unsigned>(smem_bytes(v));

  // The row terms keep the forward's stats layout, padded to q_len also for varlen batches.
  const long long rows = (long long)a.batch * a.heads_q * a.q_len;
  const int rows_per_block = 128 / (a.head_dim / 8);  // BwdPreConfig
  bp.pre_grid = {unsigned((rows + rows_per_block - 1) / rows_per_block), 1, 1};
  bp.pre_block = {128, 1, 1};
  bp.rows_floats = std::size_t(rows) * 4;
  if (red) {
    bp.accum_floats = std::size_t(rows) * 2 * a.head_dim;
    bp.post_grid = bp.pre_grid;  // the same row walk (backward_pre.cuh)
  }
  return bp;
}

}  // namespace plx
