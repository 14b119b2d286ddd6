// plx tune: validate a spec, compile its variants through the disk cache, rank them per
// problem bucket by the roofline model, and with a GPU time the best-ranked ones and pick a
// winner per bucket. Without a GPU it says so in one line and stops at the model's ranking.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <optional>

#include "args.hpp"
#include "autotune/bucket_key.hpp"
#include "autotune/roofline.hpp"
#include "autotune/tune.hpp"
#include "autotune/tuning_db.hpp"
#include "commands.hpp"
#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "compile_pool.hpp"
#include "generator/expand.hpp"
#include "generator/render.hpp"
#include "generator/spec.hpp"
#include "parallax/parallax.hpp"
#include "paths.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx tune [SPEC.yaml] [options]

Validates SPEC (default specs/decode_sm90.yaml, looked up in the current directory, then
$PLX_SOURCE_DIR, then the checkout the binary was built in), compiles every variant
through the compile cache, and ranks the variants of each problem bucket by a roofline
model. With a GPU, times the best-ranked ones (CUDA events, L2 flushed, 5 warm-up calls,
median of 50) and reports the winner per bucket, and records the winners in this GPU's
tuning database (<cache dir>/tuning/v1/<gpu>.json; see plx db), where plx::Engine finds
them. Without a GPU: a dry run (model only) that never writes the database.

Buckets (a kernel class x a shape; classes: family, dtype, head dim, mask of the spec):
  decode   the spec's gqa values x kv length {1024, 8192, 32768} x batch {1, 32}
  prefill  the spec's gqa values x q = kv length {1024, 8192}, batch 1
  heads_kv 8, heads_q = 8 x gqa; windowed classes at each window width of the spec

Model:
  --profile NAME   GPU ceilings for the model: h200 (measured figures), a100 (spec sheet);
                   default h200, or the GPU's own when it is an A100
  --top N          variants timed per bucket and rows printed (default 8; dry run: 3)
Measurement:
  --require-gpu    exit 1 (before compiling) when there is no usable GPU
  -j, --jobs N     compile on N threads (default: the number of hardware threads)
Output:
  --json FILE      report: every bucket's candidates (predicted and measured) and winner
  --csv FILE       one row per bucket: its shape, the winner, predicted and measured us
)";

double median_or_nan(const std::optional<tune::Timing>& t) {
  return t && t->error.empty() ? t->median_us : std::numeric_limits<double>::quiet_NaN();
}

struct BucketResult {
  tune::Bucket bucket;
  std::vector<tune::Ranked> ranked;               // every candidate, model order
  std::vector<std::optional<tune::Timing>> timed;  // parallel to ranked (top N only)
  int winner = -1;                                 // index into ranked
};

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

json::Value report_json(const KernelSpec& spec, const GpuProfile& g, const std::string& gpu,
                        const std::vector<BucketResult>& results, bool measured) {
  json::Value r = json::Value::object();
  r.set("plx_version", PLX_VERSION);
  r.set("spec", spec.source);
  r.set("gpu", gpu.empty() ? json::Value() : json::Value(gpu));
  r.set("measured", measured);
  json::Value prof = json::Value::object();
  prof.set("name", g.name);
  prof.set("hbm_GBps", g.hbm_GBps);
  prof.set("tc_tflops_bf16", g.tc_tflops_bf16);
  prof.set("sm_count", g.sm_count);
  r.set("profile", std::move(prof));
  json::Value buckets = json::Value::array();
  for (const BucketResult& br : results) {
    const tune::Bucket& b = br.bucket;
    json::Value o = json::Value::object();
    o.set("flags", b.flags());
    o.set("op", std::string(to_string(b.op)));
    o.set("family", std::string(to_string(b.family)));
    o.set("dtype", std::string(to_string(b.dtype)));
    o.set("head_dim", b.head_dim);
    o.set("causal", b.causal);
    o.set("window", b.shape.window);
    o.set("gqa", b.gqa);
    o.set("batch", b.shape.batch);
    o.set("q_len", b.shape.q_len);
    o.set("kv_len", b.shape.kv_len);
    o.set("heads_q", b.shape.heads_q);
    o.set("heads_kv", b.shape.heads_kv);
    o.set("winner", br.winner >= 0 ? json::Value(br.ranked[br.winner].v.name()) : json::Value());
    json::Value cands = json::Value::array();
    for (std::size_t i = 0; i < br.ranked.size(); ++i) {
      const auto& [v, p] = br.ranked[i];
      json::Value c = json::Value::object();
      c.set("variant", v.name());
      c.set("predicted_us", p.us);
      const double m = median_or_nan(br.timed[i]);
      c.set("measured_us", std::isnan(m) ? json::Value() : json::Value(m));
      if (br.timed[i] && !br.timed[i]->error.empty()) c.set("error", br.timed[i]->error);
      c.set("bytes", p.bytes);
      c.set("flops", p.flops);
      c.set("intensity", p.intensity);
      c.set("bound", p.compute_bound ? "compute" : "memory");
      c.set("splits", p.splits);
      cands.push_back(std::move(c));
    }
    o.set("candidates", std::move(cands));
    buckets.push_back(std::move(o));
  }
  r.set("buckets", std::move(buckets));
  return r;
}

