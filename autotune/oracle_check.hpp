// The tuner's correctness gate (issue 6, point 3): before a candidate is timed it runs one
// small problem shaped like its bucket -- same family, dtype, head dim, mask, window, GQA
// group and new-token count, with lengths that are not multiples of any tile and mixed
// live lengths -- and its output is compared with the double-precision CPU oracle
// (runtime/oracle.hpp). A fast wrong kernel must never become a winner.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "parallax/parallax.hpp"

namespace plx::tune {

// The small problem for a bucket's arguments (pointers ignored):
//   decode : batch 2, kv_len 300, live lengths {300, 123}, heads 2 x group / 2, q_len as given
//   prefill: batch 2, q_len = kv_len 136, live lengths {136, 136}, heads as decode
//   a window keeps its presence, width min(width, 77)
AttentionArgs check_problem(const AttentionArgs& bucket);
// What every check problem keeps of the bucket (lengths left to the caller): family,
// dtype, head_dim, causal, scale, the window (width at most 77), batch 2, 2 kv heads and
// the bucket's GQA group.
AttentionArgs check_problem_base(const AttentionArgs& bucket);
// The live lengths check_problem's problem uses (device seqused_k), one per batch.
std::vector<int> check_live_lengths(const AttentionArgs& problem);

// Relative L2 error allowed against the fp64 oracle (the [gpu] tests' bar).
double check_tolerance(DType dt);

// A random tensor of n elements in rows of `dim`: its bits in dtype `dt` and their exact
// values for the oracle; `rms` normalises each row to RMS 1 (q, r, k), else N(0, 1) (v).
// Shared with the backward's check (autotune/backward_tune.hpp).
struct HostTensor {
  std::vector<std::uint16_t> bits;
  std::vector<double> exact;
};
HostTensor random_tensor(std::mt19937_64& rng, std::size_t n, int dim, DType dt, bool rms);

// One small problem's random inputs (RMS-normed q, r, k; raw v) on the device and its fp64
// reference, built once and checked against any number of variants (the reference costs
// far more than a launch). Construct with the device's context current.
class OracleCase {
 public:
  OracleCase(const AttentionArgs& problem, std::uint64_t seed = 1);
  ~OracleCase();
  OracleCase(const OracleCase&) = delete;
  OracleCase& operator=(const OracleCase&) = delete;

  // Poisons the output, runs `launch(args, stream)`, synchronises `stream`, compares.
  // Returns "" when the output matches, else one line saying what was wrong and where.
  // Driver errors propagate (the context may be unusable after them; the caller decides).
  using Launch = std::function<void(const AttentionArgs&, void* stream)>;
  std::string check(const Launch& launch, void* stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plx::tune
