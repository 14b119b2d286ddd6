// Section 9 identities of parallax-math.md, checked on fresh random inputs every run.
// The reference each test compares against is written here, independently of the
// oracle (its own mask predicate, index arithmetic and covariance form), so a wrong
// mask, GQA mapping or finalizer in runtime/oracle.cpp makes these fail.
// Reproduce a failure with PLX_SEED=<seed printed in the failure>.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <parallax/errors.hpp>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/half.hpp"
#include "runtime/oracle.hpp"

using plx::Family;
using plx::oracle::Problem;
using Vec = std::vector<double>;

namespace {

constexpr double kTol = 1e-10;
constexpr Family kFamilies[] = {Family::softmax, Family::parallax, Family::parallax_uncentered};

std::uint64_t fresh_seed() {
  if (const char* s = std::getenv("PLX_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd();
}

struct Inputs {
  Vec q, r, k, v;
};

std::size_t q_size(const Problem& p) {
  return std::size_t(p.batch) * p.q_len * p.heads_q * p.head_dim;
}
std::size_t kv_size(const Problem& p) {
  return std::size_t(p.batch) * p.kv_len * p.heads_kv * p.head_dim;
}

// Gaussian head vectors; q, r, k RMS-normalised per vector like the authors' tests.
Vec random_heads(std::size_t n, int D, std::mt19937_64& g, bool rms, double scale = 1.0) {
  std::normal_distribution<double> N;
  Vec x(n);
  for (double& e : x) e = N(g);
  for (std::size_t s = 0; rms && s < n; s += D) {
    double ss = 0;
    for (int d = 0; d < D; ++d) ss += x[s + d] * x[s + d];
    const double f = scale / std::sqrt(ss / D);
    for (int d = 0; d < D; ++d) x[s + d] *= f;
  }
  return x;
}

Inputs make_inputs(const Problem& p, std::mt19937_64& g, double r_scale = 0.3) {
  return {random_heads(q_size(p), p.head_dim, g, true),
          random_heads(q_size(p), p.head_dim, g, true, r_scale),
          random_heads(kv_size(p), p.head_dim, g, true), random_heads(kv_size(p), p.head_dim, g, false)};
}

// max|got - ref| / max|ref| (the authors' metric); a NaN anywhere counts as infinite.
double rel_err(const Vec& got, const Vec& ref) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num = std::max(num, std::abs(got[i] - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

Vec run(const Problem& p, const Inputs& in) {
  Vec o(q_size(p), -1.0);
  plx::oracle::attention(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), o.data());
  return o;
}

// The mask exactly as section 1 and the brief state it, key by key.
bool sees(const Problem& p, int b, int i, int j) {
  const int L = p.seqused_k.empty() ? p.kv_len : p.seqused_k[b];
  const int diag = L - p.q_len + i;
  if (j >= L) return false;
  if (p.causal && j > diag) return false;
  if (p.window_left >= 0 && j < diag - p.window_left + 1) return false;
  return true;
}

// One row from its visible keys/values, in the statistical forms of section 2.2 and the
// section 6 table rather than the kernel finalizer: parallax = vbar - Sigma_VK r (the
// D x D cross-covariance built explicitly), uncentered = vbar - sum_j p_j (r.k_j) v_j.
void reference_row(Family f, double c, int D, const double* q, const double* r,
                   const std::vector<const double*>& ks, const std::vector<const double*>& vs,
                   double* o) {
  const std::size_t n = ks.size();
  Vec p(n);
  double mx = -INFINITY, sum = 0;
  for (std::size_t j = 0; j < n; ++j) {
    p[j] = 0;
    for (int d = 0; d < D; ++d) p[j] += c * q[d] * ks[j][d];
    mx = std::max(mx, p[j]);
  }
  for (double& x : p) sum += x = std::exp(x - mx);
  for (double& x : p) x /= sum;
  Vec kbar(D, 0.0), vbar(D, 0.0), cov(std::size_t(D) * D, 0.0);
  for (std::size_t j = 0; j < n; ++j)
    for (int d = 0; d < D; ++d) kbar[d] += p[j] * ks[j][d], vbar[d] += p[j] * vs[j][d];
  for (std::size_t j = 0; j < n; ++j)
    for (int a = 0; a < D; ++a)
      for (int e = 0; e < D; ++e) cov[a * D + e] += p[j] * (vs[j][a] - vbar[a]) * (ks[j][e] - kbar[e]);
  for (int a = 0; a < D; ++a) o[a] = vbar[a];
  if (f == Family::parallax) {
    for (int a = 0; a < D; ++a)
      for (int e = 0; e < D; ++e) o[a] -= cov[a * D + e] * r[e];
  } else if (f == Family::parallax_uncentered) {
    for (std::size_t j = 0; j < n; ++j) {
      double u = 0;
      for (int d = 0; d < D; ++d) u += r[d] * ks[j][d];
      for (int d = 0; d < D; ++d) o[d] -= p[j] * u * vs[j][d];
    }
  }
}

// Whole problem through reference_row, with this file's own mask and index arithmetic.
Vec reference(const Problem& p, const Inputs& in) {
  const int D = p.head_dim, G = p.heads_q / p.heads_kv;
  const double c = p.qk_scale != 0 ? p.qk_scale : 1.0 / std::sqrt(double(D));
  Vec out(q_size(p), 0.0);
  for (int b = 0; b < p.batch; ++b)
    for (int i = 0; i < p.q_len; ++i)
      for (int h = 0; h < p.heads_q; ++h) {
        const std::size_t qo = ((std::size_t(b) * p.q_len + i) * p.heads_q + h) * D;
        std::vector<const double*> ks, vs;
        for (int j = 0; j < p.kv_len; ++j) {
          if (!sees(p, b, i, j)) continue;
          const std::size_t at = ((std::size_t(b) * p.kv_len + j) * p.heads_kv + h / G) * D;
          ks.push_back(&in.k[at]);
          vs.push_back(&in.v[at]);
        }
        if (!ks.empty()) reference_row(p.family, c, D, &in.q[qo], &in.r[qo], ks, vs, &out[qo]);
      }
  return out;
}

Problem shape(Family f, int q_len, int kv_len, int D = 16) {
  Problem p;
  p.family = f;
  p.q_len = q_len;
  p.kv_len = kv_len;
  p.head_dim = D;
  return p;
}

// Decode, prefill and chunked prefill, (non-)causal, with and without window, with
// mixed live lengths (batch 1 is 6 keys short, so prefill has rows with q_len > L_b).
std::vector<Problem> mixed_shapes(Family f) {
  std::vector<Problem> ps;
  for (auto [q_len, kv_len] : {std::pair{1, 37}, {29, 29}, {7, 31}})
    for (int w : {-1, 5, 7})
      for (bool causal : {true, false}) {
        Problem p = shape(f, q_len, kv_len);
        p.batch = 2;
        p.heads_q = 4;
        p.heads_kv = 2;
        p.window_left = w;
        p.causal = causal;
        p.seqused_k = {kv_len, kv_len - 6};
        ps.push_back(p);
      }
  return ps;
}

#define SEEDED_RNG()                                                             \
  const std::uint64_t seed = fresh_seed();                                       \
  INFO("seed " << seed << " (rerun with PLX_SEED=" << seed << ")");              \
  std::mt19937_64 rng(seed)

#define DESCRIBE(p)                                                                        \
  INFO("family " << plx::to_string((p).family) << " q_len " << (p).q_len << " kv_len "     \
                 << (p).kv_len << " heads " << (p).heads_q << "/" << (p).heads_kv << " W " \
                 << (p).window_left << " causal " << (p).causal << " D " << (p).head_dim)

}  // namespace

TEST_CASE("oracle: W_R = 0 gives exactly softmax", "[oracle]") {
  SEEDED_RNG();
  for (const Problem& base : mixed_shapes(Family::softmax)) {
    DESCRIBE(base);
    Inputs in = make_inputs(base, rng);
    const Vec softmax = run(base, in);
    CHECK(rel_err(softmax, reference(base, in)) <= kTol);
    Problem p = base;
    for (Family f : {Family::parallax, Family::parallax_uncentered}) {
      p.family = f;
      const Vec with_probe = run(p, in);
      CHECK(rel_err(with_probe, softmax) > 1e-3);  // the correction is really visible
      Inputs zero = in;
      std::fill(zero.r.begin(), zero.r.end(), 0.0);
      CHECK(run(p, zero) == softmax);  // d2 = O2 = 0 exactly, so bit-identical
    }
  }
}

TEST_CASE("oracle: effective weights sum to 1 and reproduce the output", "[oracle]") {
  SEEDED_RNG();
  int negative = 0, above_one = 0;
  for (Family f : kFamilies)
    for (const Problem& p : mixed_shapes(f)) {
      DESCRIBE(p);
      const Inputs in = make_inputs(p, rng);
      const Vec o = run(p, in);
      for (int b = 0; b < p.batch; ++b)
        for (int i = 0; i < p.q_len; ++i)
          for (int h = 0; h < p.heads_q; ++h) {
            const auto row = plx::oracle::row_of(p, in.q.data(), in.r.data(), in.k.data(),
                                                 in.v.data(), b, i, h);
            const Vec a = plx::oracle::effective_weights(f, row);
            const Vec pw = plx::oracle::effective_weights(Family::softmax, row);
            const std::size_t qo = ((std::size_t(b) * p.q_len + i) * p.heads_q + h) * p.head_dim;
            Vec mixed(p.head_dim, 0.0), want(o.begin() + qo, o.begin() + qo + p.head_dim);
            double sum = 0, tbar = 0;
            for (int j = 0; j < p.kv_len; ++j) {
              if (!sees(p, b, i, j)) REQUIRE(a[j] == 0.0);
              sum += a[j];
              negative += a[j] < 0;
              above_one += a[j] > 1;
              double u = 0;
              for (int d = 0; d < p.head_dim; ++d) {
                mixed[d] += a[j] * row.v[j * row.stride + d];
                u += in.r[qo + d] * row.k[j * row.stride + d];
              }
              tbar += pw[j] * u;
            }
            const double unit = row.lo < row.hi ? 1.0 : 0.0;  // an empty row has no weights
            // Uncentered weights p(1 - u) are not affine: they sum to 1 - r.kbar.
            CHECK(std::abs(sum - (f == Family::parallax_uncentered ? unit - tbar : unit)) <= kTol);
            CHECK(rel_err(mixed, want) <= kTol);
          }
    }
  CHECK(negative > 0);  // affine weights: Parallax can go negative ...
  CHECK(above_one > 0); // ... and above one (section 2.2)
}

TEST_CASE("oracle: streaming equals direct for any tile size", "[oracle]") {
  SEEDED_RNG();
  for (Family f : kFamilies)
    for (const Problem& p : mixed_shapes(f)) {
      DESCRIBE(p);
      const Inputs in = make_inputs(p, rng);
      const Vec direct = run(p, in);
      CHECK(rel_err(direct, reference(p, in)) <= kTol);
      for (int tile : {1, 3, 4, 5, 16, 64, 100}) {
        INFO("tile " << tile);
        Vec o(q_size(p), -1.0);
        plx::oracle::attention_streaming(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(),
                                         o.data(), tile);
        CHECK(rel_err(o, direct) <= kTol);
      }
    }
}

TEST_CASE("oracle: streaming state matches the two-pass state", "[oracle]") {
  SEEDED_RNG();
  Problem p = shape(Family::parallax, 9, 40, 32);
  p.window_left = 13;
  const Inputs in = make_inputs(p, rng);
  for (int i = 0; i < p.q_len; ++i) {
    const auto row = plx::oracle::row_of(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), 0, i, 0);
    const auto ref = plx::oracle::direct_state(row);
    for (int tile : {1, 3, 7, 64}) {
      const auto s = plx::oracle::stream(row, 0, row.len, tile);
      CHECK(s.m == ref.m);  // the running max ends at the true max over visible keys
      CHECK(std::abs(s.d1 - ref.d1) <= kTol * ref.d1);
      CHECK(std::abs(s.d2 - ref.d2) <= kTol * ref.d1);
      CHECK(rel_err(s.O1, ref.O1) <= kTol);
      CHECK(rel_err(s.O2, ref.O2) <= kTol);
    }
  }
}

TEST_CASE("oracle: split-KV partials merged equal direct", "[oracle]") {
  SEEDED_RNG();
  int empty_splits = 0;
  for (Family f : kFamilies) {
    std::vector<Problem> ps = mixed_shapes(f);
    ps.push_back(shape(f, 1, 5));  // 7 splits over 5 keys: two are empty
    Problem windowed = shape(f, 1, 40);
    windowed.window_left = 6;  // only the last split has visible keys
    ps.push_back(windowed);
    for (const Problem& p : ps) {
      DESCRIBE(p);
      const Inputs in = make_inputs(p, rng);
      const Vec direct = run(p, in);
      for (int splits : {1, 2, 3, 7}) {
        INFO("splits " << splits);
        Vec o(q_size(p), -1.0);
        plx::oracle::attention_split_kv(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(),
                                        o.data(), splits);
        CHECK(rel_err(o, direct) <= kTol);
        const auto row = plx::oracle::row_of(p, in.q.data(), in.r.data(), in.k.data(),
                                             in.v.data(), 0, p.q_len - 1, 0);
        for (const auto& s : plx::oracle::split_partials(row, splits)) {
          if (s.m != -INFINITY) continue;
          ++empty_splits;
          CHECK(s.d1 == 0.0);
          CHECK(s.d2 == 0.0);
          CHECK(rel_err(s.O1, Vec(p.head_dim, 0.0)) == 0.0);
          CHECK(rel_err(s.O2, Vec(p.head_dim, 0.0)) == 0.0);
        }
      }
    }
  }
  CHECK(empty_splits > 0);
  // Merging only empty partials is an empty row: output 0, not NaN.
  plx::oracle::State e(4);
  Vec o(4, -1.0);
  plx::oracle::finalize(Family::parallax, plx::oracle::merge({e, e, e}), o.data());
  CHECK(o == Vec(4, 0.0));
}

TEST_CASE("oracle: LLA with the solved probe equals Parallax", "[oracle]") {
  SEEDED_RNG();
  for (auto [q_len, kv_len, D, w] : {std::tuple{23, 23, 8, -1}, {6, 30, 16, -1}, {1, 41, 16, 9}}) {
    Problem p = shape(Family::parallax, q_len, kv_len, D);
    p.window_left = w;
    DESCRIBE(p);
    const double lambda = 0.3;
    Inputs in = make_inputs(p, rng);
    Vec lla(q_size(p)), rho_c(q_size(p));
    plx::oracle::lla_naive(p, lambda, in.q.data(), in.k.data(), in.v.data(), lla.data(),
                           rho_c.data(), 0.0);
    in.r = plx::oracle::solved_probes(p, lambda, in.q.data(), in.k.data(), in.v.data());
    CHECK(rel_err(run(p, in), lla) <= kTol);
    CHECK(rel_err(reference(p, in), lla) <= kTol);
    // rho* = (1 + kappa) rho_C with kappa = rho_C.delta / (1 - rho_C.delta) (section 2.5).
    for (int i = 0; i < q_len; ++i) {
      const auto row = plx::oracle::row_of(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), 0, i, 0);
      const Vec pw = plx::oracle::effective_weights(Family::softmax, row);
      Vec delta(D, 0.0), scaled(D), star(in.r.begin() + i * D, in.r.begin() + (i + 1) * D);
      for (int j = 0; j < kv_len; ++j)
        for (int d = 0; d < D; ++d) delta[d] += pw[j] * in.k[j * D + d];
      double rd = 0;
      for (int d = 0; d < D; ++d) rd += rho_c[i * D + d] * (delta[d] -= in.q[i * D + d]);
      for (int d = 0; d < D; ++d) scaled[d] = (1 + rd / (1 - rd)) * rho_c[i * D + d];
      CHECK(rel_err(scaled, star) <= kTol);
    }
  }
}

TEST_CASE("oracle: fully masked rows give 0, not NaN", "[oracle]") {
  SEEDED_RNG();
  std::vector<Problem> ps;
  for (Family f : kFamilies) {
    Problem p = shape(f, 8, 3);  // causal, q_len > L: the first five rows see nothing
    ps.push_back(p);
    p = shape(f, 4, 12);
    p.window_left = 0;  // zero keys in the window
    ps.push_back(p);
    p.window_left = 3;
    p.causal = false;
    p.batch = 3;
    p.seqused_k = {0, 12, 2};  // batch 0 sees nothing
    ps.push_back(p);
  }
  for (const Problem& p : ps) {
    DESCRIBE(p);
    const Inputs in = make_inputs(p, rng);
    const Vec ref = reference(p, in);
    Vec stream(q_size(p)), split(q_size(p)), lla(q_size(p));
    plx::oracle::attention_streaming(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(),
                                     stream.data(), 4);
    plx::oracle::attention_split_kv(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(),
                                    split.data(), 3);
    plx::oracle::lla_naive(p, 0.3, in.q.data(), in.k.data(), in.v.data(), lla.data());
    int masked = 0;
    for (const Vec& o : {run(p, in), stream, split}) {
      CHECK(rel_err(o, ref) <= kTol);
      for (int b = 0; b < p.batch; ++b)
        for (int i = 0; i < p.q_len; ++i) {
          bool any = false;
          for (int j = 0; j < p.kv_len; ++j) any |= sees(p, b, i, j);
          if (any) continue;
          ++masked;
          const std::size_t qo = (std::size_t(b) * p.q_len + i) * p.heads_q * p.head_dim;
          for (int d = 0; d < p.head_dim; ++d) {
            REQUIRE(o[qo + d] == 0.0);
            REQUIRE(lla[qo + d] == 0.0);
          }
        }
    }
    CHECK(masked > 0);
  }
}

TEST_CASE("oracle: decode, prefill and chunked prefill with causal, window and GQA",
          "[oracle]") {
  SEEDED_RNG();
  for (Family f : kFamilies)
    for (auto [q_len, kv_len] : {std::pair{1, 23}, {19, 19}, {6, 23}})
      for (int w : {-1, 5, 7})
        for (int g : {1, 2, 4, 8})
          for (bool causal : {true, false}) {
            Problem p = shape(f, q_len, kv_len);
            p.batch = 2;
            p.heads_q = 8;
            p.heads_kv = 8 / g;
            p.window_left = w;
            p.causal = causal;
            p.qk_scale = w == 7 ? 0.37 : 0.0;  // an explicit scale must not touch r.k
            DESCRIBE(p);
            const Inputs in = make_inputs(p, rng);
            CHECK(rel_err(run(p, in), reference(p, in)) <= kTol);
          }
}

TEST_CASE("oracle: GQA equals each q head run against its kv head alone", "[oracle]") {
  SEEDED_RNG();
  for (Family f : kFamilies)
    for (int g : {1, 2, 4, 8}) {
      Problem p = shape(f, 5, 17);
      p.batch = 2;
      p.heads_q = 8;
      p.heads_kv = 8 / g;
      p.window_left = 7;
      DESCRIBE(p);
      const Inputs in = make_inputs(p, rng);
      const Vec full = run(p, in);
      Problem one = p;
      one.heads_q = one.heads_kv = 1;
      const int D = p.head_dim;
      for (int h = 0; h < p.heads_q; ++h) {
        INFO("q head " << h);
        Inputs s{Vec(q_size(one)), Vec(q_size(one)), Vec(kv_size(one)), Vec(kv_size(one))};
        Vec want(q_size(one));
        for (int b = 0; b < p.batch; ++b) {
          for (int i = 0; i < p.q_len; ++i)
            for (int d = 0; d < D; ++d) {
              const std::size_t src = ((b * p.q_len + i) * p.heads_q + h) * D + d;
              s.q[(b * p.q_len + i) * D + d] = in.q[src];
              s.r[(b * p.q_len + i) * D + d] = in.r[src];
              want[(b * p.q_len + i) * D + d] = full[src];
            }
          for (int j = 0; j < p.kv_len; ++j)
            for (int d = 0; d < D; ++d) {
              const std::size_t src = ((b * p.kv_len + j) * p.heads_kv + h / g) * D + d;
              s.k[(b * p.kv_len + j) * D + d] = in.k[src];
              s.v[(b * p.kv_len + j) * D + d] = in.v[src];
            }
        }
        CHECK(rel_err(run(one, s), want) <= kTol);
      }
    }
}

TEST_CASE("oracle: seqused_k equals each batch run alone with kv_len = L_b", "[oracle]") {
  SEEDED_RNG();
  for (Family f : kFamilies)
    for (auto [q_len, w, causal] :
         {std::tuple{1, -1, true}, {1, 5, true}, {4, -1, true}, {4, 7, true}, {4, -1, false},
          {4, 5, false}}) {
      Problem p = shape(f, q_len, 21);
      p.causal = causal;
      p.batch = 4;
      p.heads_q = 4;
      p.heads_kv = 2;
      p.window_left = w;
      p.seqused_k = {21, 1, 9, std::uniform_int_distribution<int>(1, 21)(rng)};
      DESCRIBE(p);
      INFO("seqused_k[3] " << p.seqused_k[3]);
      const Inputs in = make_inputs(p, rng);
      const Vec full = run(p, in);
      const std::size_t qrow = std::size_t(p.q_len) * p.heads_q * p.head_dim;
      const std::size_t krow = std::size_t(p.heads_kv) * p.head_dim;
      for (int b = 0; b < p.batch; ++b) {
        INFO("batch " << b);
        Problem one = p;
        one.batch = 1;
        one.kv_len = p.seqused_k[b];
        one.seqused_k.clear();
        const auto kb = in.k.begin() + b * p.kv_len * krow, vb = in.v.begin() + b * p.kv_len * krow;
        const Inputs s{Vec(in.q.begin() + b * qrow, in.q.begin() + (b + 1) * qrow),
                       Vec(in.r.begin() + b * qrow, in.r.begin() + (b + 1) * qrow),
                       Vec(kb, kb + one.kv_len * krow), Vec(vb, vb + one.kv_len * krow)};
        const Vec want(full.begin() + b * qrow, full.begin() + (b + 1) * qrow);
        CHECK(rel_err(run(one, s), want) <= kTol);
      }
    }
}

TEST_CASE("oracle: covariance form equals the kernel form", "[oracle]") {
  SEEDED_RNG();
  for (auto [q_len, kv_len, w] : {std::tuple{33, 33, -1}, {1, 50, -1}, {8, 40, 11}}) {
    Problem p = shape(Family::parallax, q_len, kv_len, 64);
    p.window_left = w;
    DESCRIBE(p);
    const Inputs in = make_inputs(p, rng);
    const Vec kernel = run(p, in);
    CHECK(rel_err(kernel, reference(p, in)) <= kTol);
    // Centered-correction form: vbar - sum_j p_j [r.(k_j - kbar)] v_j, per row.
    const int D = p.head_dim;
    for (int i = 0; i < q_len; ++i) {
      const auto row = plx::oracle::row_of(p, in.q.data(), in.r.data(), in.k.data(), in.v.data(), 0, i, 0);
      const Vec pw = plx::oracle::effective_weights(Family::softmax, row);
      Vec kbar(D, 0.0), o(D, 0.0);
      for (int j = 0; j < kv_len; ++j)
        for (int d = 0; d < D; ++d) kbar[d] += pw[j] * in.k[j * D + d];
      for (int j = 0; j < kv_len; ++j) {
        double u = 0;
        for (int d = 0; d < D; ++d) u += in.r[i * D + d] * (in.k[j * D + d] - kbar[d]);
        for (int d = 0; d < D; ++d) o[d] += pw[j] * (1 - u) * in.v[j * D + d];
      }
      CHECK(rel_err(o, Vec(kernel.begin() + i * D, kernel.begin() + (i + 1) * D)) <= kTol);
    }
  }
}

TEST_CASE("oracle: invalid problems throw UnsupportedError naming the field", "[oracle]") {
  const Vec buf(4096, 0.5);
  Vec out(4096);
  auto expect = [&](Problem p, const std::string& field, const std::string& value,
                    const double* r) {
    INFO("expecting " << field << " " << value);
    try {
      plx::oracle::attention(p, buf.data(), r, buf.data(), buf.data(), out.data());
      FAIL("no exception");
    } catch (const plx::UnsupportedError& e) {
      CHECK_THAT(e.what(), Catch::Contains(field) && Catch::Contains(value));
    }
  };
  auto with = [](auto edit) {
    Problem p = shape(Family::parallax, 2, 4, 8);
    edit(p);
    return p;
  };
  const double* r = buf.data();
  expect(with([](Problem& p) { p.batch = 0; }), "batch", "0", r);
  expect(with([](Problem& p) { p.q_len = -1; }), "q_len", "-1", r);
  expect(with([](Problem& p) { p.kv_len = 0; }), "kv_len", "0", r);
  expect(with([](Problem& p) { p.heads_q = 0; }), "heads_q", "0", r);
  expect(with([](Problem& p) { p.heads_kv = -3; }), "heads_kv", "-3", r);
  expect(with([](Problem& p) { p.head_dim = 0; }), "head_dim", "0", r);
  expect(with([](Problem& p) { p.heads_q = 6, p.heads_kv = 4; }), "heads_q = 6", "heads_kv = 4", r);
  expect(with([](Problem& p) { p.seqused_k = {4, 4}; }), "seqused_k", "2", r);
  expect(with([](Problem& p) { p.batch = 2, p.seqused_k = {3, 5}; }), "seqused_k[1]", "5", r);
  expect(with([](Problem& p) { p.seqused_k = {-1}; }), "seqused_k[0]", "-1", r);
  expect(with([](Problem& p) { p.window_left = -2; }), "window_left", "-2", r);
  expect(with([](Problem& p) { p.qk_scale = -0.5; }), "qk_scale", "-0.5", r);
  expect(with([](Problem& p) { p.qk_scale = NAN; }), "qk_scale", "nan", r);
  expect(with([](Problem&) {}), "r", "parallax", nullptr);
  // Valid edge cases do not throw: softmax without a probe, seqused_k = 0.
  CHECK_NOTHROW(plx::oracle::attention(with([](Problem& p) { p.family = Family::softmax; }),
                                       buf.data(), nullptr, buf.data(), buf.data(), out.data()));
  CHECK_NOTHROW(plx::oracle::attention(with([](Problem& p) { p.seqused_k = {0}; }), buf.data(),
                                       r, buf.data(), buf.data(), out.data()));
}

// --- common/half.hpp ------------------------------------------------------------------

namespace {

// Magnitude of a 16-bit code for rounding purposes: Inf sits one ulp above the largest
// finite value, which is where IEEE overflow rounding puts the threshold.
double magnitude(std::uint16_t h, bool bf16) {
  const std::uint16_t a = h & 0x7fff;
  if (a == (bf16 ? 0x7f80 : 0x7c00)) return bf16 ? std::ldexp(1.0, 128) : 65536.0;
  return std::abs(double(bf16 ? plx::half::bf16_to_float(a) : plx::half::fp16_to_float(a)));
}

// Checks that h is the round-to-nearest-even code of the finite float x.
void check_nearest(float x, bool bf16) {
  const std::uint16_t h = bf16 ? plx::half::float_to_bf16(x) : plx::half::float_to_fp16(x);
  INFO((bf16 ? "bf16 " : "fp16 ") << std::hexfloat << x << " -> 0x" << std::hex << h);
  const std::uint16_t inf = bf16 ? 0x7f80 : 0x7c00, a = h & 0x7fff;
  REQUIRE(a <= inf);
  REQUIRE(bool(h & 0x8000) == std::signbit(x));
  const double ax = std::abs(double(x)), err = std::abs(ax - magnitude(a, bf16));
  if (a > 0) {
    const double below = std::abs(ax - magnitude(a - 1, bf16));
    REQUIRE(err <= below);
    if (err == below) REQUIRE((a & 1) == 0);
  }
  if (a < inf) {
    const double above = std::abs(ax - magnitude(a + 1, bf16));
    REQUIRE(err <= above);
    if (err == above) REQUIRE((a & 1) == 0);
  }
}

}  // namespace

TEST_CASE("half: every 16-bit code round-trips through float", "[half]") {
  for (std::uint32_t c = 0; c <= 0xffff; ++c) {
    const auto h = std::uint16_t(c);
    INFO("code 0x" << std::hex << c);
    const float f16 = plx::half::fp16_to_float(h), b16 = plx::half::bf16_to_float(h);
    if (std::isnan(f16)) {
      REQUIRE(std::isnan(plx::half::fp16_to_float(plx::half::float_to_fp16(f16))));
    } else {
      REQUIRE(plx::half::float_to_fp16(f16) == h);
    }
    if (std::isnan(b16)) {
      REQUIRE(std::isnan(plx::half::bf16_to_float(plx::half::float_to_bf16(b16))));
    } else {
      REQUIRE(plx::half::float_to_bf16(b16) == h);
    }
  }
}

TEST_CASE("half: float -> 16 bit is round-to-nearest-even", "[half]") {
  using namespace plx::half;
  SEEDED_RNG();
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int n = 0; n < 200000; ++n) {
    const float x = std::bit_cast<float>(bits(rng));
    if (std::isnan(x)) continue;
    check_nearest(x, true);
    // Concentrate fp16 samples on its range, subnormals included: exponent 2^-26 .. 2^17.
    const int e = std::uniform_int_distribution<int>(-26, 17)(rng);
    check_nearest(std::ldexp(std::bit_cast<float>((bits(rng) & 0x807fffffu) | 0x3f800000u), e), false);
  }
  // Exact ties: the midpoint of every pair of adjacent finite codes is a float.
  for (std::uint32_t c = 0; c < 0x7f80; ++c)
    for (bool bf16 : {false, true}) {
      if (!bf16 && c >= 0x7c00) continue;
      const auto lo = std::uint16_t(c), hi = std::uint16_t(c + 1);
      const double mid = 0.5 * (magnitude(lo, bf16) + magnitude(hi, bf16));
      if (mid > std::numeric_limits<float>::max()) continue;
      check_nearest(float(mid), bf16);
      check_nearest(-float(mid), bf16);
    }
  CHECK(float_to_fp16(1.0f) == 0x3c00);
  CHECK(float_to_fp16(65504.0f) == 0x7bff);
  CHECK(float_to_fp16(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(float_to_fp16(65520.0f) == 0x7c00);  // tie at the top rounds to Inf
  CHECK(float_to_fp16(-INFINITY) == 0xfc00);
  CHECK(float_to_fp16(-0.0f) == 0x8000);
  CHECK(float_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // tie to even (zero)
  CHECK(float_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(float_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: tie to even
  CHECK(float_to_fp16(std::ldexp(5.0f, -25)) == 0x0002);  // 2.5 units: tie to even
  CHECK(float_to_fp16(std::ldexp(1023.5f, -24)) == 0x0400);  // rounds up into the normals
  CHECK(std::isnan(fp16_to_float(float_to_fp16(NAN))));
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);       // tie to even
  CHECK(float_to_bf16(1.0f + std::ldexp(3.0f, -8)) == 0x3f82);       // tie to even
  CHECK(float_to_bf16(std::bit_cast<float>(0x7f800001u)) != 0x7f80);  // NaN stays NaN
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(bf16_to_float(float_to_bf16(std::ldexp(1.0f, -133))) == std::ldexp(1.0f, -133));
  CHECK(round_to(true, 1.0 + std::ldexp(1.0, -9)) == 1.0);
  CHECK(round_to(false, 1.0 + std::ldexp(1.0, -12)) == 1.0);
  CHECK(round_fp16(1e6) == INFINITY);
}
