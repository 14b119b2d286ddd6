#include "runtime/launch.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

#include "autotune/heuristics.hpp"
#include "generator/legality.hpp"

namespace plx {

namespace {
[[noreturn]] void bad(const std::string& what) { throw UnsupportedError("attention arguments: " + what); }

void check_pointer(const void* p, const char* name) {
  if (!p) bad(fmt::format("{} is null", name));
  // cp.async moves 16-byte chunks; every head row is 16-byte aligned iff the base is.
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0)
    bad(fmt::format("{} = {} is not 16-byte aligned", name, p));
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }
}  // namespace

void validate(const AttentionArgs& a, bool pointers) {
  const int f = static_cast<int>(a.family), d = static_cast<int>(a.dtype);
  if (f < 0 || f > 2) bad(fmt::format("family = {} is not softmax (0), parallax (1) or parallax_uncentered (2)", f));
  if (d < 0 || d > 1) bad(fmt::format("dtype = {} is not bf16 (0) or fp16 (1)", d));
  if (a.batch < 1) bad(fmt::format("batch = {} must be >= 1", a.batch));
  if (a.q_len < 1) bad(fmt::format("q_len = {} must be >= 1", a.q_len));
  if (a.kv_len < 1) bad(fmt::format("kv_len = {} must be >= 1", a.kv_len));
  if (a.heads_kv < 1) bad(fmt::format("heads_kv = {} must be >= 1", a.heads_kv));
  if (a.heads_q < 1 || a.heads_q % a.heads_kv != 0)
    bad(fmt::format("heads_q = {} must be a positive multiple of heads_kv = {}", a.heads_q, a.heads_kv));
  if (a.head_dim != 64 && a.head_dim != 128)
    bad(fmt::format("head_dim = {} is not supported (64 or 128)", a.head_dim));
  if (a.window_left == 0 || a.window_left < -1)
    bad(fmt::format("window_left = {} must be -1 (no window) or >= 1 (keys in the window, diagonal included)",
                    a.window_left));
  if (!std::isfinite(a.qk_scale) || a.qk_scale < 0)
    bad(fmt::format("qk_scale = {} must be 0 (1/sqrt(head_dim)) or a positive finite number", a.qk_scale));
  // 32-bit index arithmetic inside the kernels: bound every tensor.
  const double elems = double(a.batch) * std::max(a.q_len, a.kv_len) * std::max(a.heads_q, a.heads_kv) * a.head_dim;
  if (elems >= double(INT64_C(1) << 40)) bad("tensor sizes beyond 2^40 elements");
  if (double(a.batch) * a.heads_q * a.q_len >= double(INT32_MAX) / 2) bad("batch x heads_q x q_len too large");
  if (a.block_table || a.page_size || a.max_pages) {
    const int ps = a.page_size;
    if (ps < 16 || ps > 256 || (ps & (ps - 1)) != 0)
      bad(fmt::format("page_size = {} must be a power of two in 16..256", ps));
    if (a.max_pages < 1 || double(a.max_pages) * ps < a.kv_len)
      bad(fmt::format("max_pages = {} x page_size = {} holds fewer than kv_len = {} keys", a.max_pages, ps,
                      a.kv_len));
    if (pointers && !a.block_table) bad("page_size is set but block_table is null");
  }
  // Varlen (cu_seqlens): the host checks what it can see without reading device memory:
  // both pointers or neither, no paged cache, int32 alignment. The offsets themselves
  // (monotonic, within the tensors, no sequence longer than q_len / kv_len) are the
  // caller's promise: the kernels only treat a decreasing pair as an empty sequence.
  if (a.cu_seqlens_q || a.cu_seqlens_k) {
    if (!a.cu_seqlens_q || !a.cu_seqlens_k)
      bad(fmt::format("cu_seqlens_q = {} and cu_seqlens_k = {}: a varlen batch needs both (or neither)",
                      static_cast<const void*>(a.cu_seqlens_q), static_cast<const void*>(a.cu_seqlens_k)));
    if (a.block_table || a.page_size || a.max_pages)
      bad("cu_seqlens with a paged cache (block_table): varlen batches need contiguous packed k and v");
    for (const int* c : {a.cu_seqlens_q, a.cu_seqlens_k})
      if (reinterpret_cast<std::uintptr_t>(c) % alignof(int) != 0)
        bad(fmt::format("cu_seqlens_{} = {} is not 4-byte aligned (int32 offsets)", c == a.cu_seqlens_q ? 'q' : 'k',
                        static_cast<const void*>(c)));
  }
  if (!pointers) return;
  check_pointer(a.q, "q");
  if (has_probe(a.family)) check_pointer(a.r, "r");
  check_pointer(a.k, "k");
  check_pointer(a.v, "v");
  check_pointer(a.o, "o");
  if (a.stats) {
    check_pointer(a.stats, "stats");
    if (a.family == Family::parallax) check_pointer(a.barv, "barv (the Parallax backward reads it; stats is set)");
  }
}

