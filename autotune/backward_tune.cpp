#include "autotune/backward_tune.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <tuple>

#include "autotune/oracle_check.hpp"
#include "common/half.hpp"
#include "runtime/driver.hpp"
#include "runtime/oracle_backward.hpp"

namespace plx::tune {

namespace {

// The tensors of one backward call, in set order.
struct Layout {
  std::size_t q = 0, kv = 0, stats = 0;  // bytes of one q-shaped, kv-shaped tensor, the stats
  std::size_t off_q = 0, off_r = 0, off_k = 0, off_v = 0, off_dout = 0, off_o = 0, off_stats = 0, off_barv = 0,
              off_dq = 0, off_dr = 0, off_dk = 0, off_dv = 0, total = 0;
};

Layout layout_of(const AttentionArgs& a) {
  auto align = [](std::size_t x) { return (x + 255) / 256 * 256; };
  const bool probe = has_probe(a.family), centered = a.family == Family::parallax;
  Layout l;
  l.q = std::size_t(a.batch) * a.q_len * a.heads_q * a.head_dim * 2;
  l.kv = std::size_t(a.batch) * a.kv_len * a.heads_kv * a.head_dim * 2;
  l.stats = std::size_t(a.batch) * a.heads_q * a.q_len * 16;  // m, d1, d2/d1, lse (fp32)
  std::size_t at = 0;
  auto take = [&](std::size_t& off, std::size_t bytes, bool present) {
    off = at;
    if (present) at += align(bytes);
  };
  take(l.off_q, l.q, true);
  take(l.off_r, l.q, probe);
  take(l.off_k, l.kv, true);
  take(l.off_v, l.kv, true);
  take(l.off_dout, l.q, true);
  take(l.off_o, l.q, true);
  take(l.off_stats, l.stats, true);
  take(l.off_barv, l.q, centered);
  take(l.off_dq, l.q, true);
  take(l.off_dr, l.q, probe);
  take(l.off_dk, l.kv, true);
  take(l.off_dv, l.kv, true);
  l.total = at;
  return l;
}

std::string problem_key(const AttentionArgs& p) {
  return fmt::format("backward_{}_{}_d{}_{}_g{}_q{}_kv{}_w{}", to_string(p.family), to_string(p.dtype), p.head_dim,
                     p.causal ? "causal" : "full", p.heads_q / std::max(1, p.heads_kv), p.q_len, p.kv_len,
                     p.window_left);
}

}  // namespace

std::size_t backward_input_bytes(const AttentionArgs& a) {
  const bool probe = has_probe(a.family), centered = a.family == Family::parallax;
  const Layout l = layout_of(a);
  const std::size_t q_tensors = 4 + (probe ? 2 : 0) + (centered ? 1 : 0);  // q dO o dq (+ r dr) (+ barv)
  return l.q * q_tensors + l.kv * 4 + l.stats;
}

// ---- inputs ---------------------------------------------------------------------------

struct BackwardInputs::Impl {
  measure::Harness& h;
  cu::Buffer pool;
  AttentionArgs shape;
  Layout l;
  measure::Rotation rot;
  explicit Impl(measure::Harness& harness) : h(harness) {}
  char* set(int rep) const {
    return static_cast<char*>(pool.data()) + std::size_t(rep % std::max(1, rot.sets)) * l.total;
  }
};

BackwardInputs::BackwardInputs(measure::Harness& h) : impl_(std::make_unique<Impl>(h)) {}
BackwardInputs::~BackwardInputs() = default;

void BackwardInputs::prepare(const AttentionArgs& a, double max_fraction, const Forward& forward) {
  Impl& m = *impl_;
  m.l = layout_of(a);
  std::size_t free_b = 0, total_b = 0;
  PLX_CU(cu::api().cuMemGetInfo(&free_b, &total_b));
  const std::size_t budget = std::size_t(double(free_b + m.pool.size()) * max_fraction);
  if (m.l.total > budget)
    throw Error(fmt::format("backward inputs of batch {} q_len {} kv_len {} heads {}/{} d {} need {:.2f} GB; {:.2f} "
                            "GB of device memory may be used",
                            a.batch, a.q_len, a.kv_len, a.heads_q, a.heads_kv, a.head_dim, m.l.total / 1e9,
                            budget / 1e9));
  m.rot = measure::rotation_for(m.l.total, m.h.l2_bytes(), budget);
  const std::size_t need = m.l.total * std::size_t(m.rot.sets);
  if (m.pool.size() < need) {
    m.pool = cu::Buffer();  // free first: old + new may not both fit
    m.pool = cu::Buffer(need);
  }
  m.shape = a;
  m.h.set_flush(m.rot.flush);
  const bool probe = has_probe(a.family);
  for (int s = 0; s < m.rot.sets; ++s) {
    char* set = m.set(s);
    const std::uint32_t seed = 0xb4c3a001u + 16u * unsigned(s);
    m.h.fill_random(set + m.l.off_q, m.l.q, a.dtype, seed);
    if (probe) m.h.fill_random(set + m.l.off_r, m.l.q, a.dtype, seed + 1);
    m.h.fill_random(set + m.l.off_k, m.l.kv, a.dtype, seed + 2);
    m.h.fill_random(set + m.l.off_v, m.l.kv, a.dtype, seed + 3);
    m.h.fill_random(set + m.l.off_dout, m.l.q, a.dtype, seed + 4);
    // o, stats, barv: what a training step's forward leaves for the backward.
    forward(args(s), m.h.stream());
  }
  PLX_CU(cu::api().cuStreamSynchronize(static_cast<CUstream>(m.h.stream())));
}

int BackwardInputs::sets() const { return impl_->rot.sets; }

AttentionArgs BackwardInputs::args(int rep) const {
  const Impl& m = *impl_;
  char* set = m.set(rep);
  AttentionArgs a = m.shape;
  a.q = set + m.l.off_q;
  a.r = has_probe(a.family) ? set + m.l.off_r : nullptr;
  a.k = set + m.l.off_k;
  a.v = set + m.l.off_v;
  a.o = set + m.l.off_o;
  a.stats = reinterpret_cast<float*>(set + m.l.off_stats);
  a.barv = a.family == Family::parallax ? set + m.l.off_barv : nullptr;
  return a;
}

BackwardArgs BackwardInputs::grads(int rep) const {
  const Impl& m = *impl_;
  char* set = m.set(rep);
  const Family f = m.shape.family;
  BackwardArgs g;
  g.dout = set + m.l.off_dout;
  g.o = set + m.l.off_o;
  g.stats = reinterpret_cast<const float*>(set + m.l.off_stats);
  g.barv = f == Family::parallax ? set + m.l.off_barv : nullptr;
  g.dq = set + m.l.off_dq;
  g.dr = has_probe(f) ? set + m.l.off_dr : nullptr;
  g.dk = set + m.l.off_dk;
  g.dv = set + m.l.off_dv;
  return g;
}

// ---- the oracle check -----------------------------------------------------------------

AttentionArgs backward_check_problem(const AttentionArgs& b) {
  AttentionArgs a = check_problem_base(b);
  a.q_len = a.kv_len = 136;  // the fp64 gradients are quadratic: keep them well under a second
  return a;
}

std::vector<int> backward_check_live_lengths(const AttentionArgs& a) { return {a.kv_len, std::min(a.kv_len, 101)}; }

struct BackwardOracleCase::Impl {
  AttentionArgs a;  // with device pointers, stats and barv
  std::vector<int> live;
  oracle::Gradients ref;
  std::size_t nq = 0, nkv = 0;
  cu::Buffer q, r, k, v, dout, o, stats, barv, dq, dr, dk, dv, dlive;
};

BackwardOracleCase::BackwardOracleCase(const AttentionArgs& problem, std::uint64_t seed)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  std::mt19937_64 rng(seed);
  AttentionArgs a = problem;
  const int D = a.head_dim;
  m.nq = std::size_t(a.batch) * a.q_len * a.heads_q * D;
  m.nkv = std::size_t(a.batch) * a.kv_len * a.heads_kv * D;
  const HostTensor q = random_tensor(rng, m.nq, D, a.dtype, true);
  const HostTensor r = random_tensor(rng, m.nq, D, a.dtype, true);
  const HostTensor k = random_tensor(rng, m.nkv, D, a.dtype, true);
  const HostTensor v = random_tensor(rng, m.nkv, D, a.dtype, false);
  const HostTensor dout = random_tensor(rng, m.nq, D, a.dtype, false);
  m.live = backward_check_live_lengths(a);
  auto up = [](cu::Buffer& b, const HostTensor& t) {
    b = cu::Buffer(t.bits.size() * 2);
    b.upload(t.bits.data(), t.bits.size() * 2);
  };
  up(m.q, q);
  up(m.r, r);
  up(m.k, k);
  up(m.v, v);
  up(m.dout, dout);
  m.o = cu::Buffer(m.nq * 2);
  m.barv = cu::Buffer(m.nq * 2);
  m.stats = cu::Buffer(std::size_t(a.batch) * a.heads_q * a.q_len * 16);
  m.dq = cu::Buffer(m.nq * 2);
  m.dr = cu::Buffer(m.nq * 2);
  m.dk = cu::Buffer(m.nkv * 2);
  m.dv = cu::Buffer(m.nkv * 2);
  m.dlive = cu::Buffer(m.live.size() * sizeof(int));
  m.dlive.upload(m.live.data(), m.live.size() * sizeof(int));
  a.q = m.q.data();
  a.r = m.r.data();
  a.k = m.k.data();
  a.v = m.v.data();
  a.o = m.o.data();
  a.stats = static_cast<float*>(m.stats.data());
  a.barv = m.barv.data();
  a.seqused_k = static_cast<const int*>(m.dlive.data());
  m.a = a;
  const oracle::Problem p = oracle::problem_of(a, m.live);
  m.ref = oracle::backward(p, q.exact.data(), r.exact.data(), k.exact.data(), v.exact.data(), dout.exact.data());
}

