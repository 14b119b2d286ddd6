// Double-precision CPU oracle for every family the generator emits
// (docs: parallax-math.md sections 2, 3, 6, 7.2). GPU tests compare against it, and
// test_oracle checks its pieces against each other, so each evaluation path below is
// written independently: direct (two-pass, section 2.1), streaming (online state,
// section 3.2), split-KV + merge (section 3.6), effective weights (section 2.2), LLA.
//
// Units: m is always in natural-log units of s1 = qk_scale * q.k (never log2).
#pragma once
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include "generator/variant.hpp"
#include "parallax/parallax.hpp"

namespace plx::oracle {

struct Problem {
  Family family = Family::parallax;
  int batch = 1, q_len = 1, kv_len = 1, heads_q = 1, heads_kv = 1, head_dim = 64;
  bool causal = true;          // query i sees key j iff j <= L_b - q_len + i
  int window_left = -1;        // -1: none; else W keys ending at i' = L_b - q_len + i
  double qk_scale = 0;         // 0 means 1/sqrt(head_dim); scales q.k only, never r.k
  std::vector<int> seqused_k;  // empty: L_b = kv_len for every batch
};

// The problem an engine call poses (shape, family, mask, scale; pointers ignored), with
// the live KV lengths the caller put behind a.seqused_k (empty: none).
Problem problem_of(const AttentionArgs& a, std::vector<int> seqused_k = {});

// Throws plx::UnsupportedError naming the offending field and its value.
void validate(const Problem&);
double effective_scale(const Problem&);
int live_len(const Problem&, int b);  // L_b
// Keys visible to query i of batch b: always one contiguous range [first, second).
std::pair<int, int> visible_range(const Problem&, int b, int i);

// Tensors are contiguous [batch, len, heads, head_dim]. GQA: q head h reads kv head
// h / (heads_q / heads_kv). r may be nullptr for softmax (it is ignored there).
// Output is written for every row; a row with no visible key is exactly 0.
void attention(const Problem&, const double* q, const double* r, const double* k,
               const double* v, double* o);

// --- one query row -----------------------------------------------------------------

// What one query row reads. Key j of its kv head starts at k + j * stride.
struct Row {
  int head_dim = 0;
  double scale = 0;           // resolved qk scale
  const double* q = nullptr;
  const double* r = nullptr;  // nullptr: no probe (softmax); s2 is then 0
  const double* k = nullptr;
  const double* v = nullptr;
  std::ptrdiff_t stride = 0;
  int len = 0;                // keys addressable (kv_len); streaming walks all, masking
  int lo = 0, hi = 0;         // visible keys [lo, hi)
};
// p must be valid (see validate); no check here, so tests can build rows cheaply.
Row row_of(const Problem&, const double* q, const double* r, const double* k, const double* v,
           int b, int i, int h);

// Online state of section 3.1. Empty (no visible key): m = -inf, everything else 0.
struct State {
  double m = -std::numeric_limits<double>::infinity();
  double d1 = 0, d2 = 0;
  std::vector<double> O1, O2;
  explicit State(int head_dim = 0) : O1(head_dim, 0.0), O2(head_dim, 0.0) {}
};

// Section 2.1 as written: max over the visible keys, then plain sums.
State direct_state(const Row&);
// Section 3.2: keys [begin, end) of [0, row.len) in tiles of `tile`, masking s1 only,
// m_safe rule. Invisible keys are still read (s2 = r.k), so they must be finite (3.5).
State stream(const Row&, int begin, int end, int tile);
// Section 3.3; inv = 0 for an empty row, so its output is exactly 0.
void finalize(Family, const State&, double* o);
void direct(Family, const Row&, double* o);

// Section 3.6. bounds are floor(s * len / n) (numpy linspace), so some may be empty.
std::vector<int> split_bounds(int len, int splits);
// Partials over keys [0, len); len < 0 means row.len.
std::vector<State> split_partials(const Row&, int splits, int len = -1);
State merge(const std::vector<State>&);

// a_j (section 2.2) for j in [0, row.len), 0 outside [lo, hi); o = sum_j a_j v_j.
// parallax: p(1 + t - u), sums to 1; uncentered: p(1 - u); softmax: p.
std::vector<double> effective_weights(Family, const Row&);

// Whole-problem variants of `attention` through the other paths.
void attention_streaming(const Problem&, const double* q, const double* r, const double* k,
                         const double* v, double* o, int tile);
// Splits [0, L_b) of each row's batch, like the decode kernel over the live length.
void attention_split_kv(const Problem&, const double* q, const double* r, const double* k,
                        const double* v, double* o, int splits);

// --- LLA (section 7.2, FlashLLA naive.py convention) ------------------------------

// One row. Writes o; rho_c (FlashLLA's rho = Sigma^-1 mu), if given. Empty row: zeros.
void lla_row(const Row&, double lambda, double delta_eps, double* o, double* rho_c = nullptr);
// Every row of the problem (family and r ignored); o, rho_c laid out like q.
void lla_naive(const Problem&, double lambda, const double* q, const double* k, const double* v,
               double* o, double* rho_c = nullptr, double delta_eps = 1e-12);
// rho* = (Sigma_c + lambda I)^-1 (kbar - q) (section 2.5); zeros for an empty row.
std::vector<double> solved_probe(const Row&, double lambda);
// rho* for every row, laid out like r, so attention(parallax, r = it) == lla_naive.
std::vector<double> solved_probes(const Problem&, double lambda, const double* q,
                                  const double* k, const double* v);

// Solves A x = b for symmetric positive definite A (n x n, row-major) by Cholesky.
// Throws plx::Error if A is not positive definite.
std::vector<double> solve_spd(std::vector<double> A, std::vector<double> b);

}  // namespace plx::oracle
