// The one timing harness behind `plx tune`, `plx bench`, `plx explore` and PLX_TUNE=sync
// (issue 6, point 4). Two halves:
//
//  * pure statistics and the winner rule (no GPU; unit-tested in CI):
//      summarize()      median, p10/p90, MAD of a sample;
//      compare_paired() is B slower than A, given samples taken in the same A-B-A-B
//                       rounds, by more than the noise of that comparison?
//      decide()         the fastest finalist and every finalist tied with it; the winner
//                       is the first of the tied in tie_before() order: the model's choice,
//                       then fewer registers, then the name.
//  * the GPU harness (Harness, AttentionInputs): CUDA events around each launch, a spin
//    kernel before it so the events time the GPU and not the host's enqueue, cold L2 by
//    rotating input sets whose total is at least 2x the L2 (or a flush when that would
//    take too many sets), warm-up by time, repeats by time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parallax/parallax.hpp"

namespace plx {
namespace cu {
class Device;
class Buffer;
}  // namespace cu

namespace measure {

// ---- statistics ------------------------------------------------------------------------

struct Stats {
  int n = 0;
  double median = 0, p10 = 0, p90 = 0;
  double mad = 0;  // median absolute deviation from the median
  double min = 0, max = 0;
  // (p90 - p10) / median: the relative width of the middle 80%.
  double rel_spread() const { return median > 0 ? (p90 - p10) / median : 0; }
};

// Quantile q in [0, 1] of sorted samples, linear between order statistics (the numpy
// default): {1, 2, 3, 4} q 0.5 -> 2.5; q 0.1 -> 1.3. Throws plx::Error on an empty sample.
double quantile(const std::vector<double>& sorted, double q);
// Throws plx::Error on an empty sample.
//   {5, 1, 4, 2, 3}: median 3, p10 1.4, p90 4.6, MAD 1 (deviations 2 2 1 1 0)
Stats summarize(std::vector<double> samples);

// Two measurements that differ by less than this fraction of the faster's median are never
// called different: GPU clocks and HBM refresh move medians by about this much between
// runs, more than the within-run confidence of a few hundred samples suggests.
inline constexpr double kNoiseFloor = 0.01;

// Which term of a noise estimate was the largest (ties: the earlier in this order).
enum class NoiseTerm {
  floor,    // floor_rel x the (faster) median
  paired,   // compare_paired: 2 x standard error of the median paired difference
  noise_a,  // compare_runs: the noise run A decided with
  noise_b,  //               the noise run B decided with
  repro_a,  //               run A's reproducibility x the faster median (RunTime::repro_rel)
  repro_b,  //               run B's
};
const char* to_string(NoiseTerm t);  // "floor", "paired", "noise_a", "noise_b", "repro_a", "repro_b"

struct Paired {
  double diff = 0;   // median over rounds of (b_i - a_i), same unit as the samples
  double noise = 0;  // max(2 x standard error of that median, floor x median(a))
  bool tied = false; // diff <= noise: b is not measurably slower than a
  NoiseTerm by = NoiseTerm::floor;  // the term that set `noise`
};
// a and b: samples of the same rounds (a[i] and b[i] were taken back to back), equal
// length >= 1. The standard error of the median of the differences is estimated as
// 1.2533 x 1.4826 x MAD / sqrt(n) (normal-consistent MAD; the median's efficiency).
//   a {10, 10, 10, 10}, b {10.05, ...}: diff 0.05, noise 0.1 (the 1% floor) -> tied
//   a {10, 10, 10, 10}, b {11, ...}   : diff 1, noise 0.1 -> not tied
Paired compare_paired(const std::vector<double>& a, const std::vector<double>& b, double floor_rel = kNoiseFloor);

// The same rule across two runs, where no paired samples exist: medians a and b of one
// quantity (e.g. one bucket's winner in two tunes), each with the noise its run decided
// with (Paired::noise / Decision::noise, which already hold the floor; 0 when unknown).
// Paired::diff is b - a; tied (two-sided here: neither is measurably slower) when |b - a|
// is within the larger of the two noises, never less than floor_rel x the faster median:
// the floor is what GPU clocks move a median by between runs, the within-run noise what
// each run could resolve.
//   a 10 (noise 0.1), b 10.08 (noise 0.12): diff 0.08, noise 0.12 -> tied
//   a 10 (noise 0),   b 10.5  (noise 0)   : diff 0.5,  noise 0.1 (floor) -> not tied
//
// A run that re-timed its winners later in a fresh process (`plx tune --repeat`) also
// knows how far a median moves between runs of one harness on this GPU: its
// reproducibility, repro_rel (the p90 of |repeat - first| / first over its buckets, see
// reproducibility()). That is the between-run noise the within-run terms miss, so it
// joins the maximum as repro_rel x the faster median; 0 (unknown) adds nothing, and
// without it the rule is the one above. Paired::by names the term that decided.
//   a 10 (noise 0.1, repro 0.05), b 10.3 (noise 0.1): noise 0.5 (repro_a) -> tied
struct RunTime {
  double us = 0;         // the median
  double noise = 0;      // the noise the run decided with (0: unknown)
  double repro_rel = 0;  // the run's reproducibility (0: not measured)
};
Paired compare_runs(const RunTime& a, const RunTime& b, double floor_rel = kNoiseFloor);
inline Paired compare_runs(double a, double a_noise, double b, double b_noise, double floor_rel = kNoiseFloor) {
  return compare_runs(RunTime{a, a_noise, 0}, RunTime{b, b_noise, 0}, floor_rel);
}

// How far a run's medians move when measured again: over pairs (first, repeat) of one
// quantity timed twice (a bucket's winner in the race and re-timed later in a fresh
// worker), the relative moves |repeat - first| / first. Pairs where either time is not
// positive (not measured) are skipped; nullopt when none is left.
//   {(10, 10.1), (10, 9.8), (20, 21), (5, 0)}: moves 1%, 2%, 5% -> n 3, median 2%,
//   p90 4.4% (quantile's interpolation), max 5%
struct Repro {
  int n = 0;              // pairs used
  double median_rel = 0;  // median relative move
  double p90_rel = 0;     // 90th percentile: the repro_rel a database stores
  double max_rel = 0;
};
std::optional<Repro> reproducibility(const std::vector<std::pair<double, double>>& first_repeat);

struct Contender {
  std::string name;
  bool model_choice = false;  // the variant the engine runs untuned (default_variant)
  int registers = -1;         // per thread; -1 unknown (sorts after every known count)
  std::vector<double> samples;  // interleaved rounds, same length for every contender
};

// The deterministic order among tied contenders: the model's choice first, then fewer
// registers, then the name.
bool tie_before(const Contender& a, const Contender& b);

struct Decision {
  int fastest = -1;          // lowest median (ties in the median: tie_before order)
  int winner = -1;           // first of `tied` in tie_before order
  std::vector<int> tied;     // contenders within noise of the fastest, fastest included
  std::vector<double> median;  // per contender (0 for one without samples)
  double noise = 0;          // the noise of the winner-vs-fastest or, when they are the same,
                             // of the closest comparison with the fastest
};
// Contenders without samples take no part. All empty: winner = fastest = -1.
Decision decide(const std::vector<Contender>& c, double floor_rel = kNoiseFloor);

// ---- GPU harness -----------------------------------------------------------------------

struct TimingOptions {
  double warmup_s = 0.005;   // untimed calls until this much wall time has passed ...
  int warmup_min = 2;        // ... and at least this many
  double budget_s = 0.05;    // timed calls until this much wall time has passed ...
  int min_reps = 5;          // ... but at least this many
  int max_reps = 200;        // and at most this many
  std::uint64_t spin_ns = 20000;  // GPU spin before each timed call (0: none)
};

// Enqueues one call on `stream`; `rep` counts the calls of this timing (warm-up included),
// so a caller rotates its input sets with rep % sets.
using Call = std::function<void(int rep, void* stream)>;

// Construct with the device's primary context current (cu::Device::make_current or a
// cu::CurrentContext for the harness's whole life). Not thread-safe.
class Harness {
 public:
  explicit Harness(const cu::Device& dev);
  ~Harness();
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void* stream() const;  // a CUstream owned by the harness
  std::size_t l2_bytes() const;

