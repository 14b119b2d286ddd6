// The GPU side of `plx tune` runs in worker subprocesses (`plx tune --worker JOB.json`), so
// a candidate that crashes the CUDA context (illegal address, trap) or hangs cannot take
// the tune down: the parent sees the worker die or fall silent, records the candidate in
// flight as failed with the reason, leaves it out, and starts a fresh worker on the
// buckets not yet done. This is the parent's half; the worker is tools/plx/tune_worker.cpp.
// The worker reports on stdout, one JSON object per line:
//   {"ev":"begin","b":B,"c":C,"phase":"check|time|final"}
//   {"ev":"result","b":B,"c":C,...CandidateResult}     as each candidate finishes
//   {"ev":"done","b":B,...BucketOutcome}               as each bucket finishes
//   {"ev":"ceilings",...Ceilings,"wgmma_error":...}    (ceilings job)
//   {"ev":"fatal","error":"..."}                       before exiting on an error
// A failure in the interleaved finals ("final") is blamed on the first finalist: the
// candidates there have all passed their own check and timing, so it is rare.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autotune/ceilings.hpp"
#include "autotune/tune.hpp"

namespace plx::tune {

struct WorkerBucket {
  Bucket bucket;
  std::string key;  // for messages
  std::vector<Candidate> candidates;
};

struct WorkerOptions {
  // The worker's command line; the job file's path is appended (`plx tune --worker`).
  std::vector<std::string> command;
  double budget_s = 160;    // timing budget for all the buckets together
  double bucket_min_s = 0.05, bucket_max_s = 5;  // per-bucket share, clamped
  double stall_s = 90;      // a worker silent this long is killed (the candidate "timed out")
  int max_restarts = 10;
  TuneOptions tune;
};

struct WorkerEvents {
  std::function<void(int bucket, int candidate, const std::string& phase)> begin;
  std::function<void(int bucket, int candidate, const CandidateResult&)> result;
  std::function<void(int bucket, const BucketOutcome&)> done;
};

// Runs the buckets in worker subprocesses. Returns every bucket's outcome (indices into
// `buckets`), candidates indexed as in buckets[i].candidates; a candidate that killed a
// worker is failed there ("crashed ..."/"timed out ...") and "not run: ..." in the
// buckets after. A bucket the workers never finished has its error set.
std::vector<BucketOutcome> run_tune_workers(const std::vector<WorkerBucket>& buckets, const WorkerOptions& o,
                                            const WorkerEvents& ev);

// The reproducibility pass of `plx tune --repeat`: after the race, each bucket's winner is
// re-timed in a fresh worker (new process, new allocations, minutes later) through the
// same path as the race: run_tune_workers on a job of one candidate per bucket, the
// winner, without the oracle check (it passed it in the race). With one candidate,
// tune_bucket times it alone and then "interleaved" on its own; the interleaved median is
// what the race recorded as winner_us, so repeat_us is the same quantity measured again.
// No protocol change: the worker sees an ordinary tune job.
// `outs` are run_tune_workers' outcomes for `buckets`; `o` carries the repeat's budget.
struct Repeat {
  double us = 0;      // the winner's median, re-timed; 0 when not
  std::string error;  // why not ("no winner to repeat", the worker's reason)
};
std::vector<Repeat> run_repeat_workers(const std::vector<WorkerBucket>& buckets,
                                       const std::vector<BucketOutcome>& outs, const WorkerOptions& o,
                                       const WorkerEvents& ev = {});

// Measures the GPU's ceilings in a worker subprocess (`command` + job file; the wgmma
// kernel is ours: a fault there must not kill the caller). Throws plx::Error with the
// worker's reason. *wgmma_error: why the wgmma rate is missing, if it is.
Ceilings run_ceilings_worker(const std::vector<std::string>& command, double timeout_s = 120,
                             std::string* wgmma_error = nullptr);

}  // namespace plx::tune
