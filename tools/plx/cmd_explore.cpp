// plx explore: for each problem bucket of a spec (or the shape given by flags), every
// variant's predicted time from the roofline model and, with a GPU, its measured time side
// by side -- the view that shows where the model is wrong. Without a GPU: predicted only,
// labelled so.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "args.hpp"
#include "autotune/bucket_key.hpp"
#include "autotune/ceilings.hpp"
#include "autotune/measure.hpp"
#include "autotune/roofline.hpp"
#include "autotune/tune.hpp"
#include "autotune/tune_report.hpp"
#include "commands.hpp"
#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "compile_pool.hpp"
#include "generator/expand.hpp"
#include "generator/render.hpp"
#include "generator/spec.hpp"
#include "parallax/parallax.hpp"
#include "problem_flags.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"
#include "runtime/launch.hpp"
#include "tune_worker.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx explore SPEC.yaml [bucket flags] [options]

For each problem bucket of SPEC (the ones plx tune races), every variant of the bucket's
kernel class: the roofline model's predicted time next to the measured one (with a GPU;
the tuner's harness: CUDA events, GPU spin, cold L2), the ratio, the achieved rate and
whether the model calls it memory- or compute-bound. Without a GPU the table is the
model's alone and says so. Nothing is written to the tuning database.

Bucket flags (as plx tune prints them; any given restrict the buckets, shape flags define
one bucket per matching kernel class instead of the spec's shapes):
  --op decode|prefill --family F --dtype T --head-dim D (or --d) --mask causal|full
  --window W --batch B --q-len Q --kv-len L --heads-q H --heads-kv K
Options:
  --profile NAME   model ceilings when none are measured: h200, h100, a100 (default h200)
  --arch ARCH      without a GPU: the arch whose variants to list (default sm_90a)
  --budget-s S     timing per variant (default 0.1)
  --json FILE      every bucket's variants, predicted and measured
  -j, --jobs N     compile on N threads
)";

struct Line {
  tune::Ranked r;
  std::optional<measure::Stats> s;
  std::string error;
  bool untuned = false;
};

}  // namespace