  // When set, every timed call is preceded by a write of 2x the L2 (outside the events).
  void set_flush(bool on);

  // Samples (microseconds) of `call` timed alone. Throws what the call throws.
  std::vector<double> time(const Call& call, const TimingOptions& o);
  // Round-robin rounds over `calls` (rotating which goes first, so none is always first
  // after the spin) until o.budget_s; each round adds one sample to every call's list.
  // `rep` counts launches across all calls (0, 1, 2, ... in enqueue order), so no call
  // reuses the input set the previous launch just pulled into the L2.
  std::vector<std::vector<double>> interleave(const std::vector<Call>& calls, const TimingOptions& o);

  // Uniform values of magnitude in [1/32, 1) with random signs, written on the GPU, in
  // the bit layout of `dt` (bytes / 2 elements). Deterministic in `seed`.
  void fill_random(void* dst, std::size_t bytes, DType dt, std::uint32_t seed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Rotating copies of one problem's tensors (q, r, k, v, o, and a block table when paged)
// on the device, filled with fill_random. prepare() reuses the allocation when the new
// problem needs no more bytes than the last, so a tuner walking many buckets does not
// reallocate gigabytes per bucket.
class AttentionInputs {
 public:
  explicit AttentionInputs(Harness& h);
  ~AttentionInputs();
  AttentionInputs(const AttentionInputs&) = delete;
  AttentionInputs& operator=(const AttentionInputs&) = delete;

  // `shape`: every field but the pointers (page_size > 0 asks for a paged cache of
  // ceil(kv_len / page_size) pages per sequence, shuffled). Uses at most `max_fraction`
  // of the device memory free now (plus what this object already holds), chooses the
  // rotation (rotation_for) and sets the harness's flush accordingly. Throws plx::Error
  // naming the bytes when even one set does not fit.
  void prepare(const AttentionArgs& shape, double max_fraction = 0.8);
  int sets() const;
  AttentionArgs args(int rep) const;  // the shape with set rep % sets()'s pointers
  std::size_t bytes_per_set() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Bytes one call's tensors occupy (q, r when the family has it, k, v, o; paged pools and
// block table included).
std::size_t input_bytes(const AttentionArgs& shape);

// How many input sets to rotate through so that between two uses of one set at least 2x
// the L2 is touched: ceil(2 x l2 / set) + 1, at least 1. When more than `max_sets` (or
// than fit in max_bytes) would be needed, as many as fit (at most max_sets) and a flush.
//   l2 60 MiB: set 2 MiB -> 61 sets; set 4 GiB -> 2; set 1 KiB -> 64 and flush
struct Rotation {
  int sets = 1;
  bool flush = false;
};
Rotation rotation_for(std::size_t set_bytes, std::size_t l2_bytes, std::size_t max_bytes, int max_sets = 64);

}  // namespace measure
}  // namespace plx