BackwardOracleCase::~BackwardOracleCase() = default;

std::string BackwardOracleCase::check(const BackwardInputs::Forward& forward, const Backward& backward,
                                      void* stream) const {
  const Impl& m = *impl_;
  const AttentionArgs& a = m.a;
  const CUstream s = static_cast<CUstream>(stream);
  // NaN in bf16 and fp16: an element the kernels never write shows up.
  for (const cu::Buffer* b : {&m.dq, &m.dr, &m.dk, &m.dv}) PLX_CU(cu::api().cuMemsetD8Async(b->ptr(), 0xFF, b->size(), s));
  forward(a, stream);
  BackwardArgs g;
  g.dout = m.dout.data();
  g.o = m.o.data();
  g.stats = static_cast<const float*>(m.stats.data());
  g.barv = m.barv.data();
  g.dq = m.dq.data();
  g.dr = m.dr.data();
  g.dk = m.dk.data();
  g.dv = m.dv.data();
  backward(a, g, stream);
  PLX_CU(cu::api().cuStreamSynchronize(s));

  const std::string where = fmt::format("batch {} q_len = kv_len {} (live {}, {}) heads {}/{} d {} window {}", a.batch,
                                        a.q_len, m.live[0], m.live[1], a.heads_q, a.heads_kv, a.head_dim,
                                        a.window_left);
  auto judge = [&](const char* name, const cu::Buffer& buf, const std::vector<double>& ref) -> std::string {
    std::vector<std::uint16_t> bits(ref.size());
    buf.download(bits.data(), bits.size() * 2);
    double max_ref = 0, max_err = 0;
    long nonfinite = 0, first = -1;
    for (double x : ref) max_ref = std::max(max_ref, std::abs(x));
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double got = a.dtype == DType::bf16 ? half::bf16_to_float(bits[i]) : half::fp16_to_float(bits[i]);
      if (!std::isfinite(got)) {
        if (nonfinite++ == 0) first = long(i);
        continue;
      }
      max_err = std::max(max_err, std::abs(got - ref[i]));
    }
    if (nonfinite > 0)
      return fmt::format("wrong {}: {} of {} elements not finite, first at element {}, on {}", name, nonfinite,
                         ref.size(), first, where);
    const double rel = max_err / (max_ref > 0 ? max_ref : 1.0);
    if (!(rel <= kBackwardCheckTolerance))
      return fmt::format("wrong {}: max-norm relative error {:.3g} > {:.0e} against the fp64 oracle, on {}", name, rel,
                         kBackwardCheckTolerance, where);
    return "";
  };
  for (auto [name, buf, ref] : {std::tuple{"dq", &m.dq, &m.ref.dq}, std::tuple{"dr", &m.dr, &m.ref.dr},
                                std::tuple{"dk", &m.dk, &m.ref.dk}, std::tuple{"dv", &m.dv, &m.ref.dv}}) {
    if (std::string(name) == "dr" && !has_probe(a.family)) continue;  // softmax has no r
    if (std::string why = judge(name, *buf, *ref); !why.empty()) return why;
  }
  return "";
}