void check_fits(const Variant& v, const AttentionArgs& a) {
  auto mismatch = [&](const char* field, auto want, auto got) {
    throw UnsupportedError(fmt::format("variant {} cannot serve these arguments: {} is {} but the arguments need {}",
                                       v.name(), field, got, want));
  };
  if (v.op == Op::backward)
    throw UnsupportedError(fmt::format("variant {} is a backward kernel: run it with attention_backward", v.name()));
  if (v.family != a.family) mismatch("family", to_string(a.family), to_string(v.family));
  if (v.dtype != a.dtype) mismatch("dtype", to_string(a.dtype), to_string(v.dtype));
  if (v.head_dim != a.head_dim) mismatch("head_dim", a.head_dim, v.head_dim);
  if (v.causal != a.causal) mismatch("causal", a.causal, v.causal);
  if (v.window != (a.window_left >= 0)) mismatch("window", a.window_left >= 0, v.window);
  if (a.stats && v.op != Op::prefill)
    throw UnsupportedError(fmt::format("variant {} does not write the backward's statistics (stats is set): only "
                                       "prefill kernels do",
                                       v.name()));
  if (a.cu_seqlens_q && v.op != Op::prefill)
    throw UnsupportedError(fmt::format("variant {} cannot read a varlen batch (cu_seqlens is set): only prefill "
                                       "kernels do",
                                       v.name()));
  if (auto why = why_illegal(v)) throw UnsupportedError(fmt::format("variant {} is illegal: {}", v.name(), *why));
}

Variant default_variant(const AttentionArgs& a, Arch arch) {
  Variant v;
  // Only the prefill kernels write the training statistics or read varlen batches, whatever
  // q_len is.
  v.op = a.stats || a.cu_seqlens_q ? Op::prefill : heuristics::choose_op(a.q_len);
  v.family = a.family;
  v.dtype = a.dtype;
  v.head_dim = a.head_dim;
  v.causal = a.causal;
  v.window = a.window_left >= 0;
  v.arch = arch;
  v.tile = heuristics::default_tile(v.op, a.family, a.q_len * (a.heads_q / a.heads_kv), arch == Arch::sm90a,
                                    a.head_dim);
  if (v.op == Op::decode && heuristics::decode_prefers_tma(arch == Arch::sm90a, a.block_table != nullptr, a.page_size,
                                                                 (long long)a.batch * a.heads_kv)) {
    v.tile.loader = Loader::tma;
    v.tile.stages = 4;
  }
  return v;
}

int decode_splits_for(const Variant& v, const AttentionArgs& a, int sm_count) {
  if (v.op != Op::decode) return 1;
  const int group = a.heads_q / a.heads_kv;
  const int row_blocks = ceil_div(group * a.q_len, v.tile.block_m);
  // The longest span any CTA streams (seqused_k only shortens it): a window bounds it.
  int span = a.kv_len;
  if (a.window_left >= 0) span = std::min(span, a.window_left + a.q_len);
  const int n_tiles = ceil_div(span, v.tile.block_n);
  // The last CTA merges in its own shared memory (merge.cuh): block_m x splits stats of
  // 16 B plus 8 B per row must fit in the ring (e.g. block_m 8, d 128, 2 stages: 511).
  const int max_splits = int((ring_bytes(v) - 8 * v.tile.block_m) / (16 * v.tile.block_m));
  // Bytes a CTA keeps in flight: the ring's tiles but the one being consumed. Pages under
  // 64 keys put a block-table read in front of every few rows, and one CTA per SM no longer
  // hides it, so they count half (measured on the H200, page 16, batch 8 x 8192 keys x 8 kv
  // heads: 2 splits 76.9 us, 4 splits 71.5 us, contiguous 68.2 us).
  double inflight = double(v.tile.stages - 1) * double(ring_bytes(v)) / v.tile.stages;
  if (a.block_table && a.page_size < 64) inflight /= 2;
  const int wanted = v.tile.split_kv > 0
                         ? std::min(v.tile.split_kv, std::max(n_tiles, 1))
                         : heuristics::decode_splits(a.batch * a.heads_kv * row_blocks, n_tiles, sm_count, inflight,
                                                     heuristics::ctas_per_sm_by_smem(smem_bytes(v), v.arch));
  return std::max(1, std::min(wanted, max_splits));
}

