#include "autotune/oracle_check.hpp"

#include <fmt/format.h>

#include <cmath>
#include <random>
#include <vector>

#include "autotune/heuristics.hpp"
#include "common/half.hpp"
#include "runtime/driver.hpp"
#include "runtime/oracle.hpp"

namespace plx::tune {

AttentionArgs check_problem_base(const AttentionArgs& b) {
  AttentionArgs a;
  a.family = b.family;
  a.dtype = b.dtype;
  a.head_dim = b.head_dim;
  a.causal = b.causal;
  a.qk_scale = b.qk_scale;
  a.window_left = b.window_left >= 0 ? std::min(b.window_left, 77) : -1;
  const int group = b.heads_kv > 0 ? std::max(1, b.heads_q / b.heads_kv) : 1;
  a.batch = 2;
  a.heads_kv = 2;
  a.heads_q = 2 * group;
  return a;
}

AttentionArgs check_problem(const AttentionArgs& b) {
  AttentionArgs a = check_problem_base(b);
  if (heuristics::choose_op(b.q_len) == Op::decode) {
    a.q_len = b.q_len;
    a.kv_len = 300;
  } else {
    a.q_len = a.kv_len = 136;  // the CPU reference is quadratic: keep it ~0.1 s
  }
  return a;
}

std::vector<int> check_live_lengths(const AttentionArgs& a) {
  if (heuristics::choose_op(a.q_len) == Op::decode) return {a.kv_len, std::max(a.q_len, 123)};
  return std::vector<int>(std::size_t(a.batch), a.kv_len);
}

double check_tolerance(DType dt) { return dt == DType::bf16 ? 1e-2 : 2e-3; }

HostTensor random_tensor(std::mt19937_64& rng, std::size_t n, int dim, DType dt, bool rms) {
  std::normal_distribution<double> nd(0.0, 1.0);
  HostTensor t;
  t.bits.resize(n);
  t.exact.resize(n);
  std::vector<double> tmp(static_cast<std::size_t>(dim));
  for (std::size_t base = 0; base < n; base += std::size_t(dim)) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += (tmp[i] = nd(rng)) * tmp[i];
    const double scale = rms ? 1.0 / std::sqrt(ss / dim) : 1.0;
    for (int i = 0; i < dim; ++i) {
      const float f = float(tmp[i] * scale);
      const std::uint16_t h = dt == DType::bf16 ? half::float_to_bf16(f) : half::float_to_fp16(f);
      t.bits[base + i] = h;
      t.exact[base + i] = dt == DType::bf16 ? half::bf16_to_float(h) : half::fp16_to_float(h);
    }
  }
  return t;
}

struct OracleCase::Impl {
  AttentionArgs a;  // with device pointers
  std::vector<int> live;
  std::vector<double> ref;
  std::size_t nq = 0;
  cu::Buffer dq, dr, dk, dv, dout, dlive;
};

OracleCase::OracleCase(const AttentionArgs& problem, std::uint64_t seed) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  std::mt19937_64 rng(seed);
  AttentionArgs a = problem;
  const int D = a.head_dim;
  m.nq = std::size_t(a.batch) * a.q_len * a.heads_q * D;
  const std::size_t nq = m.nq, nkv = std::size_t(a.batch) * a.kv_len * a.heads_kv * D;
  const HostTensor q = random_tensor(rng, nq, D, a.dtype, true);
  const HostTensor r = random_tensor(rng, nq, D, a.dtype, true);
  const HostTensor k = random_tensor(rng, nkv, D, a.dtype, true);
  const HostTensor v = random_tensor(rng, nkv, D, a.dtype, false);
  m.live = check_live_lengths(a);
  m.dq = cu::Buffer(nq * 2);
  m.dr = cu::Buffer(nq * 2);
  m.dk = cu::Buffer(nkv * 2);
  m.dv = cu::Buffer(nkv * 2);
  m.dout = cu::Buffer(nq * 2);
  m.dlive = cu::Buffer(m.live.size() * sizeof(int));
  m.dq.upload(q.bits.data(), nq * 2);
  m.dr.upload(r.bits.data(), nq * 2);
  m.dk.upload(k.bits.data(), nkv * 2);
  m.dv.upload(v.bits.data(), nkv * 2);
  m.dlive.upload(m.live.data(), m.live.size() * sizeof(int));
  a.q = m.dq.data();
  a.r = m.dr.data();
  a.k = m.dk.data();
  a.v = m.dv.data();
  a.o = m.dout.data();
  a.seqused_k = static_cast<const int*>(m.dlive.data());
  m.a = a;

  const oracle::Problem p = oracle::problem_of(a, m.live);
  m.ref.resize(nq);
  oracle::attention(p, q.exact.data(), r.exact.data(), k.exact.data(), v.exact.data(), m.ref.data());
}

OracleCase::~OracleCase() = default;

std::string OracleCase::check(const Launch& launch, void* stream) const {
  const Impl& m = *impl_;
  const AttentionArgs& a = m.a;
  const int D = a.head_dim;
  const std::size_t nq = m.nq;
  // NaN in bf16 and fp16: an element the kernel never writes shows up.
  PLX_CU(cu::api().cuMemsetD8Async(m.dout.ptr(), 0xFF, m.dout.size(), static_cast<CUstream>(stream)));
  launch(a, stream);
  PLX_CU(cu::api().cuStreamSynchronize(static_cast<CUstream>(stream)));
  std::vector<std::uint16_t> out(nq);
  m.dout.download(out.data(), nq * 2);
  const std::vector<double>& ref = m.ref;
  const std::vector<int>& live = m.live;

  long nonfinite = 0;
  std::size_t first_nonfinite = 0, worst_i = 0;
  double num = 0, den = 0, worst = -1;
  for (std::size_t i = 0; i < nq; ++i) {
    const double o = a.dtype == DType::bf16 ? half::bf16_to_float(out[i]) : half::fp16_to_float(out[i]);
    if (!std::isfinite(o)) {
      if (nonfinite++ == 0) first_nonfinite = i;
      continue;
    }
    const double e = o - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
    if (std::abs(e) > worst) {
      worst = std::abs(e);
      worst_i = i;
    }
  }
  const std::string where = fmt::format("batch {} q_len {} kv_len {} (live {}, {}) heads {}/{} d {} window {}",
                                        a.batch, a.q_len, a.kv_len, live[0], live.size() > 1 ? live[1] : live[0],
                                        a.heads_q, a.heads_kv, D, a.window_left);
  auto at = [&](std::size_t i) {
    return fmt::format("element {} (row {}, column {})", i, i / std::size_t(D), i % std::size_t(D));
  };
  if (nonfinite > 0)
    return fmt::format("wrong result: {} of {} outputs not finite, first at {}, on {}", nonfinite, nq,
                       at(first_nonfinite), where);
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!(rel <= check_tolerance(a.dtype))) {
    const double o = a.dtype == DType::bf16 ? half::bf16_to_float(out[worst_i]) : half::fp16_to_float(out[worst_i]);
    return fmt::format("wrong result: relative error {:.3g} > {:.0e} against the fp64 oracle, worst at {}: got {:.5g}, "
                       "want {:.5g}, on {}",
                       rel, check_tolerance(a.dtype), at(worst_i), o, ref[worst_i], where);
  }
  return "";
}

}  // namespace plx::tune
