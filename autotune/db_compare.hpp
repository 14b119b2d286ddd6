// Do two tunes agree? (issue 6: "two plx tune runs on the same GPU pick the same winner,
// or winners whose times differ by less than the measured noise"). Compares two tuning
// databases (autotune/tuning_db.hpp) bucket by bucket; `plx db compare A B` prints it.
//
// A database carries what the question needs: per bucket the winner, its interleaved
// median (winner_us), the noise the tuner decided with (noise_us) and the runner-up. A
// bucket in both files is
//   same_winner  both runs picked the same variant;
//   tied         different winners whose times are not measurably different by the
//                tuner's own rule across runs (measure::compare_runs: within the larger
//                recorded noise, never less than measure::kNoiseFloor of the faster);
//   disagree     different winners further apart than that.
// Buckets in one file only are listed apart: they were not tuned (or every candidate
// failed) in the other run.
//
// A database from `plx tune --repeat` carries its run's reproducibility (DbRepro::rel, the
// p90 of how far a winner's time moved when re-timed later in a fresh worker). It is the
// between-run noise the recorded (within-run) noise misses, so compare_runs adds
// rel x the faster time to the maximum it judges against, for each file that has it;
// without it the rule is unchanged. Each bucket says which term decided (noise_by).
//
// The databases must come from separate cache directories (PLX_CACHE_DIR): a second
// tune into the same directory merges into the first file and keeps the faster winner
// per bucket, so that file can no longer tell the two runs apart.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "autotune/measure.hpp"
#include "autotune/tuning_db.hpp"
#include "common/json.hpp"

namespace plx {

enum class Agreement { same_winner, tied, disagree };
const char* to_string(Agreement a);  // "same", "tied", "disagree"

struct BucketComparison {
  std::string bucket;
  DbEntry a, b;
  Agreement verdict = Agreement::disagree;
  double diff_us = 0;   // b.winner_us - a.winner_us
  double noise_us = 0;  // what the difference was judged against (compare_runs)
  measure::NoiseTerm noise_by = measure::NoiseTerm::floor;  // the term that set noise_us
  // The same rule with the reproducibility terms left out (what a comparison without
  // --repeat would have said); equals `verdict`/`beyond_noise` when neither file has one.
  Agreement verdict_within_run = Agreement::disagree;
  bool beyond_within_run_noise = false;
  // The two winners' times are further apart than the noise. A disagreement always; a
  // same winner sometimes (the GPU ran at another speed in one run), which says the runs
  // are not comparable in time even though they chose alike.
  bool beyond_noise = false;
  // Each run's winner was the other run's runner-up: a near tie decided both ways.
  bool swapped = false;
};

struct DbComparison {
  std::vector<BucketComparison> both;  // buckets in both files, sorted by key
  std::vector<std::string> only_a, only_b;
  int same = 0, tied = 0, disagree = 0;
  int same_beyond_noise = 0;  // same winner, times apart by more than the noise
  std::optional<DbRepro> repro_a, repro_b;  // the files' reproducibility, when measured
  // Buckets the reproducibility terms changed: disagreements they turned into ties, and
  // same winners they brought back within the noise. 0 without repro.
  int tied_by_repro = 0, same_within_by_repro = 0;
  int agree() const { return same + tied; }
  // Every bucket of either file is in both and agrees (and there is at least one).
  bool all_agree() const { return disagree == 0 && only_a.empty() && only_b.empty() && !both.empty(); }
  // "agree 718/720 buckets (same winner 690, tied 28), disagree 2"
  std::string summary() const;
};

DbComparison compare_dbs(const DbFile& a, const DbFile& b);

// {"agree", "same", "tied", "disagree", "all_agree", "only_a": [..], "only_b": [..],
//  "repro_rel_a", "repro_rel_b" (null: not measured), "tied_by_repro", "same_within_by_repro",
//  "buckets": [{"bucket", "verdict", "winner_a", "winner_us_a", "noise_us_a", "repeat_us_a",
//  "runner_up_a", "runner_up_us_a", same for _b, "diff_us", "noise_us", "noise_by",
//  "verdict_within_run", "beyond_noise", "swapped"}]}
json::Value to_json(const DbComparison& c);

}  // namespace plx
