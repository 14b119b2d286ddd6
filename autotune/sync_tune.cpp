#include "autotune/sync_tune.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "autotune/bucket_key.hpp"
#include "autotune/heuristics.hpp"
#include "autotune/measure.hpp"
#include "generator/legality.hpp"
#include "runtime/driver.hpp"
#include "runtime/launch.hpp"

namespace plx::tune {

Bucket bucket_for_call(const AttentionArgs& a, Op op) {
  Bucket b;
  b.op = op;
  b.family = a.family;
  b.dtype = a.dtype;
  b.head_dim = a.head_dim;
  b.causal = a.causal;
  b.gqa = a.heads_q / std::max(1, a.heads_kv);
  b.shape = Problem{a.batch, a.q_len, a.kv_len, a.heads_q, a.heads_kv, a.window_left};
  return b;
}

std::vector<Variant> sync_candidates(const Variant& model, long smem_limit) {
  std::vector<Variant> out{model};
  auto add = [&](Variant v) {
    if (v == model || why_illegal(v) || smem_bytes(v) + 1024 > smem_limit) return;
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  };
  if (model.op == Op::decode) {
    // Both K/V loaders (TMA is legal on sm_90a only): which wins depends on the cache's
    // layout and the batch (heuristics::decode_prefers_tma), and this race runs on the
    // call's own arguments, paged or not.
    for (int m : {rows_per_tile(model.family), 16})
      for (int s : {2, 3, 4})
        for (Loader l : {Loader::cp_async, Loader::tma}) {
          Variant v = model;
          v.tile.block_m = m;
          v.tile.stages = s;
          v.tile.loader = l;
          add(v);
        }
  } else if (model.op == Op::prefill && model.tile.mma == Mma::sync) {
    for (int m : {64, 128})
      for (int w : {4, 8}) {
        Variant v = model;
        v.tile.block_m = m;
        v.tile.warps = w;
        add(v);
      }
  }
  std::sort(out.begin() + 1, out.end(), [](const Variant& x, const Variant& y) { return x.name() < y.name(); });
  return out;
}

SyncResult tune_call(const cu::Device& dev, const AttentionArgs& a, const GpuProfile& g, const SyncHooks& hooks,
                     const SyncTune& opt) {
  SyncResult res;
  const Op op = heuristics::choose_op(a.q_len);
  const Variant model = default_variant(a, dev.arch());
  const Bucket b = bucket_for_call(a, op);
  const std::string key = bucket_of(a).key();

  // Rank the neighbours by the model; keep the top few and the model's choice.
  std::vector<Ranked> ranked;
  for (const Variant& v : sync_candidates(model, dev.max_smem_optin() + 1024)) {
    try {
      ranked.push_back({v, predict(v, b.shape, g)});
    } catch (const Error&) {
      // the profile's SM does not fit it: leave it out
    }
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const Ranked& x, const Ranked& y) { return x.p.us < y.p.us; });
  std::map<std::string, std::pair<int, int>> resources;
  auto resource = [&](const Variant& v) -> std::pair<int, int> {
    auto it = resources.find(v.name());
    if (it != resources.end()) return it->second;
    std::pair<int, int> r{-1, -1};
    try {
      r = hooks.load(v.name());
    } catch (const DriverError& e) {
      if (is_sticky(e)) throw;
    } catch (const Error&) {
      r = {-1, 1};  // does not compile or load: treat as rejected (spills > 0 sorts it out)
    }
    return resources[v.name()] = r;
  };
  const std::vector<Candidate> cands = candidates_for(
      ranked, model, opt.top, [&](const Variant& v) { return resource(v).first; },
      [&](const Variant& v) { return resource(v).second; });

  measure::Harness h(dev);
  measure::AttentionInputs inputs(h);
  TuneOptions o;
  o.budget_s = opt.budget_s;
  o.finalists = 2;
  o.mem_fraction = 0.25;  // a user's process: a small share of the free memory, never most of it
  Runner run;
  run.launch = hooks.launch;
  const BucketOutcome out = tune_bucket(h, inputs, b, cands, run, o);
  if (out.winner < 0) {
    res.line = fmt::format("PLX_TUNE=sync: {} not tuned ({}); using the model's choice", key,
                           out.error.empty() ? "every candidate failed" : out.error);
    return res;
  }
  const Candidate& w = cands[std::size_t(out.winner)];
  res.winner = w.v;
  DbEntry e;
  e.bucket = key;
  e.winner = w.name();
  e.winner_us = out.winner_us;
  if (out.runner_up >= 0) {
    e.runner_up = cands[std::size_t(out.runner_up)].name();
    e.runner_up_us = out.runner_up_us;
  }
  e.predicted_us = w.p.us;
  e.noise_us = out.noise_us;
  e.measured_at = std::int64_t(std::time(nullptr));
  e.notes = fmt::format("PLX_TUNE=sync in a call: {}", b.flags());
  res.entry = e;
  res.line = fmt::format("PLX_TUNE=sync: tuned {} in {:.2f} s over {} candidates: {} {:.2f} us (untuned {:.2f} us, "
                         "noise {:.2f} us)",
                         key, out.seconds, cands.size(), w.name(), out.winner_us, out.untuned_us, out.noise_us);
  return res;
}

}  // namespace plx::tune
