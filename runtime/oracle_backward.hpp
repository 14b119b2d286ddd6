// Double-precision CPU oracle for the backward pass (parallax-math.md section 4) and for
// the per-row statistics the forward stores for it (section 3.3). The [gpu] backward
// tests compare against these; test_oracle_backward checks them against central finite
// differences of oracle::attention, so they do not share the derivation they test.
//
// Units: m and lse are natural-log units of s1 = qk_scale * q.k, like oracle.hpp.
#pragma once
#include <vector>

#include "runtime/oracle.hpp"

namespace plx::oracle {

// The forward's statistics of one query row, in this order (4 values per row):
//   m    max of the visible s1
//   d1   sum_j exp(s1_j - m)
//   bart d2 / d1 = sum_j p_j (r.k_j): centered Parallax only, 0 for the other families
//   lse  m + log(d1): the backward recomputes p_j = exp(s1_j - lse)
// A row with no visible key stores m = 0, d1 = 0, bart = 0, lse = +inf, so that
// exp(s1 - lse) = 0 for every finite s1 and nothing downstream divides by d1.
inline constexpr int kStatsPerRow = 4;

// Row (b, h, i) of the statistics lives at ((b * heads_q + h) * q_len + i) * 4: the rows
// of one head are contiguous, as the backward reads them tile by tile.
std::size_t stats_offset(const Problem&, int b, int h, int i);

// stats: batch * heads_q * q_len * 4 values. barv (nullable): sum_j p_j v_j laid out like
// q, 0 for an empty row (the GPU forward writes it for centered Parallax only).
void forward_stats(const Problem&, const double* q, const double* r, const double* k, const double* v,
                   double* stats, double* barv);

struct Gradients {
  std::vector<double> dq, dr, dk, dv;  // laid out like q, r, k, v; dr is all 0 for softmax
};

// Exact gradients of L = sum(dout * attention(p, q, r, k, v)). GQA: dk and dv of a kv head
// sum over the q heads of its group. Rows with no visible key contribute nothing (their dq,
// dr are 0), and keys no row sees (past seqused_k, outside every window) get dk = dv = 0.
Gradients backward(const Problem&, const double* q, const double* r, const double* k, const double* v,
                   const double* dout);

}  // namespace plx::oracle
