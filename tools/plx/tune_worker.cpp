#include "tune_worker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "autotune/backward_tune.hpp"
#include "autotune/measure.hpp"
#include "autotune/tune_report.hpp"
#include "autotune/tune_workers.hpp"
#include "autotune/tuning_db.hpp"
#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "parallax/parallax.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

double since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

// ---- child side ------------------------------------------------------------------------------

void emit(const std::string& ev, json::Value body = json::Value::object()) {
  json::Value o = json::Value::object();
  o.set("ev", ev);
  for (auto& [k, v] : body.as_object()) o.set(k, std::move(v));
  const std::string line = o.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

[[noreturn]] void die(const std::string& msg, int status) {
  json::Value b = json::Value::object();
  b.set("error", msg);
  emit("fatal", std::move(b));
  std::fflush(stderr);
  // No destructors: after a sticky error the context is broken and a driver call in a
  // destructor may block.
  std::_Exit(status);
}

tune::Bucket bucket_from_json(const json::Value& j) {
  const AttentionArgs a = tune::args_from_json(j.at("args"));
  tune::Bucket b;
  b.op = *parse_op(j.at("op").as_string());
  b.family = a.family;
  b.dtype = a.dtype;
  b.head_dim = a.head_dim;
  b.causal = a.causal;
  b.gqa = int(j.at("gqa").as_int());
  b.shape = Problem{a.batch, a.q_len, a.kv_len, a.heads_q, a.heads_kv, a.window_left};
  return b;
}

}  // namespace

// ---- the worker ------------------------------------------------------------------------------

int tune_worker_main(const std::string& job_file) {
  json::Value job;
  try {
    auto text = read_file(job_file);
    if (!text) die(fmt::format("cannot read the job file {}", job_file), 2);
    job = json::parse(*text);
  } catch (const std::exception& e) {
    die(fmt::format("bad job file {}: {}", job_file, e.what()), 2);
  }
  try {
    cu::Device dev(0);
    dev.make_current();
    if (job.at("mode").as_string() == "ceilings") {
      std::string wg;
      const Ceilings c = measure_ceilings(dev, &wg);
      json::Value b = tune::to_json(c);
      b.set("wgmma_error", wg.empty() ? json::Value() : json::Value(wg));
      emit("ceilings", std::move(b));
      std::fflush(stdout);
      std::_Exit(0);
    }
    Engine engine(0, EngineOptions{KernelCache::default_root(), true});
    measure::Harness h(dev);
    measure::AttentionInputs inputs(h);
    tune::BackwardInputs bwd_inputs(h);  // backward buckets: a training step's tensors
    tune::CheckCache checks;
    const json::Value& opt = job.at("options");
    tune::TuneOptions o;
    o.finalists = int(opt.at("finalists").as_int());
    o.finalist_within = opt.at("finalist_within").as_double();
    o.check = opt.at("check").as_bool();
    o.spin_ns = std::uint64_t(opt.at("spin_ns").as_int());
    const double budget = job.at("budget_s").as_double();
    const double lo = job.at("bucket_min_s").as_double(), hi = job.at("bucket_max_s").as_double();
    const json::Array& buckets = job.at("buckets").as_array();
    const auto t0 = clk::now();
    for (std::size_t k = 0; k < buckets.size(); ++k) {
      const json::Value& jb = buckets[k];
      const std::int64_t bi = jb.at("b").as_int();
      const tune::Bucket bucket = bucket_from_json(jb);
      std::vector<tune::Candidate> cands;
      for (const json::Value& jc : jb.at("candidates").as_array()) {
        tune::Candidate c;
        const auto v = parse_variant_name(jc.at("name").as_string());
        if (!v) die(fmt::format("job names '{}', which is not a variant", jc.at("name").as_string()), 2);
        c.v = *v;
        c.registers = int(jc.at("registers").as_int());
        c.spill_bytes = int(jc.at("spill_bytes").as_int());
        c.model_choice = jc.at("model_choice").as_bool();
        c.model_rank = int(jc.at("model_rank").as_int());
        cands.push_back(std::move(c));
      }
      o.budget_s = std::clamp((budget - since(t0)) / double(buckets.size() - k), lo, hi);
      tune::Runner run;
      run.launch = [&](const std::string& name, const AttentionArgs& a, void* s) { engine.attention(a, name, s); };
      run.prepare = [&](const std::string& name) { engine.prepare(name); };
      run.launch_backward = [&](const std::string& name, const AttentionArgs& a, const BackwardArgs& g, void* s) {
        engine.attention_backward(a, g, name, s);
      };
      run.forward = [&](const AttentionArgs& a, void* s) { engine.attention(a, s); };
      run.on_begin = [&](int c, const char* phase) {
        json::Value b = json::Value::object();
        b.set("b", bi);
        b.set("c", c);
        b.set("phase", phase);
        emit("begin", std::move(b));
      };
      run.on_result = [&](int c, const tune::CandidateResult& r) {
        json::Value b = tune::to_json(r);
        b.set("b", bi);
        b.set("c", c);
        emit("result", std::move(b));
      };
      const tune::BucketOutcome out =
          bucket.op == Op::backward ? tune::tune_backward_bucket(h, bwd_inputs, bucket, cands, run, o, &checks)
                                    : tune::tune_bucket(h, inputs, bucket, cands, run, o, &checks);
      json::Value b = tune::to_json(out);
      b.set("b", bi);
      emit("done", std::move(b));
    }
  } catch (const DriverError& e) {
    die(e.what(), tune::is_sticky(e) ? 3 : 1);
  } catch (const std::exception& e) {
    die(e.what(), 1);
  }
  std::fflush(stdout);
  return 0;
}

std::vector<std::string> worker_command() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(fmt::format("tune: cannot find this executable (/proc/self/exe): {}", ec.message()));
  return {exe.string(), "tune", "--worker"};
}

std::optional<Ceilings> gpu_ceilings(const cu::Device& dev, const fs::path& cache_root, std::string* note) {
  TuningDb db(cache_root, GpuIdentity::of(dev));
  db.load();
  if (db.ceilings()) {
    if (note) *note = fmt::format("measured earlier, from {}", db.path().string());
    return db.ceilings();
  }
  try {
    std::string wg;
    const Ceilings c = tune::run_ceilings_worker(worker_command(), 120, &wg);
    if (!wg.empty())
      fmt::print(stderr, "plx: note: the wgmma rate could not be measured ({}); the tensor-core ceiling is mma.sync's\n",
                 wg);
    try {
      db.record({}, c);
      if (note) *note = fmt::format("measured now, stored in {}", db.path().string());
    } catch (const std::exception& e) {
      if (note) *note = fmt::format("measured now, not stored ({})", e.what());
    }
    return c;
  } catch (const std::exception& e) {
    if (note) *note = e.what();
    return std::nullopt;
  }
}

}  // namespace plx::cli
