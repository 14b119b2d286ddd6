// The fp64 backward oracle (runtime/oracle_backward.*) against central finite differences
// of the forward oracle, on fresh random small problems every run: GQA (dk, dv summed over
// the group), windows that divide nothing, causal and not, q_len < kv_len and q_len >
// kv_len (rows that see no key), live lengths. Also the forward statistics against the
// forward's own streaming state. Reproduce a failure with PLX_SEED=<seed printed>.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "runtime/oracle.hpp"
#include "runtime/oracle_backward.hpp"

using plx::Family;
using plx::oracle::Problem;
using Vec = std::vector<double>;

namespace {

constexpr Family kFamilies[] = {Family::softmax, Family::parallax, Family::parallax_uncentered};

std::uint64_t fresh_seed() {
  if (const char* s = std::getenv("PLX_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd();
}

std::size_t q_size(const Problem& p) { return std::size_t(p.batch) * p.q_len * p.heads_q * p.head_dim; }
std::size_t kv_size(const Problem& p) { return std::size_t(p.batch) * p.kv_len * p.heads_kv * p.head_dim; }

Vec gaussian(std::size_t n, double scale, std::mt19937_64& g) {
  std::normal_distribution<double> N(0.0, scale);
  Vec x(n);
  for (double& e : x) e = N(g);
  return x;
}

struct Inputs {
  Vec q, r, k, v, dout;
};

Inputs make_inputs(const Problem& p, std::mt19937_64& g) {
  return {gaussian(q_size(p), 1.0, g), gaussian(q_size(p), 0.5, g), gaussian(kv_size(p), 1.0, g),
          gaussian(kv_size(p), 1.0, g), gaussian(q_size(p), 1.0, g)};
}

// L = sum(dout * o): the scalar whose gradients the oracle claims to give.
double loss(const Problem& p, const Inputs& in) {
  Vec o(q_size(p));
  plx::oracle::attention(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), o.data());
  double s = 0;
  for (std::size_t i = 0; i < o.size(); ++i) s += o[i] * in.dout[i];
  return s;
}

// Central differences of L in every element of one input.
Vec numeric_grad(const Problem& p, Inputs in, Vec Inputs::*x) {
  constexpr double eps = 1e-5;
  Vec g((in.*x).size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double keep = (in.*x)[i];
    (in.*x)[i] = keep + eps;
    const double up = loss(p, in);
    (in.*x)[i] = keep - eps;
    const double down = loss(p, in);
    (in.*x)[i] = keep;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}

// max|got - ref| over max(1, max|ref|); NaN anywhere is infinite.
double max_err(const Vec& got, const Vec& ref, std::size_t* worst = nullptr) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      if (worst) *worst = i;
      return std::numeric_limits<double>::infinity();
    }
    if (std::abs(got[i] - ref[i]) > num) {
      num = std::abs(got[i] - ref[i]);
      if (worst) *worst = i;
    }
    den = std::max(den, std::abs(ref[i]));
  }
  return num / den;
}

Problem shape(Family f, int batch, int q_len, int kv_len, int hq, int hkv, int D, bool causal, int window) {
  Problem p;
  p.family = f;
  p.batch = batch;
  p.q_len = q_len;
  p.kv_len = kv_len;
  p.heads_q = hq;
  p.heads_kv = hkv;
  p.head_dim = D;
  p.causal = causal;
  p.window_left = window;
  return p;
}

// Small problems covering every mask path the kernels have.
std::vector<Problem> problems(Family f) {
  std::vector<Problem> ps;
  ps.push_back(shape(f, 1, 6, 6, 1, 1, 4, true, -1));   // self-attention, MHA
  ps.push_back(shape(f, 1, 5, 9, 4, 2, 4, true, 3));    // GQA 2, chunked, window 3 divides nothing
  ps.push_back(shape(f, 2, 4, 7, 2, 1, 5, false, -1));  // non-causal, MQA 2, odd D
  ps.push_back(shape(f, 1, 7, 7, 3, 1, 4, false, 4));   // non-causal window, GQA 3
  ps.push_back(shape(f, 1, 8, 5, 2, 2, 4, true, 2));    // q_len > kv_len: 3 rows see nothing
  Problem live = shape(f, 2, 3, 8, 2, 1, 4, true, -1);  // live lengths, one sequence empty
  live.seqused_k = {5, 0};
  ps.push_back(live);
  return ps;
}

#define DESCRIBE(p)                                                                                    \
  INFO("family " << plx::to_string((p).family) << " b " << (p).batch << " q_len " << (p).q_len        \
                 << " kv_len " << (p).kv_len << " heads " << (p).heads_q << "/" << (p).heads_kv << " D " \
                 << (p).head_dim << " causal " << (p).causal << " W " << (p).window_left               \
                 << " seqused " << (p).seqused_k.size())

}  // namespace

TEST_CASE("backward oracle matches central finite differences", "[oracle][backward]") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed << " (rerun with PLX_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);
  for (Family f : kFamilies)
    for (const Problem& p : problems(f)) {
      DESCRIBE(p);
      const Inputs in = make_inputs(p, rng);
      const auto g = plx::oracle::backward(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), in.dout.data());
      struct {
        const char* name;
        const Vec& analytic;
        Vec Inputs::*x;
      } checks[] = {{"dq", g.dq, &Inputs::q}, {"dr", g.dr, &Inputs::r}, {"dk", g.dk, &Inputs::k},
                    {"dv", g.dv, &Inputs::v}};
      for (const auto& c : checks) {
        std::size_t worst = 0;
        const Vec num = numeric_grad(p, in, c.x);
        const double err = max_err(c.analytic, num, &worst);
        INFO(c.name << ": error " << err << " at " << worst << " (analytic " << c.analytic[worst] << ", numeric "
                    << num[worst] << ")");
        CHECK(err < 1e-7);
      }
      // Softmax never reads r, so its dr is exactly zero (not merely small).
      if (f == Family::softmax) CHECK(std::all_of(g.dr.begin(), g.dr.end(), [](double x) { return x == 0; }));
    }
}

