// The tuner's backward buckets (issue 7: the backward's tile axes tunable like the
// forward's). A backward bucket (op backward, tune.hpp buckets_for) is raced like a forward
// one -- tune.hpp's race(): oracle check, first pass, interleaved finals, decide -- but the
// timed call is the backward call, preprocess + gradients kernel
// (Engine::attention_backward with the candidate's name), on inputs a training step has:
// q, r, k, v, dO, and the forward's o, stats and barv, produced once per input set by the
// engine's own forward with statistics. The oracle check compares every gradient with the
// fp64 CPU oracle (runtime/oracle_backward.hpp) on a small problem of the bucket's class.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autotune/measure.hpp"
#include "autotune/tune.hpp"
#include "parallax/parallax.hpp"

namespace plx::tune {

// Bytes of one backward call's tensors: q, r (probe families), k, v, dO, o, barv (parallax),
// the stats (16 B a row), dq, dr (probe), dk, dv.
//   parallax bf16 d128, batch 1, q = kv 1024, heads 16/8: q-shaped 7 x 4 MiB, kv-shaped
//   4 x 2 MiB, stats 256 KiB -> 36.25 MiB (38010880 B; sets align each to 256 B)
std::size_t backward_input_bytes(const AttentionArgs& shape);

// Rotating sets of a backward call's tensors, as measure::AttentionInputs for the forward:
// q, r, k, v and dO filled on the GPU, then o, stats and barv written by `forward` (the
// engine's training forward) once per set, so every timed backward reads a real forward's
// statistics. Enough sets to touch 2x the L2 between two uses of one (else a flush).
class BackwardInputs {
 public:
  explicit BackwardInputs(measure::Harness& h);
  ~BackwardInputs();
  BackwardInputs(const BackwardInputs&) = delete;
  BackwardInputs& operator=(const BackwardInputs&) = delete;

  using Forward = std::function<void(const AttentionArgs&, void* stream)>;
  // Throws plx::Error naming the bytes when one set does not fit in max_fraction of the
  // free memory (plus what this object holds).
  void prepare(const AttentionArgs& shape, double max_fraction, const Forward& forward);
  int sets() const;
  AttentionArgs args(int rep) const;  // forward arguments of set rep % sets() (stats, barv set)
  BackwardArgs grads(int rep) const;  // its gradients' pointers

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The small problem a backward bucket's candidates are checked on: batch 2, q = kv 136
// (no tile divides it), live lengths {136, 101} (keys past 101 get zero dk, dv), heads
// 2 x group / 2, a window kept at min(width, 77); the bucket's class otherwise.
AttentionArgs backward_check_problem(const AttentionArgs& bucket);
std::vector<int> backward_check_live_lengths(const AttentionArgs& problem);

// Max-norm relative error allowed per gradient, max|got - ref| / max|ref|: the [gpu]
// backward tests' per-case bound (test_gpu_backward.cpp kCaseTol), for both dtypes.
inline constexpr double kBackwardCheckTolerance = 3e-2;

// One small problem's inputs on the device and its fp64 gradients, built once and checked
// against any number of backward variants. Construct with the device's context current.
class BackwardOracleCase {
 public:
  explicit BackwardOracleCase(const AttentionArgs& problem, std::uint64_t seed = 1);
  ~BackwardOracleCase();
  BackwardOracleCase(const BackwardOracleCase&) = delete;
  BackwardOracleCase& operator=(const BackwardOracleCase&) = delete;

  // Runs `forward` (with stats) and `backward` on `stream` with every gradient poisoned
  // (NaN), synchronises, compares dq, dr (probe families), dk, dv. "" when all match, else
  // one line naming the gradient, its error and the problem. Driver errors propagate.
  using Backward = std::function<void(const AttentionArgs&, const BackwardArgs&, void* stream)>;
  std::string check(const BackwardInputs::Forward& forward, const Backward& backward, void* stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// tune_bucket for a backward bucket: run.launch_backward and run.forward must be set.
BucketOutcome tune_backward_bucket(measure::Harness& h, BackwardInputs& inputs, const Bucket& b,
                                   const std::vector<Candidate>& candidates, const Runner& run, const TuneOptions& o,
                                   CheckCache* checks = nullptr);

}  // namespace plx::tune
