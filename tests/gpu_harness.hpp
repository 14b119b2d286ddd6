// Shared by the [gpu] tests and the benchmark: random inputs shaped like a real model's,
// device copies, the engine under test, and the comparison with the CPU oracle.
#pragma once
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/half.hpp"
#include "generator/variant.hpp"
#include "parallax/parallax.hpp"
#include "runtime/driver.hpp"
#include "runtime/oracle.hpp"

namespace plx::testing {

using namespace plx::half;

// A variant by its kernel class and tile: the tests' named kernels.
inline Variant variant_of(Op op, Family f, DType dt, int head_dim, bool causal, bool window, Arch arch, Tile tile) {
  Variant v;
  v.op = op;
  v.family = f;
  v.dtype = dt;
  v.head_dim = head_dim;
  v.causal = causal;
  v.window = window;
  v.arch = arch;
  v.tile = tile;
  return v;
}

inline std::uint64_t fresh_seed() {
  if (const char* s = std::getenv("PLX_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd();
}

// Host tensor in both forms: the 16-bit values the GPU reads and their exact doubles.
struct Tensor {
  std::vector<std::uint16_t> bits;
  std::vector<double> exact;
};

// Gaussian head vectors of `dim`; rms: each vector scaled to RMS 1 (q, r, k in real
// models are RMS-normed; v is raw).
inline Tensor random_tensor(std::mt19937_64& rng, std::size_t n, int dim, DType dt, bool rms) {
  std::normal_distribution<double> nd(0.0, 1.0);
  Tensor t;
  t.bits.resize(n);
  t.exact.resize(n);
  std::vector<double> tmp(dim);
  for (std::size_t base = 0; base < n; base += dim) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += (tmp[i] = nd(rng)) * tmp[i];
    const double scale = rms ? 1.0 / std::sqrt(ss / dim) : 1.0;
    for (int i = 0; i < dim; ++i) {
      const float f = float(tmp[i] * scale);
      const std::uint16_t b = dt == DType::bf16 ? float_to_bf16(f) : float_to_fp16(f);
      t.bits[base + i] = b;
      t.exact[base + i] = dt == DType::bf16 ? bf16_to_float(b) : fp16_to_float(b);
    }
  }
  return t;
}

inline double to_double(DType dt, std::uint16_t b) { return dt == DType::bf16 ? bf16_to_float(b) : fp16_to_float(b); }

struct Comparison {
  double rel_err = 0;      // ||out - ref|| / ||ref|| (absolute when ||ref|| == 0)
  long nonfinite = 0;      // NaN/Inf elements in out (poison left behind or produced)
  double ref_norm = 0;
  std::string worst;       // where the largest error is
};

// One problem end to end: random inputs, poisoned output, engine.attention, oracle.
struct Case {
  AttentionArgs args;               // shapes and flags; pointers are filled in
  std::vector<int> seqused;         // empty: none
  std::string variant;              // empty: the engine's own choice
  int page_size = 0;                // > 0: K/V go through a shuffled paged cache
  // NaN (0xFFFF) in every K/V row no live key uses: keys at or past a sequence's live
  // length, a page's tail, spare pages. A kernel must never let them reach the output.
  bool poison_dead_rows = false;
};

// Scatters contiguous [batch, kv_len, hkv, D] rows into a page pool with a shuffled block
// table (plus spare pages of noise), as a serving engine's allocator would leave it.
struct Paged {
  std::vector<std::uint16_t> k, v;
  std::vector<int> table;
  int max_pages = 0;
};
inline Paged make_paged(std::mt19937_64& rng, const AttentionArgs& a, int page_size, const Tensor& k,
                        const Tensor& v) {
  Paged p;
  p.max_pages = (a.kv_len + page_size - 1) / page_size;
  const int pages = a.batch * p.max_pages + 3;
  const std::size_t row = std::size_t(a.heads_kv) * a.head_dim;
  Tensor noise_k = random_tensor(rng, std::size_t(pages) * page_size * row, a.head_dim, a.dtype, true);
  Tensor noise_v = random_tensor(rng, std::size_t(pages) * page_size * row, a.head_dim, a.dtype, false);
  p.k = std::move(noise_k.bits);
  p.v = std::move(noise_v.bits);
  std::vector<int> perm(pages);
  for (int i = 0; i < pages; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  p.table.assign(perm.begin(), perm.begin() + std::size_t(a.batch) * p.max_pages);
  for (int b = 0; b < a.batch; ++b)
    for (int j = 0; j < a.kv_len; ++j) {
      const std::size_t src = (std::size_t(b) * a.kv_len + j) * row;
      const std::size_t dst = (std::size_t(p.table[std::size_t(b) * p.max_pages + j / page_size]) * page_size +
                               j % page_size) * row;
      std::copy_n(k.bits.begin() + src, row, p.k.begin() + dst);
      std::copy_n(v.bits.begin() + src, row, p.v.begin() + dst);
    }
  return p;
}

using oracle::problem_of;

inline Comparison run_case(Engine& engine, const Case& c, std::uint64_t seed, void* stream = nullptr) {
  std::mt19937_64 rng(seed);
  AttentionArgs a = c.args;
  const int D = a.head_dim;
  const std::size_t nq = std::size_t(a.batch) * a.q_len * a.heads_q * D;
  const std::size_t nkv = std::size_t(a.batch) * a.kv_len * a.heads_kv * D;
  Tensor q = random_tensor(rng, nq, D, a.dtype, true);
  Tensor r = random_tensor(rng, nq, D, a.dtype, true);
  Tensor k = random_tensor(rng, nkv, D, a.dtype, true);
  Tensor v = random_tensor(rng, nkv, D, a.dtype, false);

  cu::Buffer dq(nq * 2), dr(nq * 2), dk, dv, dout(nq * 2), dlen, dtable;
  dq.upload(q.bits.data(), nq * 2);
  dr.upload(r.bits.data(), nq * 2);
  // Live keys of batch b (seqused_k clamped as the kernels do).
  auto live = [&](int b) {
    return c.seqused.empty() ? a.kv_len : std::min(std::max(c.seqused[std::size_t(b)], 0), a.kv_len);
  };
  const std::size_t kv_row = std::size_t(a.heads_kv) * D;
  if (c.page_size > 0) {
    Paged pg = make_paged(rng, a, c.page_size, k, v);
    if (c.poison_dead_rows) {
      std::vector<char> used(pg.k.size() / kv_row, 0);
      for (int b = 0; b < a.batch; ++b)
        for (int j = 0; j < live(b); ++j)
          used[std::size_t(pg.table[std::size_t(b) * pg.max_pages + j / c.page_size]) * c.page_size +
               j % c.page_size] = 1;
      for (std::size_t slot = 0; slot < used.size(); ++slot)
        if (!used[slot]) {
          std::fill_n(pg.k.begin() + slot * kv_row, kv_row, std::uint16_t(0xFFFF));
          std::fill_n(pg.v.begin() + slot * kv_row, kv_row, std::uint16_t(0xFFFF));
        }
    }
    dk = cu::Buffer(pg.k.size() * 2);
    dv = cu::Buffer(pg.v.size() * 2);
    dk.upload(pg.k.data(), pg.k.size() * 2);
    dv.upload(pg.v.data(), pg.v.size() * 2);
    dtable = cu::Buffer(pg.table.size() * sizeof(int));
    dtable.upload(pg.table.data(), pg.table.size() * sizeof(int));
    a.block_table = static_cast<const int*>(dtable.data());
    a.page_size = c.page_size;
    a.max_pages = pg.max_pages;
  } else {
    if (c.poison_dead_rows)
      for (int b = 0; b < a.batch; ++b)
        for (int j = live(b); j < a.kv_len; ++j) {
          const std::size_t row = (std::size_t(b) * a.kv_len + j) * kv_row;
          std::fill_n(k.bits.begin() + row, kv_row, std::uint16_t(0xFFFF));
          std::fill_n(v.bits.begin() + row, kv_row, std::uint16_t(0xFFFF));
        }
    dk = cu::Buffer(nkv * 2);
    dv = cu::Buffer(nkv * 2);
    dk.upload(k.bits.data(), nkv * 2);
    dv.upload(v.bits.data(), nkv * 2);
  }
  dout.fill_bytes(0xFF);  // 0xFFFF is NaN in bf16 and fp16: unwritten elements show up
  a.q = dq.data();
  a.r = dr.data();
  a.k = dk.data();
  a.v = dv.data();
  a.o = dout.data();
  if (!c.seqused.empty()) {
    dlen = cu::Buffer(c.seqused.size() * sizeof(int));
    dlen.upload(c.seqused.data(), c.seqused.size() * sizeof(int));
    a.seqused_k = static_cast<const int*>(dlen.data());
  }
  if (c.variant.empty())
    engine.attention(a, stream);
  else
    engine.attention(a, c.variant, stream);
  PLX_CU(cu::api().cuCtxSynchronize());
  std::vector<std::uint16_t> out(nq);
  dout.download(out.data(), nq * 2);

  const oracle::Problem p = problem_of(a, c.seqused);
  std::vector<double> ref(nq);
  oracle::attention(p, q.exact.data(), r.exact.data(), k.exact.data(), v.exact.data(), ref.data());

  Comparison cmp;
  double num = 0, den = 0, worst = -1;
  for (std::size_t i = 0; i < nq; ++i) {
    const double o = to_double(a.dtype, out[i]);
    if (!std::isfinite(o)) {
      ++cmp.nonfinite;
      continue;
    }
    const double e = o - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
    if (std::abs(e) > worst) {
      worst = std::abs(e);
      const std::size_t row = i / D;
      cmp.worst = "element " + std::to_string(i) + " (b,t,h) row " + std::to_string(row) + " col " +
                  std::to_string(i % D) + ": got " + std::to_string(o) + " want " + std::to_string(ref[i]);
    }
  }
  cmp.ref_norm = std::sqrt(den);
  cmp.rel_err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return cmp;
}

inline double tolerance(DType dt) { return dt == DType::bf16 ? 1e-2 : 2e-3; }

}  // namespace plx::testing
