// What `plx tune` writes besides the tuning database: the JSON report (every bucket's
// candidates, predicted and measured, the winner, the speedup over the untuned choice)
// and the roofline picture (SVG written here, no plotting library). Pure functions of
// the tuner's results, so CI checks the schema and the SVG without a GPU. The JSON forms
// of the measurement records double as the protocol between `plx tune` and its worker
// subprocess (tools/plx/tune_worker.cpp).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "autotune/ceilings.hpp"
#include "autotune/tune.hpp"
#include "common/json.hpp"

namespace plx::tune {

inline constexpr const char* kReportSchema = "parallax-jit tune report";
inline constexpr int kReportVersion = 1;

struct BucketReport {
  Bucket bucket;
  std::string key;                       // BucketId::key() of the bucket's shape
  std::vector<Ranked> ranked;            // every variant serving it, model order
  std::vector<Candidate> candidates;     // the ones raced (GPU), in candidates_for order
  std::optional<BucketOutcome> outcome;  // measured (GPU); parallel to candidates
  double repeat_us = 0;                  // plx tune --repeat: the winner re-timed (0: not)
  std::string repeat_error;              // --repeat: why it was not
};

struct Report {
  std::vector<std::string> specs;  // spec sources
  std::string gpu;                 // device name; empty in a dry run
  std::string arch;                // "sm_90a"
  bool measured = false;
  GpuProfile profile;              // what the model ranked with (measured ceilings applied)
  std::optional<Ceilings> ceilings;
  double budget_s = 0;             // the timing budget asked for
  double seconds = 0;              // wall time of the whole tune
  bool repeated = false;           // plx tune --repeat ran
  double repeat_budget_s = 0;      // its timing budget
  double repeat_seconds = 0;       // its wall time
  std::optional<measure::Repro> repro;  // over the buckets' (winner_us, repeat_us)
  std::vector<BucketReport> buckets;
};

// Achieved rate of a measured call in the unit that matters for its op:
//   decode : useful_bytes / time in TB/s, against the copy bandwidth;
//   prefill: useful_flops / time in TFLOP/s, against the tensor-core rate;
//   backward: useful_backward_flops (22D or 14D per visible pair) / time, likewise.
struct Achieved {
  const char* unit = "TB/s";
  double value = 0;
  double fraction = 0;  // of the ceiling (0 when the ceiling is unknown)
};
Achieved achieved(const Bucket& b, double us, const GpuProfile& ceilings);

// Geometric mean of the speedups over the untuned choice of the buckets that have one;
// 0 when none does.
double geomean_speedup(const std::vector<BucketReport>& buckets);

json::Value to_json(const measure::Stats& s);
measure::Stats stats_from_json(const json::Value& v);
json::Value to_json(const CandidateResult& r);
CandidateResult result_from_json(const json::Value& v);
json::Value to_json(const BucketOutcome& o);  // results included
BucketOutcome outcome_from_json(const json::Value& v);
json::Value to_json(const Ceilings& c);
Ceilings ceilings_from_json(const json::Value& v);
json::Value to_json(const AttentionArgs& a);  // the shape fields only
AttentionArgs args_from_json(const json::Value& v);

json::Value report_json(const Report& r);

// Log-log roofline: x = FLOP per byte of each raced variant (the model's counts of the work
// it does), y = those FLOPs over its measured median (predicted time in a dry run);
// decode and prefill in two colours, winners filled; the memory roof (copy bandwidth) and
// the tensor-core roof(s) drawn from `r.ceilings`, else from the profile, and labelled with
// their source. A well-formed standalone SVG 1.1 document.
std::string roofline_svg(const Report& r);

}  // namespace plx::tune
