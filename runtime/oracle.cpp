#include "runtime/oracle.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#include <parallax/errors.hpp>

namespace plx::oracle {

Problem problem_of(const AttentionArgs& a, std::vector<int> seqused_k) {
  Problem p;
  p.family = a.family;
  p.batch = a.batch;
  p.q_len = a.q_len;
  p.kv_len = a.kv_len;
  p.heads_q = a.heads_q;
  p.heads_kv = a.heads_kv;
  p.head_dim = a.head_dim;
  p.causal = a.causal;
  p.window_left = a.window_left;
  p.qk_scale = a.qk_scale;
  p.seqused_k = std::move(seqused_k);
  return p;
}
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

[[noreturn]] void unsupported(const std::string& msg) {
  throw UnsupportedError("oracle: " + msg);
}

void require_positive(const char* field, int value) {
  if (value <= 0) unsupported(fmt::format("{} = {} must be positive", field, value));
}

double dot(const double* a, const double* b, int n) {
  double s = 0;
  for (int d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

void axpy(double a, const double* x, double* y, int n) {
  for (int d = 0; d < n; ++d) y[d] += a * x[d];
}

const double* key(const Row& row, int j) { return row.k + j * row.stride; }
const double* value(const Row& row, int j) { return row.v + j * row.stride; }
double score(const Row& row, int j) { return row.scale * dot(row.q, key(row, j), row.head_dim); }
// s2 = r.k is unscaled and never masked (section 3.5): masked keys get w = 0 instead.
double probe(const Row& row, int j) {
  return row.r ? dot(row.r, key(row, j), row.head_dim) : 0.0;
}

// Softmax weights p_j over the visible keys, indexed j - lo.
std::vector<double> softmax_weights(const Row& row) {
  std::vector<double> p(std::max(0, row.hi - row.lo));
  double m = kNegInf, sum = 0;
  for (int j = row.lo; j < row.hi; ++j) m = std::max(m, score(row, j));
  for (int j = row.lo; j < row.hi; ++j) sum += p[j - row.lo] = std::exp(score(row, j) - m);
  for (double& x : p) x /= sum;
  return p;
}

std::size_t q_offset(const Problem& p, int b, int i, int h) {
  return ((std::size_t(b) * p.q_len + i) * p.heads_q + h) * p.head_dim;
}

void check_pointers(const Problem& p, const double* q, const double* r, const double* k,
                    const double* v, const void* o) {
  if (!q || !k || !v || !o) unsupported("q, k, v and o must not be null");
  if (has_probe(p.family) && !r)
    unsupported(fmt::format("r is null but family {} needs the probe", to_string(p.family)));
}

// Calls f(row, out) for every (b, i, h); out points at that row's slot of a q-shaped array.
template <class F>
void for_each_row(const Problem& p, const double* q, const double* r, const double* k,
                  const double* v, double* out, F&& f) {
  for (int b = 0; b < p.batch; ++b)
    for (int i = 0; i < p.q_len; ++i)
      for (int h = 0; h < p.heads_q; ++h)
        f(row_of(p, q, r, k, v, b, i, h), out + q_offset(p, b, i, h), b);
}

}  // namespace

void validate(const Problem& p) {
  require_positive("batch", p.batch);
  require_positive("q_len", p.q_len);
  require_positive("kv_len", p.kv_len);
  require_positive("heads_q", p.heads_q);
  require_positive("heads_kv", p.heads_kv);
  require_positive("head_dim", p.head_dim);
  if (p.heads_q % p.heads_kv != 0)
    unsupported(fmt::format("heads_q = {} is not a multiple of heads_kv = {}", p.heads_q,
                            p.heads_kv));
  if (p.window_left < -1)
    unsupported(fmt::format("window_left = {} must be -1 (none) or >= 0", p.window_left));
  if (!std::isfinite(p.qk_scale) || p.qk_scale < 0)
    unsupported(fmt::format("qk_scale = {} must be finite and >= 0 (0: 1/sqrt(head_dim))",
                            p.qk_scale));
  if (p.seqused_k.empty()) return;
  if (int(p.seqused_k.size()) != p.batch)
    unsupported(fmt::format("seqused_k has {} entries but batch = {}", p.seqused_k.size(),
                            p.batch));
  for (int b = 0; b < p.batch; ++b)
    if (p.seqused_k[b] < 0 || p.seqused_k[b] > p.kv_len)
      unsupported(fmt::format("seqused_k[{}] = {} is outside [0, kv_len = {}]", b,
                              p.seqused_k[b], p.kv_len));
}

double effective_scale(const Problem& p) {
  return p.qk_scale != 0 ? p.qk_scale : 1.0 / std::sqrt(double(p.head_dim));
}

int live_len(const Problem& p, int b) { return p.seqused_k.empty() ? p.kv_len : p.seqused_k[b]; }

std::pair<int, int> visible_range(const Problem& p, int b, int i) {
  const int L = live_len(p, b);
  const int last = L - p.q_len + i;  // i': the end-aligned diagonal
  const int hi = p.causal ? std::clamp(last + 1, 0, L) : L;
  const int lo = p.window_left >= 0 ? std::max(0, last - p.window_left + 1) : 0;
  return {std::min(lo, hi), hi};
}

Row row_of(const Problem& p, const double* q, const double* r, const double* k, const double* v,
           int b, int i, int h) {
  const int hk = h / (p.heads_q / p.heads_kv);
  const std::size_t kv_base = (std::size_t(b) * p.kv_len * p.heads_kv + hk) * p.head_dim;
  Row row;
  row.head_dim = p.head_dim;
  row.scale = effective_scale(p);
  row.q = q + q_offset(p, b, i, h);
  row.r = has_probe(p.family) && r ? r + q_offset(p, b, i, h) : nullptr;
  row.k = k + kv_base;
  row.v = v + kv_base;
  row.stride = std::ptrdiff_t(p.heads_kv) * p.head_dim;
  row.len = p.kv_len;
  std::tie(row.lo, row.hi) = visible_range(p, b, i);
  return row;
}

State direct_state(const Row& row) {
  State s(row.head_dim);
  if (row.lo >= row.hi) return s;
  for (int j = row.lo; j < row.hi; ++j) s.m = std::max(s.m, score(row, j));
  for (int j = row.lo; j < row.hi; ++j) {
    const double p1 = std::exp(score(row, j) - s.m), p2 = p1 * probe(row, j);
    s.d1 += p1;
    s.d2 += p2;
    axpy(p1, value(row, j), s.O1.data(), row.head_dim);
    axpy(p2, value(row, j), s.O2.data(), row.head_dim);
  }
  return s;
}

State stream(const Row& row, int begin, int end, int tile) {
  if (tile < 1) unsupported(fmt::format("tile = {} must be positive", tile));
  if (begin < 0 || begin > end || end > row.len)
    unsupported(fmt::format("key range [{}, {}) is outside [0, {})", begin, end, row.len));
  State s(row.head_dim);
  std::vector<double> s1, s2;
  for (int t0 = begin; t0 < end; t0 += tile) {
    const int t1 = std::min(end, t0 + tile);
    s1.assign(t1 - t0, kNegInf);
    s2.assign(t1 - t0, 0.0);
    double tile_max = kNegInf;
    for (int j = t0; j < t1; ++j) {
      if (j >= row.lo && j < row.hi) s1[j - t0] = score(row, j);
      s2[j - t0] = probe(row, j);
      tile_max = std::max(tile_max, s1[j - t0]);
    }
    const double m_new = std::max(s.m, tile_max);
    const double m_safe = m_new == kNegInf ? 0.0 : m_new;  // no visible key yet: w = alpha = 0
    const double alpha = std::exp(s.m - m_safe);
    s.d1 *= alpha;
    s.d2 *= alpha;
    for (int d = 0; d < row.head_dim; ++d) s.O1[d] *= alpha, s.O2[d] *= alpha;
    for (int j = t0; j < t1; ++j) {
      const double w = std::exp(s1[j - t0] - m_safe), wr = w * s2[j - t0];
      s.d1 += w;
      s.d2 += wr;
      axpy(w, value(row, j), s.O1.data(), row.head_dim);
      axpy(wr, value(row, j), s.O2.data(), row.head_dim);
    }
    s.m = m_new;
  }
  return s;
}

void finalize(Family family, const State& s, double* o) {
  const double inv = s.d1 > 0 ? 1.0 / s.d1 : 0.0;
  const double bart = s.d2 * inv;
  for (std::size_t d = 0; d < s.O1.size(); ++d) {
    const double barv = s.O1[d] * inv;
    switch (family) {
      case Family::softmax: o[d] = barv; break;
      case Family::parallax: o[d] = barv + bart * barv - s.O2[d] * inv; break;
      case Family::parallax_uncentered: o[d] = barv - s.O2[d] * inv; break;
    }
  }
}

void direct(Family family, const Row& row, double* o) { finalize(family, direct_state(row), o); }

std::vector<int> split_bounds(int len, int splits) {
  if (splits < 1) unsupported(fmt::format("splits = {} must be positive", splits));
  std::vector<int> bounds(splits + 1);
  for (int s = 0; s <= splits; ++s) bounds[s] = int(std::int64_t(s) * len / splits);
  return bounds;
}

std::vector<State> split_partials(const Row& row, int splits, int len) {
  if (len < 0) len = row.len;
  const std::vector<int> bounds = split_bounds(len, splits);
  std::vector<State> parts;
  for (int s = 0; s < splits; ++s)
    parts.push_back(stream(row, bounds[s], bounds[s + 1], std::max(1, bounds[s + 1] - bounds[s])));
  return parts;
}

State merge(const std::vector<State>& parts) {
  if (parts.empty()) unsupported("merge of zero partial states");
  State out(int(parts.front().O1.size()));
  for (const State& s : parts) out.m = std::max(out.m, s.m);
  const double m_safe = out.m == kNegInf ? 0.0 : out.m;  // all splits empty: every weight is 0
  for (const State& s : parts) {
    const double w = std::exp(s.m - m_safe);
    out.d1 += w * s.d1;
    out.d2 += w * s.d2;
    axpy(w, s.O1.data(), out.O1.data(), int(out.O1.size()));
    axpy(w, s.O2.data(), out.O2.data(), int(out.O2.size()));
  }
  return out;
}

std::vector<double> effective_weights(Family family, const Row& row) {
  std::vector<double> a(row.len, 0.0);
  const std::vector<double> p = softmax_weights(row);
  double tbar = 0;
  for (int j = row.lo; j < row.hi; ++j) tbar += p[j - row.lo] * probe(row, j);
  for (int j = row.lo; j < row.hi; ++j) {
    const double u = probe(row, j), pj = p[j - row.lo];
    switch (family) {
      case Family::softmax: a[j] = pj; break;
      case Family::parallax: a[j] = pj * (1 + tbar - u); break;
      case Family::parallax_uncentered: a[j] = pj * (1 - u); break;
    }
  }
  return a;
}

void attention(const Problem& p, const double* q, const double* r, const double* k,
               const double* v, double* o) {
  validate(p);
  check_pointers(p, q, r, k, v, o);
  for_each_row(p, q, r, k, v, o, [&](const Row& row, double* out, int) {
    direct(p.family, row, out);
  });
}

void attention_streaming(const Problem& p, const double* q, const double* r, const double* k,
                         const double* v, double* o, int tile) {
  validate(p);
  check_pointers(p, q, r, k, v, o);
  for_each_row(p, q, r, k, v, o, [&](const Row& row, double* out, int) {
    finalize(p.family, stream(row, 0, row.len, tile), out);
  });
}

void attention_split_kv(const Problem& p, const double* q, const double* r, const double* k,
                        const double* v, double* o, int splits) {
  validate(p);
  check_pointers(p, q, r, k, v, o);
  for_each_row(p, q, r, k, v, o, [&](const Row& row, double* out, int b) {
    finalize(p.family, merge(split_partials(row, splits, live_len(p, b))), out);
  });
}

// --- LLA --------------------------------------------------------------------------

std::vector<double> solve_spd(std::vector<double> A, std::vector<double> b) {
  const int n = int(b.size());
  if (A.size() != std::size_t(n) * n) unsupported("solve_spd: matrix and vector sizes differ");
  for (int c = 0; c < n; ++c) {  // A <- L (lower triangle), A = L L^T
    double diag = A[c * n + c] - dot(&A[c * n], &A[c * n], c);
    if (!(diag > 0)) throw Error(fmt::format("oracle: solve_spd: matrix is not positive "
                                             "definite (pivot {} = {})", c, diag));
    A[c * n + c] = std::sqrt(diag);
    for (int i = c + 1; i < n; ++i)
      A[i * n + c] = (A[i * n + c] - dot(&A[i * n], &A[c * n], c)) / A[c * n + c];
  }
  for (int i = 0; i < n; ++i) b[i] = (b[i] - dot(&A[i * n], b.data(), i)) / A[i * n + i];
  for (int i = n - 1; i >= 0; --i) {
    for (int j = i + 1; j < n; ++j) b[i] -= A[j * n + i] * b[j];
    b[i] /= A[i * n + i];
  }
  return b;
}

namespace {
void check_lambda(double lambda) {
  if (!std::isfinite(lambda) || lambda < 0)
    unsupported(fmt::format("lambda = {} must be finite and >= 0", lambda));
}
}  // namespace

// Builds Sigma from the raw moments exactly as section 7.2 lists them (as the FlashLLA
// kernel accumulates them), rather than from k - q, to stay close to the kernel.
void lla_row(const Row& row, double lambda, double delta_eps, double* o, double* rho_c) {
  check_lambda(lambda);
  const int D = row.head_dim;
  std::fill(o, o + D, 0.0);
  if (rho_c) std::fill(rho_c, rho_c + D, 0.0);
  if (row.lo >= row.hi) return;
  double m = kNegInf, omega = 0;
  for (int j = row.lo; j < row.hi; ++j) m = std::max(m, score(row, j));
  std::vector<double> w(row.hi - row.lo), mu_t(D, 0.0), sig(std::size_t(D) * D, 0.0);
  for (int j = row.lo; j < row.hi; ++j) {
    const double wj = w[j - row.lo] = std::exp(score(row, j) - m);
    const double* kj = key(row, j);
    omega += wj;
    axpy(wj, kj, mu_t.data(), D);
    for (int a = 0; a < D; ++a) axpy(wj * kj[a], kj, &sig[std::size_t(a) * D], D);
  }
  std::vector<double> mu(D);
  for (int a = 0; a < D; ++a) mu[a] = mu_t[a] - omega * row.q[a];
  for (int a = 0; a < D; ++a)
    for (int c = 0; c < D; ++c)
      sig[a * D + c] += -mu_t[a] * row.q[c] - row.q[a] * mu_t[c] + omega * row.q[a] * row.q[c] +
                        (a == c ? lambda * omega : 0.0);
  const std::vector<double> rho = solve_spd(std::move(sig), mu);
  double den = omega - dot(mu.data(), rho.data(), D);
  den += delta_eps * double((den > 0) - (den < 0));
  const double rho_q = dot(rho.data(), row.q, D);
  for (int j = row.lo; j < row.hi; ++j) {
    const double s = w[j - row.lo] * (1 - dot(rho.data(), key(row, j), D) + rho_q) / den;
    axpy(s, value(row, j), o, D);
  }
  if (rho_c) std::copy(rho.begin(), rho.end(), rho_c);
}

void lla_naive(const Problem& p, double lambda, const double* q, const double* k, const double* v,
               double* o, double* rho_c, double delta_eps) {
  validate(p);
  if (!q || !k || !v || !o) unsupported("q, k, v and o must not be null");
  for_each_row(p, q, nullptr, k, v, o, [&](const Row& row, double* out, int) {
    lla_row(row, lambda, delta_eps, out, rho_c ? rho_c + (out - o) : nullptr);
  });
}

std::vector<double> solved_probe(const Row& row, double lambda) {
  check_lambda(lambda);
  const int D = row.head_dim;
  if (row.lo >= row.hi) return std::vector<double>(D, 0.0);
  const std::vector<double> p = softmax_weights(row);
  std::vector<double> kbar(D, 0.0), A(std::size_t(D) * D, 0.0), dk(D);
  for (int j = row.lo; j < row.hi; ++j) axpy(p[j - row.lo], key(row, j), kbar.data(), D);
  for (int j = row.lo; j < row.hi; ++j) {
    for (int a = 0; a < D; ++a) dk[a] = key(row, j)[a] - kbar[a];
    for (int a = 0; a < D; ++a) axpy(p[j - row.lo] * dk[a], dk.data(), &A[std::size_t(a) * D], D);
  }
  for (int a = 0; a < D; ++a) A[a * D + a] += lambda;
  std::vector<double> rhs(D);
  for (int a = 0; a < D; ++a) rhs[a] = kbar[a] - row.q[a];
  return solve_spd(std::move(A), std::move(rhs));
}

std::vector<double> solved_probes(const Problem& p, double lambda, const double* q,
                                  const double* k, const double* v) {
  validate(p);
  std::vector<double> r(std::size_t(p.batch) * p.q_len * p.heads_q * p.head_dim);
  for_each_row(p, q, nullptr, k, v, r.data(), [&](const Row& row, double* out, int) {
    const std::vector<double> rho = solved_probe(row, lambda);
    std::copy(rho.begin(), rho.end(), out);
  });
  return r;
}

}  // namespace plx::oracle
