#include "runtime/oracle_backward.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <parallax/errors.hpp>

namespace plx::oracle {
namespace {

double dot(const double* a, const double* b, int n) {
  double s = 0;
  for (int d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

std::size_t q_index(const Problem& p, int b, int i, int h) {
  return ((std::size_t(b) * p.q_len + i) * p.heads_q + h) * p.head_dim;
}
std::size_t kv_index(const Problem& p, int b, int j, int hk) {
  return ((std::size_t(b) * p.kv_len + j) * p.heads_kv + hk) * p.head_dim;
}

// One row's softmax weights over its visible keys [lo, hi), indexed j - lo, and the
// statistics of section 3.3. The probe term u_j = r.k_j is 0 without a probe.
struct RowSolve {
  std::vector<double> p, u;
  double m = 0, d1 = 0, bart = 0;
};

RowSolve solve_row(const Problem& pr, const Row& row) {
  RowSolve s;
  const int n = std::max(0, row.hi - row.lo);
  s.p.assign(n, 0.0);
  s.u.assign(n, 0.0);
  if (n == 0) return s;
  std::vector<double> s1(n);
  s.m = -std::numeric_limits<double>::infinity();
  for (int j = row.lo; j < row.hi; ++j) {
    const double* kj = row.k + j * row.stride;
    s1[j - row.lo] = row.scale * dot(row.q, kj, row.head_dim);
    if (row.r) s.u[j - row.lo] = dot(row.r, kj, row.head_dim);
    s.m = std::max(s.m, s1[j - row.lo]);
  }
  for (int x = 0; x < n; ++x) s.d1 += s.p[x] = std::exp(s1[x] - s.m);
  for (int x = 0; x < n; ++x) s.p[x] /= s.d1;
  if (pr.family == Family::parallax)
    for (int x = 0; x < n; ++x) s.bart += s.p[x] * s.u[x];
  return s;
}

void check(const Problem& p, const double* q, const double* r, const double* k, const double* v) {
  validate(p);
  if (!q || !k || !v) throw UnsupportedError("oracle backward: q, k and v must not be null");
  if (has_probe(p.family) && !r)
    throw UnsupportedError("oracle backward: r is null but the family needs the probe");
}

}  // namespace

std::size_t stats_offset(const Problem& p, int b, int h, int i) {
  return ((std::size_t(b) * p.heads_q + h) * p.q_len + i) * kStatsPerRow;
}

void forward_stats(const Problem& p, const double* q, const double* r, const double* k, const double* v,
                   double* stats, double* barv) {
  check(p, q, r, k, v);
  if (!stats) throw UnsupportedError("oracle forward_stats: stats must not be null");
  const int D = p.head_dim;
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.heads_q; ++h)
      for (int i = 0; i < p.q_len; ++i) {
        const Row row = row_of(p, q, r, k, v, b, i, h);
        const RowSolve s = solve_row(p, row);
        double* st = stats + stats_offset(p, b, h, i);
        const bool empty = s.d1 == 0;
        st[0] = empty ? 0.0 : s.m;
        st[1] = s.d1;
        st[2] = s.bart;
        st[3] = empty ? std::numeric_limits<double>::infinity() : s.m + std::log(s.d1);
        if (!barv) continue;
        double* out = barv + q_index(p, b, i, h);
        std::fill(out, out + D, 0.0);
        for (int j = row.lo; j < row.hi; ++j)
          for (int d = 0; d < D; ++d) out[d] += s.p[j - row.lo] * row.v[j * row.stride + d];
      }
}

Gradients backward(const Problem& p, const double* q, const double* r, const double* k, const double* v,
                   const double* dout) {
  check(p, q, r, k, v);
  if (!dout) throw UnsupportedError("oracle backward: dout must not be null");
  const int D = p.head_dim, G = p.heads_q / p.heads_kv;
  const double c = effective_scale(p);
  const bool probe = has_probe(p.family);
  Gradients g;
  const std::size_t nq = std::size_t(p.batch) * p.q_len * p.heads_q * D;
  const std::size_t nkv = std::size_t(p.batch) * p.kv_len * p.heads_kv * D;
  g.dq.assign(nq, 0.0);
  g.dr.assign(nq, 0.0);
  g.dk.assign(nkv, 0.0);
  g.dv.assign(nkv, 0.0);
  std::vector<double> o(D), barv(D);
  for (int b = 0; b < p.batch; ++b)
    for (int i = 0; i < p.q_len; ++i)
      for (int h = 0; h < p.heads_q; ++h) {
        const Row row = row_of(p, q, r, k, v, b, i, h);
        if (row.lo >= row.hi) continue;
        const RowSolve s = solve_row(p, row);
        const std::size_t qi = q_index(p, b, i, h);
        const double* gi = dout + qi;
        // Effective weights w_j = p_j (1 + bart - u_j) (section 2.2; bart = 0 for the
        // uncentered member, u = 0 for softmax), so o = sum_j w_j v_j.
        std::fill(o.begin(), o.end(), 0.0);
        std::fill(barv.begin(), barv.end(), 0.0);
        for (int j = row.lo; j < row.hi; ++j) {
          const int x = j - row.lo;
          const double w = s.p[x] * (1 + s.bart - s.u[x]);
          for (int d = 0; d < D; ++d) {
            o[d] += w * row.v[j * row.stride + d];
            barv[d] += s.p[x] * row.v[j * row.stride + d];
          }
        }
        const double t = dot(gi, o.data(), D);
        // Section 4.1: b = g.barv enters through dbart/du; the uncentered member has no
        // bart, and its gradients are the centered formulas with bart = b = 0.
        const double bb = p.family == Family::parallax ? dot(gi, barv.data(), D) : 0.0;
        const int hk = h / G;
        for (int j = row.lo; j < row.hi; ++j) {
          const int x = j - row.lo;
          const double* kj = row.k + j * row.stride;
          const std::size_t ki = kv_index(p, b, j, hk);
          const double a = dot(gi, row.v + j * row.stride, D);
          const double delta = a - bb;
          const double gl = s.p[x] * (a - t + (s.bart - s.u[x]) * delta);  // dL/ds1, s1 = c q.k
          const double gu = -s.p[x] * delta;                               // dL/du, u = r.k
          const double w = s.p[x] * (1 + s.bart - s.u[x]);
          for (int d = 0; d < D; ++d) {
            g.dq[qi + d] += c * gl * kj[d];
            g.dk[ki + d] += c * gl * row.q[d];
            g.dv[ki + d] += w * gi[d];
            if (probe) {
              g.dr[qi + d] += gu * kj[d];
              g.dk[ki + d] += gu * row.r[d];
            }
          }
        }
      }
  return g;
}

}  // namespace plx::oracle