std::string report_csv(const std::vector<BucketResult>& results) {
  std::string s =
      "op,family,dtype,head_dim,causal,window,gqa,batch,q_len,kv_len,heads_q,heads_kv,winner,predicted_us,"
      "measured_us,bound,splits\n";
  for (const BucketResult& br : results) {
    const tune::Bucket& b = br.bucket;
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},", to_string(b.op), to_string(b.family),
                     to_string(b.dtype), b.head_dim, b.causal ? 1 : 0, b.shape.window, b.gqa, b.shape.batch,
                     b.shape.q_len, b.shape.kv_len, b.shape.heads_q, b.shape.heads_kv);
    if (br.winner < 0) {
      s += ",,,,\n";
      continue;
    }
    const auto& [v, p] = br.ranked[br.winner];
    const double m = median_or_nan(br.timed[br.winner]);
    s += fmt::format("{},{:.2f},{},{},{}\n", csv_escape(v.name()), p.us, std::isnan(m) ? "" : fmt::format("{:.2f}", m),
                     p.compute_bound ? "compute" : "memory", p.splits);
  }
  return s;
}

// The measured winners as database entries, keyed by the bucket of each tuned shape
// (autotune/bucket_key.hpp), with the fastest other measured candidate as runner-up.
std::vector<DbEntry> db_entries(const KernelSpec& spec, const std::vector<BucketResult>& results) {
  std::vector<DbEntry> out;
  const std::int64_t now = std::time(nullptr);
  for (const BucketResult& br : results) {
    if (br.winner < 0) continue;
    DbEntry e;
    e.bucket = tune::bucket_of(br.bucket.args()).key();
    e.winner = br.ranked[br.winner].v.name();
    e.winner_us = median_or_nan(br.timed[br.winner]);
    e.predicted_us = br.ranked[br.winner].p.us;
    int ru = -1;
    for (int i = 0; i < int(br.ranked.size()); ++i) {
      const double m = median_or_nan(br.timed[i]);
      if (i != br.winner && !std::isnan(m) && (ru < 0 || m < median_or_nan(br.timed[ru]))) ru = i;
    }
    if (ru >= 0) {
      e.runner_up = br.ranked[ru].v.name();
      e.runner_up_us = median_or_nan(br.timed[ru]);
    }
    e.measured_at = now;
    e.notes = fmt::format("plx tune {}: {}", spec.source, br.bucket.flags());
    out.push_back(std::move(e));
  }
  return out;
}

void print_model_table(const BucketResult& br, int top) {
  std::size_t w = 7;
  for (const auto& r : br.ranked) w = std::max(w, r.v.name().size());
  fmt::print("  {:>4}  {:<{}}  {:>9}  {:>9}  {:>9}  {:>7}  {:>7}  {:>6}\n", "rank", "variant", w, "pred_us", "MB",
             "GFLOP", "flop/B", "bound", "splits");
  for (std::size_t i = 0; i < br.ranked.size() && int(i) < top; ++i) {
    const auto& [v, p] = br.ranked[i];
    fmt::print("  {:>4}  {:<{}}  {:>9.2f}  {:>9.2f}  {:>9.3f}  {:>7.1f}  {:>7}  {:>6}\n", i + 1, v.name(), w, p.us,
               p.bytes / 1e6, p.flops / 1e9, p.intensity, p.compute_bound ? "compute" : "memory", p.splits);
  }
  if (int(br.ranked.size()) > top) fmt::print("  ... {} more (--top)\n", br.ranked.size() - top);
}