// ---- the race -------------------------------------------------------------------------

BucketOutcome tune_backward_bucket(measure::Harness& h, BackwardInputs& inputs, const Bucket& b,
                                   const std::vector<Candidate>& cands, const Runner& run, const TuneOptions& o,
                                   CheckCache* checks) {
  const auto t0 = std::chrono::steady_clock::now();
  BucketOutcome out = outcome_for(cands);
  if (!run.launch_backward || !run.forward) {
    out.error = "backward bucket: the runner cannot launch a backward (launch_backward, forward unset)";
    return finish_outcome(std::move(out), t0);
  }
  const AttentionArgs shape = b.args();
  out.error = prepare_error([&] { inputs.prepare(shape, o.mem_fraction, run.forward); });
  if (!out.error.empty()) return finish_outcome(std::move(out), t0);
  const AttentionArgs small = backward_check_problem(shape);
  CheckCache local;
  CheckCache& cache = checks ? *checks : local;
  RaceOps ops;
  ops.call_of = [&](const std::string& name) -> measure::Call {
    return [&, name](int rep, void* stream) { run.launch_backward(name, inputs.args(rep), inputs.grads(rep), stream); };
  };
  ops.check = [&](const std::string& name) {
    const std::string pkey = problem_key(small), key = name + "|" + pkey;
    auto it = cache.verdicts.find(key);
    if (it == cache.verdicts.end()) {
      auto& oc = cache.backward_cases[pkey];
      if (!oc) oc = std::make_shared<BackwardOracleCase>(small);
      const std::string verdict = oc->check(
          run.forward,
          [&](const AttentionArgs& a, const BackwardArgs& g, void* stream) { run.launch_backward(name, a, g, stream); },
          h.stream());
      it = cache.verdicts.emplace(key, verdict).first;
    }
    return it->second;
  };
  return race(h, cands, run, o, ops, std::move(out), t0);
}

}  // namespace plx::tune