LaunchPlan plan_launch(const Variant& v, const AttentionArgs& a, int sm_count, bool persistent_prefill) {
  LaunchPlan lp;
  AttnParams& p = lp.params;
  p.q = a.q;
  p.r = has_probe(a.family) ? a.r : a.q;  // softmax kernels never read r
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.seqused_k = a.seqused_k;
  p.stats = a.stats;
  p.barv = a.family == Family::parallax ? a.barv : nullptr;
  p.cu_seqlens_q = a.cu_seqlens_q;
  p.cu_seqlens_k = a.cu_seqlens_k;
  const long long hd = a.head_dim;
  p.q_stride_h = hd;
  p.q_stride_t = hd * a.heads_q;
  p.q_stride_b = p.q_stride_t * a.q_len;
  p.k_stride_h = hd;
  p.k_stride_t = hd * a.heads_kv;
  p.k_stride_b = p.k_stride_t * a.kv_len;
  p.o_stride_h = p.q_stride_h;
  p.o_stride_t = p.q_stride_t;
  p.o_stride_b = p.q_stride_b;
  p.batch = a.batch;
  p.q_len = a.q_len;
  p.kv_len = a.kv_len;
  p.heads_q = a.heads_q;
  p.heads_kv = a.heads_kv;
  p.group = a.heads_q / a.heads_kv;
  p.window = a.window_left;
  const double scale = a.qk_scale > 0 ? a.qk_scale : 1.0 / std::sqrt(double(a.head_dim));
  p.scale_log2 = static_cast<float>(scale * 1.4426950408889634);
  p.block_table = a.block_table;
  p.max_pages = a.max_pages;
  p.page_shift = 0;
  if (a.block_table) {
    while ((1 << p.page_shift) < a.page_size) ++p.page_shift;
    p.k_stride_b = 0;  // pages, not batches, locate keys
  }

  lp.block = {unsigned(block_threads(v)), 1, 1};
  lp.smem_bytes = static_cast<unsigned>(smem_bytes(v));
  if (v.op == Op::decode) {
    lp.splits = decode_splits_for(v, a, sm_count);
    const int row_blocks = ceil_div(p.group * a.q_len, v.tile.block_m);
    lp.grid = {unsigned(lp.splits), unsigned(row_blocks), unsigned(a.batch * a.heads_kv)};
    if (lp.splits > 1) {
      const std::size_t rows = std::size_t(a.batch) * a.heads_q * a.q_len;
      lp.ws_o_floats = std::size_t(lp.splits) * rows * 2 * a.head_dim;
      lp.ws_stats_floats = std::size_t(lp.splits) * rows * 4;
    }
  } else if (is_wgmma(v.tile.mma) && sm_count > 0 && persistent_prefill) {
    // Persistent: one CTA per SM (the kernels take the whole SM), walking the work items.
    const long long items = (long long)ceil_div(a.q_len, v.tile.block_m) * a.heads_q * a.batch;
    p.persistent = 1;
    lp.grid = {unsigned(std::min<long long>(items, sm_count)), 1, 1};
  } else {
    lp.grid = {unsigned(ceil_div(a.q_len, v.tile.block_m)), unsigned(a.heads_q), unsigned(a.batch)};
  }
  p.num_splits = lp.splits;
  // gridDim.y and .z stop at 65535 (x at 2^31 - 1): a shape past them is refused by name
  // rather than failing the launch.
  if (lp.grid.y > 65535 || lp.grid.z > 65535)
    throw UnsupportedError(fmt::format(
        "attention arguments: {} = {} exceeds the 65535 CTAs a grid dimension allows",
        v.op == Op::decode ? (lp.grid.z > 65535 ? "batch x heads_kv" : "row blocks") : (lp.grid.z > 65535 ? "batch" : "heads_q"),
        lp.grid.z > 65535 ? lp.grid.z : lp.grid.y));
  return lp;
}

}  // namespace plx
