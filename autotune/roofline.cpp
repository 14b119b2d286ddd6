#include "autotune/roofline.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "generator/legality.hpp"
#include "parallax/errors.hpp"
#include "parallax/parallax.hpp"
#include "runtime/launch.hpp"

namespace plx {

GpuProfile profile(std::string_view name) {
  if (name == "h200") {
    // hbm_GBps and tc_tflops_bf16 are the measured ceilings of
    // ../shared/docs/h200-reference-figures.md: "device-to-device copy: 4.28 TB/s" and
    // "bf16 8192^3 matrix product: 754 TFLOP/s". 132 SMs x 228 KiB shared memory (sm_90).
    // launch_us is an estimate of the GPU-side gap between back-to-back kernels, not measured.
    return {"h200", 4280.0, 754.0, 132, 233472, 2.0, "measured on an H200, 2026-11-28 (copy, cuBLAS GEMM)"};
  }
  if (name == "h100") {
    // Public datasheet numbers for the H100 SXM5 80GB (not measured here): 3350 GB/s HBM3,
    // 989 TFLOP/s dense bf16; 132 SMs x 228 KiB shared memory (sm_90). Attainable rates are
    // lower (the H200's measured copy reaches 89% of its 4.8 TB/s datasheet figure).
    return {"h100", 3350.0, 989.0, 132, 233472, 2.0, "H100 SXM5 datasheet"};
  }
  if (name == "a100") {
    // Public spec-sheet numbers for the A100 SXM4 80GB (not measured here): 2039 GB/s HBM2e,
    // 312 TFLOP/s dense bf16; 108 SMs x 164 KiB shared memory (sm_80).
    return {"a100", 2039.0, 312.0, 108, 167936, 2.0, "A100 SXM4 datasheet"};
  }
  throw UnsupportedError(fmt::format("unknown GPU profile '{}' (known: h200, h100, a100)", name));
}

namespace {

long ceil_div(long a, long b) { return (a + b - 1) / b; }

// The part of a prediction that depends on the op: traffic, work, grid.
struct Work {
  double bytes = 0, flops = 0;
  long ctas = 0;
  int splits = 1;
};

double elem_bytes(const Variant&) { return 2.0; }  // bf16 and fp16 alike

// Decode: one CTA per (batch, kv head, row block, split). Its rows are the q heads of a
// GQA group x the new tokens, so the group shares every K/V tile it streams, and each K/V
// byte of the visible span is read once per row block.
//   parallax bf16 d128 m8 n64 s3, batch 1, kv 32768, heads 32/8 (group 4) on the h200:
//     row blocks 1, span 32768: K+V 8 x 32768 x 128 x 2 x 2 B = 134217728
//     q + r + o 3 x 32 x 128 x 2 B = 24576
//     splits 16 (launch.hpp), partials 16 x 32 rows x (2 x 128 + 4) floats x 4 B x 2
//       (written, then read by the merging CTA) = 1064960    -> bytes 135307264
//     FLOPs 8 kv heads x 8 padded rows x 32768 x 1024 = 2147483648 (intensity 15.9)
//     CTAs 8 x 16 = 128 of 132 SMs (wave efficiency 0.97): 135307264 B / 4280 GB/s
//     / 0.97 = 32.60 us, + 1 launch x 2 us = 34.60 us, memory bound.
Work decode_work(const Variant& v, const Problem& p, const GpuProfile& g) {
  const long group = p.heads_q / p.heads_kv;
  const long rows = group * p.q_len;
  const long row_blocks = ceil_div(rows, v.tile.block_m);
  long span = p.kv_len;
  if (p.window >= 0) span = std::min<long>(span, long(p.window) + p.q_len);
  const double d = v.head_dim, e = elem_bytes(v);

  AttentionArgs a;
  a.family = v.family;
  a.dtype = v.dtype;
  a.head_dim = v.head_dim;
  a.batch = p.batch;
  a.q_len = p.q_len;
  a.kv_len = p.kv_len;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.causal = v.causal;
  a.window_left = p.window;
  Work w;
  w.splits = decode_splits_for(v, a, g.sm_count);

  const double kv_heads = double(p.batch) * p.heads_kv;
  const double q_elems = double(p.batch) * p.q_len * p.heads_q * d;
  w.bytes = kv_heads * row_blocks * span * d * 2 * e;      // K and V
  w.bytes += q_elems * e * (has_probe(v.family) ? 3 : 2);  // q (+ r) + o
  if (w.splits > 1) {
    // fp32 partial O (two accumulators' room, as plan_launch sizes it) and 4 stats per row,
    // written by the split CTAs and read back by the last one (merge.cuh).
    const double part_rows = double(p.batch) * p.heads_q * p.q_len;
    w.bytes += 2.0 * w.splits * part_rows * (2 * d + 4) * 4;
  }
  w.flops = kv_heads * roofline::padded_rows(rows, v.tile.block_m) * span *
            roofline::flops_per_pair(v.family, v.head_dim);
  w.ctas = long(p.batch) * p.heads_kv * row_blocks * w.splits;
  return w;
}

// Prefill: one CTA per (batch, q head, row block of block_m queries). It computes whole
// K/V tiles of block_n keys from the first tile any of its rows sees to the last, so the
// causal triangle costs about half the square plus the diagonal tiles, and a partial last
// row block costs a full one.
// HBM traffic counts each visible K/V byte once per (batch, kv head): the row blocks and q
// heads of a group stream the same tiles at about the same time, so their re-reads hit L2.
// (Counting a re-read per row block would make every prefill memory bound, intensity
// block_m FLOP/B against a ridge of 176 on the h200, yet the reference figures show cuDNN
// prefill at 611 TFLOP/s, which would need 4.8 TB/s from a 4.28 TB/s HBM.)
//   softmax bf16 d128 m128 n64 w8 s2, batch 1, q = kv = 4096 causal, heads 16/8:
//     row block i computes keys [0, 128 (i + 1)): sum over 32 blocks = 67584 keys per row
//     FLOPs 16 heads x 128 rows x 67584 x 512 = 70866960384 (exact pairs: 68.7 G)
//     bytes: K+V 8 x 4096 x 128 x 2 x 2 = 16777216, q + o 2 x 4096 x 16 x 128 x 2 = 33554432
//     intensity 1408 FLOP/B -> compute bound: 70.87 G / 754 TFLOP/s = 93.99 us
//     CTAs 32 x 16 = 512 on 132 SMs: 4 on the busiest, 512 / 528 = 0.97
//     -> 93.99 / 0.97 + 2 = 98.9 us
Work prefill_work(const Variant& v, const Problem& p) {
  const long bm = v.tile.block_m, bn = v.tile.block_n;
  const long row_blocks = ceil_div(p.q_len, bm);
  const long off = long(p.kv_len) - p.q_len;  // the causal mask is aligned to the end
  long tile_keys = 0;                         // keys computed, summed over row blocks
  for (long i = 0; i < row_blocks; ++i) {
    const long first_row = i * bm, last_row = std::min<long>((i + 1) * bm, p.q_len) - 1;
    long end = v.causal ? std::min<long>(p.kv_len, last_row + off + 1) : p.kv_len;
    long begin = p.window >= 0 ? std::max<long>(0, first_row + off - p.window + 1) : 0;
    if (end <= begin) continue;
    tile_keys += (ceil_div(end, bn) - begin / bn) * bn;
  }
  long unique_keys = p.kv_len;
  if (p.window >= 0) unique_keys = std::min<long>(p.kv_len, long(p.q_len) + p.window - 1);
  const double d = v.head_dim, e = elem_bytes(v);
  const double q_elems = double(p.batch) * p.q_len * p.heads_q * d;
  Work w;
  w.bytes = double(p.batch) * p.heads_kv * unique_keys * d * 2 * e + q_elems * e * (has_probe(v.family) ? 3 : 2);
  w.flops = double(p.batch) * p.heads_q * bm * double(tile_keys) * roofline::flops_per_pair(v.family, v.head_dim);
  w.ctas = long(p.batch) * p.heads_q * row_blocks;
  return w;
}

// Backward (runtime/backward.cpp plan_backward): one grid of kv_tiles x heads_kv dK/dV CTAs
// (block_m keys each, streaming block_n-row query tiles of every q head of the group) and
// q_tiles x heads_q dQ/dR CTAs (block_m queries, streaming block_n-key tiles), per batch;
// plus the per-row preprocess, a second launch whose work is negligible (16 B per row).
// Each role computes whole partner tiles from the first its rows see to the last, so the
// padding depends on both block_m and block_n. Products per pair and role: probe families
// dQ/dR 5, dK/dV 6; softmax 3 and 4 (backward_flops_per_pair). Bytes: q, (r), dO, K, V read
// once, the gradients written once, o (and barv) read by the preprocess; re-reads hit L2
// as in prefill_work.
//   parallax bf16 d128 m128 n32, batch 1, q = kv 16384 causal, heads 16/8, on the h200:
//     dQ/dR: 16 heads x 128 x sum over 128 row blocks of 128 (i + 1) keys = 16 x 128 x 1056768
//            = 2.16e9 pairs x 5 x 256 = 2.77 TFLOP; dK/dV the same pairs x 6 x 256 = 3.32 TFLOP
//     6.09 TFLOP / 754 TFLOP/s = 8.08 ms (the measured 11.7 ms ran at 564 TFLOP/s of 22D)
//     CTAs 128 x 8 + 128 x 16 = 3072 on 132 SMs: 24 on the busiest, 3072 / 3168 = 0.97
Work backward_work(const Variant& v, const Problem& p) {
  const long bm = v.tile.block_m, bn = v.tile.block_n;
  const long off = long(p.kv_len) - p.q_len;  // the causal mask is aligned to the end
  const bool win = p.window >= 0;
  // dQ/dR role: query blocks, key tiles (as prefill_work).
  long q_pairs = 0;
  const long q_blocks = ceil_div(p.q_len, bm);
  for (long i = 0; i < q_blocks; ++i) {
    const long r0 = i * bm, r1 = std::min<long>((i + 1) * bm, p.q_len) - 1;
    const long end = v.causal ? std::min<long>(p.kv_len, r1 + off + 1) : p.kv_len;
    const long begin = win ? std::max<long>(0, r0 + off - p.window + 1) : 0;
    if (end > begin) q_pairs += bm * (ceil_div(end, bn) - begin / bn) * bn;
  }
  // dK/dV role: key blocks, query tiles. Query i sees keys [i + off - window + 1, i + off].
  long k_pairs = 0;
  const long k_blocks = ceil_div(p.kv_len, bm);
  for (long j = 0; j < k_blocks; ++j) {
    const long c0 = j * bm, c1 = std::min<long>((j + 1) * bm, p.kv_len) - 1;
    const long begin = v.causal ? std::max<long>(0, c0 - off) : 0;
    const long end = win ? std::min<long>(p.q_len, c1 - off + p.window) : p.q_len;
    if (end > begin) k_pairs += bm * (ceil_div(end, bn) - begin / bn) * bn;
  }
  const bool probe = has_probe(v.family);
  const double d = v.head_dim, e = elem_bytes(v);
  const double heads_q = double(p.batch) * p.heads_q;
  const double q_elems = double(p.batch) * p.q_len * p.heads_q * d;
  const double kv_elems = double(p.batch) * p.kv_len * p.heads_kv * d;
  Work w;
  w.flops = heads_q * 2 * d * (double(q_pairs) * (probe ? 5 : 3) + double(k_pairs) * (probe ? 6 : 4));
  // read q, (r), dO, o, (barv) + written dq, (dr); K, V read, dK, dV written; row records.
  const double q_tensors = 2 + (probe ? 1 : 0) + 1 + (v.family == Family::parallax ? 1 : 0) + 1 + (probe ? 1 : 0);
  w.bytes = q_elems * e * q_tensors + kv_elems * e * 4 + double(p.batch) * p.heads_q * p.q_len * 16 * 2;
  w.ctas = long(p.batch) * (k_blocks * p.heads_kv + q_blocks * p.heads_q);
  return w;
}

}  // namespace

bool fits(const Variant& v, const GpuProfile& g) { return smem_bytes(v) + 1024 <= g.smem_per_sm; }

Prediction predict(const Variant& v, const Problem& p, const GpuProfile& g) {
  if (auto why = why_illegal(v)) throw UnsupportedError(fmt::format("cannot predict {}: {}", v.name(), *why));
  if (!fits(v, g))
    throw UnsupportedError(fmt::format("cannot predict {} on {}: {} B of shared memory per CTA, the SM has {} B",
                                       v.name(), g.name, smem_bytes(v), g.smem_per_sm));
  if (p.batch < 1 || p.q_len < 1 || p.kv_len < 1 || p.heads_kv < 1 || p.heads_q < p.heads_kv ||
      p.heads_q % p.heads_kv != 0)
    throw UnsupportedError(fmt::format("cannot predict: problem batch {} q_len {} kv_len {} heads {}/{} is empty "
                                       "or heads_q is not a multiple of heads_kv",
                                       p.batch, p.q_len, p.kv_len, p.heads_q, p.heads_kv));
  if (g.hbm_GBps <= 0 || g.tc_tflops_bf16 <= 0 || g.sm_count <= 0)
    throw UnsupportedError(fmt::format("GPU profile '{}' has no ceilings", g.name));
  const Work w = v.op == Op::decode ? decode_work(v, p, g) : v.op == Op::backward ? backward_work(v, p) : prefill_work(v, p);
  Prediction r;
  r.bytes = w.bytes;
  r.flops = w.flops;
  r.intensity = w.bytes > 0 ? w.flops / w.bytes : 0;
  r.compute_bound = w.flops / g.tc_tflops_bf16 * 1e-3 > w.bytes / g.hbm_GBps;  // same units both sides
  r.splits = w.splits;
  r.ctas = int(std::min<long>(w.ctas, 1L << 30));
  r.wave_efficiency = roofline::wave_efficiency(w.ctas, g.sm_count);
  // One launch (the merge is in-kernel); the backward's preprocess is a second one.
  const int launches = v.op == Op::backward ? 2 : 1;
  r.us = roofline::roofline_us(w.bytes, w.flops, g) / r.wave_efficiency + launches * g.launch_us;
  return r;
}

}  // namespace plx
