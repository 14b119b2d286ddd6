// PLX_TUNE=sync (issue 6, point 6): the engine tunes an untuned bucket inside the first call
// that lands in it, with a small budget, and records the winner in the tuning database, so
// every later call (and process) gets it. The default stays "the model's choice at once".
// The candidates are the model's choice and its neighbours along the tile axes the shipped
// specs search, ranked by the roofline model; the race is tune_bucket's (oracle check,
// timing, interleaved finals, ties to the model's choice).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autotune/roofline.hpp"
#include "autotune/tune.hpp"
#include "autotune/tuning_db.hpp"
#include "generator/variant.hpp"
#include "parallax/parallax.hpp"

namespace plx {
namespace cu {
class Device;
}

namespace tune {

// The call's tuning bucket at the call's own shape (gqa = heads_q / heads_kv).
Bucket bucket_for_call(const AttentionArgs& a, Op op);

// `model` (the untuned choice) and its legal neighbours that fit `smem_limit` bytes a CTA:
//   decode : block_m {rows per tile, 16} x stages {2, 3, 4} x loader {cp.async, TMA on sm_90a}
//            (block_n 64, 4 warps, split auto)
//   prefill: block_m {64, 128} x warps {4, 8} (block_n 64, 2 stages; mma.sync)
// The model's choice first, the rest in name order. Pure.
std::vector<Variant> sync_candidates(const Variant& model, long smem_limit);

struct SyncTune {
  double budget_s = 0.3;  // timing budget (the oracle checks and compiles come on top)
  int top = 3;            // neighbours raced besides the model's choice
};

// What the engine lends the tuner: launching and loading its kernels, and their resources.
struct SyncHooks {
  std::function<void(const std::string& variant, const AttentionArgs&, void* stream)> launch;
  // Loads (compiling on a cache miss) and returns {registers, spill bytes}.
  std::function<std::pair<int, int>(const std::string& variant)> load;
};

struct SyncResult {
  std::optional<Variant> winner;  // nullopt: keep the model's choice
  std::optional<DbEntry> entry;   // what to record (winner measured)
  std::string line;               // one line for stderr saying what happened
};

// Tunes the bucket of `a` (validated; pointers ignored) on `dev`, whose context the caller
// has made current. Never throws for a candidate's failure; throws DriverError only when
// the context is unusable (tune::is_sticky).
SyncResult tune_call(const cu::Device& dev, const AttentionArgs& a, const GpuProfile& g, const SyncHooks& hooks,
                     const SyncTune& opt = {});

}  // namespace tune
}  // namespace plx