int cmd_explore(const std::vector<std::string>& argv) {
  std::vector<Option> opts = problem_options();
  for (Option o : std::vector<Option>{{"profile", true}, {"arch", true}, {"budget-s", true}, {"json", true},
                                      {"jobs", true, 'j'}})
    opts.push_back(o);
  const Args a = parse(argv, opts, "explore");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (a.positional.size() != 1) throw UsageError("explore: one spec (plx explore SPEC.yaml [bucket flags])");
  const ProblemFlags pf = parse_problem(a, "explore");
  const int jobs = a.get_int("jobs", default_jobs(), 1, 1024);
  double budget_s = 0.1;
  if (auto b = a.get("budget-s")) {
    try {
      std::size_t used = 0;
      budget_s = std::stod(*b, &used);
      if (used != b->size() || !(budget_s >= 0.001 && budget_s <= 600)) throw std::invalid_argument(*b);
    } catch (const std::exception&) {
      throw UsageError(fmt::format("explore: --budget-s wants seconds in 0.001..600, got '{}'", *b));
    }
  }
  GpuProfile g;
  try {
    g = profile(a.get_or("profile", "h200"));
  } catch (const UnsupportedError& e) {
    throw UsageError(fmt::format("explore: --profile: {}", e.what()));
  }
  std::optional<Arch> want_arch;
  if (auto s = a.get("arch")) {
    want_arch = parse_arch(*s);
    if (!want_arch) throw UsageError(fmt::format("explore: --arch wants sm_80 or sm_90a, got '{}'", *s));
  }

  const KernelSpec spec = load_spec(a.positional[0]);
  if (pf.op && *pf.op != spec.op)
    throw UsageError(fmt::format("explore: --op {} but {} is a {} spec", to_string(*pf.op), spec.source,
                                 to_string(spec.op)));
  // explore times forward calls; a backward bucket's call is the backward (plx tune races it).
  if (spec.op == Op::backward)
    throw UsageError(fmt::format("explore: {} is a backward spec; plx tune races backward variants (explore times "
                                 "forward calls only)",
                                 spec.source));
  const ExpandResult ex = expand(spec);
  std::string why;
  const bool gpu = cu::available(&why);
  std::optional<cu::Device> dev;
  Arch arch = want_arch.value_or(Arch::sm90a);
  if (gpu) {
    dev.emplace(0);
    arch = dev->arch();
    g.sm_count = dev->sm_count();
  }
  std::vector<Variant> variants;
  for (const Variant& v : ex.variants)
    if (v.arch == arch) variants.push_back(v);
  if (variants.empty()) throw Error(fmt::format("explore: {} has no variants for {}", spec.source, to_string(arch)));

  // Buckets: the spec's, restricted by the flags; or one per matching class at the given shape.
  std::vector<tune::Bucket> buckets;
  if (pf.any_shape()) {
    std::vector<Variant> classes;
    for (const Variant& v : variants) {
      if (!pf.matches(v.family, v.dtype, v.head_dim, v.causal, v.window)) continue;
      if (std::any_of(classes.begin(), classes.end(), [&](const Variant& c) {
            return c.family == v.family && c.dtype == v.dtype && c.head_dim == v.head_dim && c.causal == v.causal &&
                   c.window == v.window;
          }))
        continue;
      classes.push_back(v);
      ProblemFlags one = pf;
      one.family = v.family;
      one.dtype = v.dtype;
      one.head_dim = v.head_dim;
      one.causal = v.causal;
      int width = pf.window.value_or(-1);
      if (v.window && width < 0)
        for (int w : spec.windows)
          if (w >= 1) width = w;
      one.window = v.window ? width : -1;
      for (const AttentionArgs& x : one.expand(spec.op)) {
        tune::Bucket b;
        b.op = spec.op;
        b.family = x.family;
        b.dtype = x.dtype;
        b.head_dim = x.head_dim;
        b.causal = x.causal;
        b.gqa = x.heads_q / std::max(1, x.heads_kv);
        b.shape = Problem{x.batch, x.q_len, x.kv_len, x.heads_q, x.heads_kv, x.window_left};
        try {
          validate(b.args(), false);
        } catch (const UnsupportedError& e) {
          throw UsageError(fmt::format("explore: {}", e.what()));
        }
        buckets.push_back(b);
      }
    }
  } else {
    for (const tune::Bucket& b : tune::buckets_for(spec, variants))
      if (pf.matches(b.family, b.dtype, b.head_dim, b.causal, b.shape.window >= 0)) buckets.push_back(b);
  }
  if (buckets.empty()) throw Error("explore: no bucket matches the flags");

  std::optional<Ceilings> ceil;
  std::string note;
  if (gpu) {
    ceil = gpu_ceilings(*dev, KernelCache::default_root(), &note);
    if (ceil) g = with_ceilings(g, *ceil);
    fmt::print("explore {} on {}: {} buckets, {} variants for {}; model ceilings {} ({:.0f} GB/s, {:.0f} TFLOP/s; "
               "{}); {:.2f} s of timing per variant\n",
               spec.source, dev->name(), buckets.size(), variants.size(), to_string(arch), g.name, g.hbm_GBps,
               g.tc_tflops_bf16, ceil ? note : "not measured: " + note, budget_s);
  } else {
    fmt::print("plx explore: no GPU ({}): predicted only -- the {} roofline model ({}: {:.0f} GB/s, {:.0f} TFLOP/s); "
               "nothing measured\n",
               why, g.name, g.source, g.hbm_GBps, g.tc_tflops_bf16);
  }

  std::optional<Engine> engine;
  std::optional<measure::Harness> h;
  std::optional<measure::AttentionInputs> inputs;
  if (gpu) {
    KernelCache cache(KernelCache::default_root());
    std::set<std::string> want;
    std::vector<CompileJob> cj;
    for (const tune::Bucket& b : buckets)
      for (const Variant& v : variants)
        if (tune::serves(v, b) && want.insert(v.name()).second) cj.push_back({render(v), std::string(to_string(arch))});
    compile_all(cj, &cache, jobs, progress_line("compiling"));
    dev->make_current();
    engine.emplace(0, EngineOptions{cache.root(), true});
    h.emplace(*dev);
    inputs.emplace(*h);
  }

  json::Value jout = json::Value::array();
  std::string fatal;  // a sticky CUDA error: the context is unusable, nothing more can run
  for (std::size_t bi = 0; bi < buckets.size() && fatal.empty(); ++bi) {
    const tune::Bucket& b = buckets[bi];
    const AttentionArgs args = b.args();
    const std::string untuned = default_variant(args, arch).name();
    std::vector<Line> lines;
    for (const tune::Ranked& r : tune::rank(variants, b, g)) lines.push_back({r, std::nullopt, "", r.v.name() == untuned});
    std::string bucket_error;
    if (gpu && !lines.empty()) {
      try {
        inputs->prepare(args);
      } catch (const Error& e) {
        bucket_error = e.what();
      }
      for (Line& l : lines) {
        if (!bucket_error.empty()) break;
        const std::string name = l.r.v.name();
        measure::TimingOptions o;
        o.budget_s = budget_s;
        o.warmup_s = std::min(0.01, budget_s / 4);
        try {
          engine->prepare(name);
          l.s = measure::summarize(
              h->time([&](int rep, void* s) { engine->attention(inputs->args(rep), name, s); }, o));
        } catch (const DriverError& e) {
          l.error = e.what();
          if (tune::is_sticky(e)) {  // the context is gone: report what was measured, then stop
            fatal = fmt::format("explore: {} broke the CUDA context ({}); stopped at bucket {}/{}", name,
                                l.error.substr(0, l.error.find('\n')), bi + 1, buckets.size());
            break;
          }
        } catch (const Error& e) {
          l.error = e.what();
        }
      }
    }
    int fastest = -1;
    for (std::size_t i = 0; i < lines.size(); ++i)
      if (lines[i].s && (fastest < 0 || lines[i].s->median < lines[std::size_t(fastest)].s->median)) fastest = int(i);

    fmt::print("\nbucket {}/{}: {}  [{}]\n", bi + 1, buckets.size(), b.flags(), tune::bucket_of(args).key());
    if (!bucket_error.empty()) fmt::print("  not measured: {}\n", bucket_error);
    std::size_t w = 7;
    for (const Line& l : lines) w = std::max(w, l.r.v.name().size());
    const char* unit = b.op == Op::decode ? "TB/s" : "TFLOP/s";
    if (gpu)
      fmt::print("  {:>4}   {:<{}}  {:>9}  {:>9}  {:>17}  {:>9}  {:>8}  {:>7}  {:>6}\n", "rank", "variant", w, "pred_us",
                 "meas_us", "p10..p90", "meas/pred", unit, "bound", "splits");
    else
      fmt::print("  {:>4}   {:<{}}  {:>9}  {:>9}  {:>7}  {:>6}  (predicted only)\n", "rank", "variant", w,
                 "pred_us", "flop/B", "bound", "splits");
    json::Value jb = json::Value::object();
    jb.set("flags", b.flags());
    jb.set("key", tune::bucket_of(args).key());
    jb.set("measured", gpu && bucket_error.empty());
    if (!bucket_error.empty()) jb.set("error", bucket_error);
    jb.set("untuned", untuned);
    json::Value jv = json::Value::array();
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const Line& l = lines[i];
      const auto& [v, p] = l.r;
      const std::string mark = std::string(int(i) == fastest ? "*" : " ") + (l.untuned ? "u" : " ");
      if (!gpu) {
        fmt::print("  {:>4}{} {:<{}}  {:>9.2f}  {:>9.1f}  {:>7}  {:>6}\n", i + 1, mark, v.name(), w, p.us, p.intensity,
                   p.compute_bound ? "compute" : "memory", p.splits);
      } else if (l.s) {
        const tune::Achieved ach = tune::achieved(b, l.s->median, g);
        fmt::print("  {:>4}{} {:<{}}  {:>9.2f}  {:>9.2f}  {:>8.2f}..{:<7.2f}  {:>9.2f}  {:>8.2f}  {:>7}  {:>6}\n", i + 1,
                   mark, v.name(), w, p.us, l.s->median, l.s->p10, l.s->p90, l.s->median / p.us, ach.value,
                   p.compute_bound ? "compute" : "memory", p.splits);
      } else {
        fmt::print("  {:>4}{} {:<{}}  {:>9.2f}  {}\n", i + 1, mark, v.name(), w, p.us,
                   l.error.empty() ? "not measured" : "FAILED: " + l.error.substr(0, l.error.find('\n')));
      }
      json::Value x = json::Value::object();
      x.set("variant", v.name());
      x.set("predicted_us", p.us);
      x.set("measured_us", l.s ? json::Value(l.s->median) : json::Value());
      x.set("p10_us", l.s ? json::Value(l.s->p10) : json::Value());
      x.set("p90_us", l.s ? json::Value(l.s->p90) : json::Value());
      x.set("n", l.s ? l.s->n : 0);
      x.set("error", l.error.empty() ? json::Value() : json::Value(l.error));
      x.set("intensity", p.intensity);
      x.set("bound", p.compute_bound ? "compute" : "memory");
      x.set("splits", p.splits);
      jv.push_back(std::move(x));
    }
    if (gpu) fmt::print("  (* fastest measured, u the untuned choice)\n");
    jb.set("variants", std::move(jv));
    jout.push_back(std::move(jb));
  }
  if (auto path = a.get("json")) {  // also after a sticky error: what was measured is kept
    write_file_atomic(*path, jout.dump(2) + "\n");
    fmt::print("\nwrote {}{}\n", *path, gpu ? "" : " (predicted only)");
  }
  if (!fatal.empty()) throw Error(fatal);
  return 0;
}

}  // namespace plx::cli