TEST_CASE("backward oracle: rows that see no key and keys no row sees get zero gradients", "[oracle][backward]") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (Family f : kFamilies) {
    // Causal, q_len 9 > kv_len 4: rows 0..4 see nothing. Window 2: keys 0..1 are seen by
    // rows 5, 6 only; live length 3 of batch 1 hides key 3 there.
    Problem p = shape(f, 2, 9, 4, 2, 1, 8, true, 2);
    p.seqused_k = {4, 3};
    DESCRIBE(p);
    const Inputs in = make_inputs(p, rng);
    const auto g = plx::oracle::backward(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), in.dout.data());
    for (const Vec* x : {&g.dq, &g.dr, &g.dk, &g.dv})
      CHECK(std::all_of(x->begin(), x->end(), [](double e) { return std::isfinite(e); }));
    const int D = p.head_dim;
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < 9; ++i)
        for (int h = 0; h < 2; ++h) {
          const auto [lo, hi] = plx::oracle::visible_range(p, b, i);
          if (lo < hi) continue;
          const std::size_t at = ((std::size_t(b) * 9 + i) * 2 + h) * D;
          for (int d = 0; d < D; ++d) {
            INFO("row b " << b << " i " << i << " h " << h);
            CHECK(g.dq[at + d] == 0);
            CHECK(g.dr[at + d] == 0);
          }
        }
    // Key 3 of batch 1 is past its live length: no row reads it.
    const std::size_t k3 = ((std::size_t(1) * 4 + 3) * 1 + 0) * D;
    for (int d = 0; d < D; ++d) {
      CHECK(g.dk[k3 + d] == 0);
      CHECK(g.dv[k3 + d] == 0);
    }
  }
}

TEST_CASE("backward oracle: W_R = 0 gives the softmax gradients", "[oracle][backward]") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Problem& base : problems(Family::softmax)) {
    DESCRIBE(base);
    Inputs in = make_inputs(base, rng);
    std::fill(in.r.begin(), in.r.end(), 0.0);
    const auto s = plx::oracle::backward(base, in.q.data(), in.r.data(), in.k.data(), in.v.data(), in.dout.data());
    for (Family f : {Family::parallax, Family::parallax_uncentered}) {
      Problem p = base;
      p.family = f;
      const auto g = plx::oracle::backward(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), in.dout.data());
      INFO(plx::to_string(f));
      CHECK(max_err(g.dq, s.dq) < 1e-12);
      CHECK(max_err(g.dk, s.dk) < 1e-12);
      CHECK(max_err(g.dv, s.dv) < 1e-12);
    }
  }
}

TEST_CASE("forward statistics agree with the forward's own state", "[oracle][backward]") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (Family f : kFamilies)
    for (const Problem& p : problems(f)) {
      DESCRIBE(p);
      const Inputs in = make_inputs(p, rng);
      const std::size_t rows = std::size_t(p.batch) * p.heads_q * p.q_len;
      Vec stats(rows * plx::oracle::kStatsPerRow, -7.0), barv(q_size(p), -7.0);
      plx::oracle::forward_stats(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), stats.data(),
                                 barv.data());
      for (int b = 0; b < p.batch; ++b)
        for (int h = 0; h < p.heads_q; ++h)
          for (int i = 0; i < p.q_len; ++i) {
            INFO("row b " << b << " h " << h << " i " << i);
            const auto row = plx::oracle::row_of(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), b, i, h);
            // The streaming state of section 3.2 (tile 3), not the two-pass path under test.
            const auto st = plx::oracle::stream(row, 0, row.len, 3);
            const double* s = &stats[plx::oracle::stats_offset(p, b, h, i)];
            const double* bv = &barv[((std::size_t(b) * p.q_len + i) * p.heads_q + h) * p.head_dim];
            if (st.d1 == 0) {
              CHECK(s[0] == 0);
              CHECK(s[1] == 0);
              CHECK(s[2] == 0);
              CHECK(s[3] == std::numeric_limits<double>::infinity());
              for (int d = 0; d < p.head_dim; ++d) CHECK(bv[d] == 0);
              continue;
            }
            CHECK(s[0] == Approx(st.m).epsilon(1e-12).margin(1e-12));
            CHECK(s[1] == Approx(st.d1).epsilon(1e-12));
            CHECK(s[2] == Approx(f == Family::parallax ? st.d2 / st.d1 : 0.0).margin(1e-12));
            CHECK(s[3] == Approx(st.m + std::log(st.d1)).epsilon(1e-12).margin(1e-12));
            for (int d = 0; d < p.head_dim; ++d) CHECK(bv[d] == Approx(st.O1[d] / st.d1).margin(1e-12));
            // exp(s1 - lse) are the softmax weights: they sum to 1 over the visible keys.
            double sum = 0;
            for (int j = row.lo; j < row.hi; ++j) {
              double qk = 0;
              for (int d = 0; d < p.head_dim; ++d) qk += row.q[d] * row.k[j * row.stride + d];
              sum += std::exp(row.scale * qk - s[3]);
            }
            CHECK(sum == Approx(1.0).epsilon(1e-12));
          }
    }
}
