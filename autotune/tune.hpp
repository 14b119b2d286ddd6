// The tuner's search: problem buckets for a spec, every variant ranked by the roofline
// model per bucket, and (with a GPU) the race of the best-ranked ones: oracle check, a
// first timing pass, an interleaved re-measure of the finalists, a winner decided within
// noise (autotune/measure.hpp). Printing, reports and the subprocess that isolates
// crashing candidates belong to the CLI (tools/plx/cmd_tune.cpp, tune_worker.cpp).
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autotune/bucket_key.hpp"
#include "autotune/measure.hpp"
#include "autotune/oracle_check.hpp"
#include "autotune/roofline.hpp"
#include "generator/spec.hpp"
#include "generator/variant.hpp"
#include "parallax/parallax.hpp"

namespace plx::tune {

// One tuning problem. Variants of another family, dtype, head dim or mask compute something
// else, so they never compete: a bucket is a kernel class x a problem shape.
struct Bucket {
  Op op = Op::decode;
  Family family = Family::parallax;
  DType dtype = DType::bf16;
  int head_dim = 128;
  bool causal = true;
  int gqa = 1;
  Problem shape;  // shape.window: -1, or the width windowed variants are tuned at

  // Pasteable flags (plx bench / plx explore take them), e.g. "--op decode --family
  // parallax --dtype bf16 --head-dim 128 --mask causal --batch 1 --q-len 1 --kv-len 8192
  // --heads-q 32 --heads-kv 8".
  std::string flags() const;
  AttentionArgs args() const;  // without pointers
};

inline constexpr int kHeadsKv = 8;
inline constexpr int kBackwardLengths[] = {1024, 4096, 16384};  // tuning buckets use 8 kv heads, heads_q = 8 x gqa

// Shapes per op: decode kv lengths {1024, 8192, 32768} x batch {1, 32} (one new token);
// prefill q = kv lengths {1024, 8192} at batch 1; backward q = kv lengths kBackwardLengths
// at batch 1 (the training shapes of issue 7: causal self-attention).
// Buckets: every kernel class present among `variants` (in their order) x the spec's gqa
// values x the shapes; windowed classes once per window width of the spec.
std::vector<Bucket> buckets_for(const KernelSpec& spec, const std::vector<Variant>& variants);

// The database bucket of b (bucket_of, or bucket_of_backward for a backward bucket).
BucketId bucket_id(const Bucket& b);
// What the engine runs in b untuned: default_variant, or untuned_backward_variant.
Variant untuned_variant(const Bucket& b, Arch arch);

// Can v run bucket b (same op, family, dtype, head dim, causal, window compiled in)?
bool serves(const Variant& v, const Bucket& b);

struct Ranked {
  Variant v;
  Prediction p;
};

// The variants serving b, fastest prediction first; ties go to fewer FLOPs, then less
// shared memory, then the name, so the order is the same on every run.
std::vector<Ranked> rank(const std::vector<Variant>& variants, const Bucket& b, const GpuProfile& g);

// ---- measuring a bucket (autotune/measure.hpp's harness) --------------------------------

// One variant in a bucket's race.
struct Candidate {
  Variant v;
  Prediction p;               // the model's
  int model_rank = -1;        // position in rank() (0 = the model's favourite; -1: not ranked)
  bool model_choice = false;  // what the engine runs untuned (default_variant)
  int registers = -1;         // per thread from ptxas; -1 unknown
  int spill_bytes = -1;       // > 0: rejected before timing
  std::string name() const { return v.name(); }
};

// The variants timed for a bucket: the model's first `top` of `ranked` that do not spill
// (`spills(v)` > 0), in model order, and the untuned choice wherever it ranks (appended
// when it is not among them; it must be timed for the speedup and wins ties).
// `registers`/`spills` give the compile results (-1 unknown).
std::vector<Candidate> candidates_for(const std::vector<Ranked>& ranked, const Variant& untuned, int top,
                                      const std::function<int(const Variant&)>& registers,
                                      const std::function<int(const Variant&)>& spills);

enum class Status { timed, failed, rejected };
const char* to_string(Status s);

struct CandidateResult {
  Status status = Status::failed;
  std::string error;            // failed / rejected: why
  measure::Stats first;         // the first pass, timed alone (n = 0 when not timed)
  measure::Stats final;         // the interleaved re-measure (finalists only)
  bool finalist = false;
  bool tied = false;            // within noise of the fastest finalist
};

struct BucketOutcome {
  std::vector<CandidateResult> results;  // parallel to the candidates
  int winner = -1;      // index into the candidates; -1: nothing measured
  int untuned = -1;     // index of the model's choice (-1: not among the candidates)
  int runner_up = -1;   // fastest other finalist (else other timed candidate)
  double winner_us = 0, untuned_us = 0, runner_up_us = 0;  // interleaved medians
  double noise_us = 0;  // the noise the decision was made with
  std::string error;    // the bucket as a whole failed (e.g. its inputs do not fit)
  double seconds = 0;   // wall time spent
  // untuned_us / winner_us, or 0 when the untuned choice was not measured.
  double speedup() const { return untuned >= 0 && winner_us > 0 && untuned_us > 0 ? untuned_us / winner_us : 0; }
};

struct TuneOptions {
  double budget_s = 0.5;      // wall time for the bucket's timing: half the first pass, half the finals
  int finalists = 3;          // the fastest this many of the first pass go to the interleaved round ...
  double finalist_within = 0.10;  // ... when within this fraction of the fastest (plus the untuned choice)
  bool check = true;          // run the oracle check before timing
  std::uint64_t spin_ns = 20000;
  double mem_fraction = 0.8;  // of the free device memory the inputs may take (a user's
                              // process under PLX_TUNE=sync takes less)
};

// What tune_bucket needs from whoever owns the kernels (plx::Engine, or the engine's
// internals for PLX_TUNE=sync): launch a named variant, load it ahead of timing, and
// optional observers (progress, a subprocess watchdog, streamed results).
struct Runner {
  std::function<void(const std::string& variant, const AttentionArgs&, void* stream)> launch;
  std::function<void(const std::string& variant)> prepare;
  // Backward buckets (tune_backward_bucket): the named backward variant on the forward
  // arguments and gradients, and the engine's own training forward (stats set), which
  // produces o, stats and barv for it.
  std::function<void(const std::string& variant, const AttentionArgs&, const BackwardArgs&, void* stream)>
      launch_backward;
  std::function<void(const AttentionArgs&, void* stream)> forward;
  std::function<void(int candidate, const char* phase)> on_begin;  // "check", "time", "final"
  std::function<void(int candidate, const CandidateResult&)> on_result;
};

class BackwardOracleCase;  // autotune/backward_tune.hpp

// Oracle checks across buckets: each small problem's inputs and fp64 reference are built
// once (OracleCase), each (variant, problem) is judged once. Holds device memory: destroy
// it before the context goes.
struct CheckCache {
  std::map<std::string, std::string> verdicts;  // "" passed, else the failure
  std::map<std::string, std::shared_ptr<OracleCase>> cases;
  std::map<std::string, std::shared_ptr<BackwardOracleCase>> backward_cases;
};

// CUDA errors after which the context is unusable (illegal address, trap, launch failure):
// the caller must not carry on in this process.
bool is_sticky(const DriverError& e);

// Checks, times (first pass), re-measures the finalists interleaved and decides the
// winner (measure::decide) for one bucket. A candidate that fails is recorded and
// skipped; a sticky driver error is recorded (on_result) and rethrown.
BucketOutcome tune_bucket(measure::Harness& h, measure::AttentionInputs& inputs, const Bucket& b,
                          const std::vector<Candidate>& candidates, const Runner& run, const TuneOptions& o,
                          CheckCache* checks = nullptr);

// ---- the race itself, shared by tune_bucket and tune_backward_bucket --------------------

// What a race needs from a bucket's op: a timed call per candidate (inputs rotated by
// `rep`) and the candidate's oracle verdict ("" passed, else why not; cached by the op).
struct RaceOps {
  std::function<measure::Call(const std::string& name)> call_of;
  std::function<std::string(const std::string& name)> check;
};
// A fresh outcome for `cands` (results sized, the untuned index set).
BucketOutcome outcome_for(const std::vector<Candidate>& cands);
// `out` with its wall time since t0.
BucketOutcome finish_outcome(BucketOutcome out, std::chrono::steady_clock::time_point t0);
// Checks, first pass, interleaved finals and decide (tune_bucket's rules), on `out`
// from outcome_for once the inputs are prepared.
BucketOutcome race(measure::Harness& h, const std::vector<Candidate>& cands, const Runner& run, const TuneOptions& o,
                   const RaceOps& ops, BucketOutcome out, std::chrono::steady_clock::time_point t0);
// The first line of an error message, for reports.
std::string first_line(const std::string& s);
// Runs `prepare` (a bucket's input allocation): "" when it worked, else the first line of
// the plx::Error it threw, which the bucket records. A sticky driver error is rethrown.
std::string prepare_error(const std::function<void()>& prepare);

// Bytes and FLOPs a call really needs, for achieved rates (not the model's padded work):
//   decode : K and V of the visible span once, q (+ r) in, o out
//   prefill: FLOPs = visible (query, key) pairs x flops_per_pair; bytes as decode
double visible_pairs(const AttentionArgs& a);  // summed over batch and q heads
double useful_flops(const AttentionArgs& a);   // family's own convention (8D or 4D per pair)
double useful_backward_flops(const AttentionArgs& a);  // backward: 22D or 14D per pair
double useful_bytes(const AttentionArgs& a);

}  // namespace plx::tune
