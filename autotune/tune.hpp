// The tuner's search: problem buckets for a spec, every variant ranked by the roofline
// model per bucket, and (with a GPU) the timing of the best-ranked ones through
// plx::Engine. Printing and reports belong to the CLI (tools/plx/cmd_tune.cpp).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

  // Pasteable flags, e.g. "--op decode --family parallax --dtype bf16 --d 128 --mask causal
  // --batch 1 --q-len 1 --kv-len 8192 --heads-q 32 --heads-kv 8".
  std::string flags() const;
  AttentionArgs args() const;  // without pointers
};

inline constexpr int kHeadsKv = 8;  // tuning buckets use 8 kv heads, heads_q = 8 x gqa

// Shapes per op: decode kv lengths {1024, 8192, 32768} x batch {1, 32} (one new token);
// prefill q = kv lengths {1024, 8192} at batch 1.
// Buckets: every kernel class present among `variants` (in their order) x the spec's gqa
// values x the shapes; windowed classes once per window width of the spec.
std::vector<Bucket> buckets_for(const KernelSpec& spec, const std::vector<Variant>& variants);

// Can v run bucket b (same op, family, dtype, head dim, causal, window compiled in)?
bool serves(const Variant& v, const Bucket& b);

struct Ranked {
  Variant v;
  Prediction p;
};

// The variants serving b, fastest prediction first; ties go to fewer FLOPs, then less
// shared memory, then the name, so the order is the same on every run.
std::vector<Ranked> rank(const std::vector<Variant>& variants, const Bucket& b, const GpuProfile& g);

struct Timing {
  double median_us = 0;
  double min_us = 0;
  std::string error;  // non-empty: the variant failed (nothing measured)
};

// Random inputs for one bucket on a device, and the timing loop (the reference figures'
// method): before each timed call the L2 is flushed (memset of 2x its size) and a spin
// kernel holds the stream for 20 us, so the events time the GPU, not the host's enqueue.
// Construct and use with the device's primary context current (Device::make_current).
class Bench {
 public:
  Bench(const Bucket& b, int l2_bytes, const std::string& arch);
  ~Bench();
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  // CUDA events around each call: `warmup` untimed calls, then the median of `reps`.
  // A variant the engine refuses or fails to launch gives Timing::error, not an exception.
  Timing time(Engine& engine, const std::string& variant_name, int warmup = 5, int reps = 50);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plx::tune