void print_measured_table(const BucketResult& br) {
  std::size_t w = 7;
  for (const auto& r : br.ranked) w = std::max(w, r.v.name().size());
  fmt::print("  {:>4}  {:<{}}  {:>9}  {:>9}  {:>8}  {:>8}  {:>7}  {:>6}\n", "rank", "variant", w, "meas_us", "pred_us",
             "GB/s", "TFLOP/s", "bound", "splits");
  for (std::size_t i = 0; i < br.ranked.size(); ++i) {
    if (!br.timed[i]) continue;
    const auto& [v, p] = br.ranked[i];
    const tune::Timing& t = *br.timed[i];
    if (!t.error.empty()) {
      fmt::print("  {:>4}  {:<{}}  FAILED: {}\n", i + 1, v.name(), w, t.error);
      continue;
    }
    fmt::print("  {:>4}  {:<{}}  {:>9.2f}  {:>9.2f}  {:>8.0f}  {:>8.1f}  {:>7}  {:>6}\n", i + 1, v.name(), w,
               t.median_us, p.us, p.bytes / (t.median_us * 1e3), p.flops / (t.median_us * 1e6),
               p.compute_bound ? "compute" : "memory", p.splits);
  }
}

}  // namespace

int cmd_tune(const std::vector<std::string>& argv) {
  const Args a = parse(argv,
                       {{"profile", true}, {"require-gpu", false}, {"top", true}, {"json", true}, {"csv", true},
                        {"jobs", true, 'j'}},
                       "tune");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (a.positional.size() > 1) throw UsageError("tune: one spec at a time (plx tune [SPEC.yaml])");
  const int top = a.get_int("top", 8, 1, 1000);
  const int jobs = a.get_int("jobs", default_jobs(), 1, 1024);

  std::filesystem::path spec_path;
  if (!a.positional.empty()) {
    spec_path = a.positional[0];
  } else if (auto found = find_in_source("specs/decode_sm90.yaml")) {
    spec_path = *found;
  } else {
    throw Error("tune: no spec given and specs/decode_sm90.yaml not found in the current directory, "
                "$PLX_SOURCE_DIR or the build's source tree");
  }
  const KernelSpec spec = load_spec(spec_path);  // SpecError: FILE:LINE:COL: ...
  const ExpandResult ex = expand(spec);

  std::string why;
  const bool gpu = cu::available(&why);
  std::optional<cu::Device> dev;
  std::string gpu_name, gpu_arch;
  if (gpu) {
    dev.emplace(0);
    gpu_name = dev->name();
    gpu_arch = dev->arch_string();  // UnsupportedError for GPUs the templates do not target
  }
  std::string profile_name = a.get_or("profile", "");
  if (profile_name.empty())
    profile_name = gpu_name.find("A100") != std::string::npos ? "a100" : "h200";
  GpuProfile g;
  try {
    g = profile(profile_name);
  } catch (const UnsupportedError& e) {
    throw UsageError(fmt::format("tune: --profile: {}", e.what()));
  }
  if (dev) g.sm_count = dev->sm_count();  // the model describes the GPU at hand

  // A GPU runs only the variants built for its arch; the dry run ranks them all.
  std::vector<Variant> variants;
  for (const Variant& v : ex.variants)
    if (!gpu || to_string(v.arch) == gpu_arch) variants.push_back(v);
  fmt::print("spec {} ({}): {} variants, {} dropped{}\n", spec.name, spec.source, ex.variants.size(),
             ex.dropped.size(), gpu ? fmt::format(", {} for {} ({})", variants.size(), gpu_arch, gpu_name) : "");
  if (!gpu && a.has("require-gpu"))
    throw Error(fmt::format("tune: no GPU ({}) and --require-gpu is set: spec validated ({} variants), nothing "
                            "compiled or measured",
                            why, ex.variants.size()));
  if (variants.empty())
    throw Error(fmt::format("tune: {} has no variants for this GPU's arch {}", spec.source, gpu_arch));

  // Compile everything first: NVRTC errors surface before any timing, and the engine then
  // loads each cubin from the disk cache.
  KernelCache cache(KernelCache::default_root());
  std::vector<CompileJob> compile_jobs;
  for (const Variant& v : variants) compile_jobs.push_back({render(v), std::string(to_string(v.arch))});
  const auto t0 = std::chrono::steady_clock::now();
  const auto outcomes = compile_all(compile_jobs, &cache, jobs, progress_line("compiling"));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<Variant> compiled;
  int failed = 0;
  for (std::size_t i = 0; i < variants.size(); ++i) {
    if (outcomes[i].ok) {
      compiled.push_back(variants[i]);
      continue;
    }
    ++failed;
    std::string msg = outcomes[i].error;
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    fmt::print("{} FAILED: {}\n", variants[i].name(), msg);
  }
  const CacheStats st = cache.stats();
  fmt::print("compiled {} variants in {:.1f} s on {} threads ({} from the cache, {} built, {} failed) in {}\n",
             variants.size(), secs, jobs, st.disk_hits + st.memory_hits, st.builds, failed, cache.root().string());

  if (!gpu)
    fmt::print("plx tune: no GPU ({}): dry run -- specs validated, {} variants compiled, ranked by the {} roofline "
               "model; nothing was measured and the tuning database is not written\n",
               why, compiled.size(), g.name);

  std::vector<BucketResult> results;
  const auto buckets = tune::buckets_for(spec, compiled);
  std::optional<Engine> engine;
  if (gpu) {
    engine.emplace(0, EngineOptions{cache.root(), true});
    dev->make_current();
  }
  for (std::size_t bi = 0; bi < buckets.size(); ++bi) {
    BucketResult br{buckets[bi], tune::rank(compiled, buckets[bi], g), {}, -1};
    br.timed.resize(br.ranked.size());
    if (br.ranked.empty()) continue;
    fmt::print("\nbucket {}/{}: {}\n", bi + 1, buckets.size(), br.bucket.flags());
    if (!gpu) {
      br.winner = 0;  // the model's choice; nothing measured
      // The model alone cannot separate close variants: show the head of each ranking.
      print_model_table(br, a.has("top") ? top : 3);
      results.push_back(std::move(br));
      continue;
    }
    try {
      tune::Bench bench(br.bucket, dev->l2_bytes(), gpu_arch);
      for (std::size_t i = 0; i < br.ranked.size() && int(i) < top; ++i)
        br.timed[i] = bench.time(*engine, br.ranked[i].v.name());
    } catch (const Error& e) {
      fmt::print("  bucket skipped: {}\n", e.what());
      results.push_back(std::move(br));
      continue;
    }
    for (std::size_t i = 0; i < br.ranked.size(); ++i) {
      const double m = median_or_nan(br.timed[i]);
      if (!std::isnan(m) && (br.winner < 0 || m < median_or_nan(br.timed[br.winner]))) br.winner = int(i);
    }
    print_measured_table(br);
    if (br.winner >= 0)
      fmt::print("  winner: {} {:.2f} us (predicted {:.2f} us, rank {})\n", br.ranked[br.winner].v.name(),
                 median_or_nan(br.timed[br.winner]), br.ranked[br.winner].p.us, br.winner + 1);
    else
      fmt::print("  winner: none (every candidate failed)\n");
    results.push_back(std::move(br));
  }

  if (auto path = a.get("json")) {
    write_file_atomic(*path, report_json(spec, g, gpu_name, results, gpu).dump(2) + "\n");
    fmt::print("\nwrote {}\n", *path);
  }
  if (auto path = a.get("csv")) {
    write_file_atomic(*path, report_csv(results));
    fmt::print("wrote {}\n", *path);
  }
  if (gpu) {
    // Last, after the reports: a database the disk refuses still leaves them written.
    const std::vector<DbEntry> entries = db_entries(spec, results);
    if (!entries.empty()) {
      TuningDb db(cache.root(), GpuIdentity::of(*dev));
      db.record(entries);  // merges with other tuners; the faster winner stays per bucket
      fmt::print("\ntuning database: {} winners recorded in {} ({} buckets in all)\n", entries.size(),
                 db.path().string(), db.entries().size());
    } else {
      fmt::print("\ntuning database: nothing recorded (no bucket has a measured winner)\n");
    }
  }
  return failed ? 1 : 0;
}

}  // namespace plx::cli
