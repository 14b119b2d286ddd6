// plx tune: validate specs, compile their variants in parallel through the disk cache,
// rank them per problem bucket by the roofline model, and with a GPU race the model's
// best few (oracle check, timing, interleaved re-measure, winner within noise) in a
// worker subprocess, record the winners in this GPU's tuning database, and write the
// summary, a JSON report and a roofline SVG. Without a GPU it says so in one line and
// does an honest dry run: the model's ranking, labelled as predicted, no database.
#include <fmt/format.h>
#include <fnmatch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <optional>
#include <set>

#include "args.hpp"
#include "autotune/bucket_key.hpp"
#include "autotune/ceilings.hpp"
#include "autotune/roofline.hpp"
#include "autotune/tune.hpp"
#include "autotune/tune_report.hpp"
#include "autotune/tune_workers.hpp"
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
#include "runtime/launch.hpp"
#include "tune_worker.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx tune [SPEC.yaml...] [options]

Validates the specs (default: specs/decode_<arch>.yaml and specs/prefill_<arch>.yaml for
the GPU's arch or --arch, plus specs/prefill_sm90_wgmma.yaml on sm_90a; looked up in the
current directory, $PLX_SOURCE_DIR, then the checkout the binary was built in), compiles every variant in parallel through the compile
cache, and ranks the variants of each problem bucket by a roofline model. With a GPU:
  1. on the first tune of this GPU, measures its ceilings (copy bandwidth, tensor-core
     rate of our own MMA kernels) and keeps them in its tuning database;
  2. per bucket, races the model's --top variants plus the untuned choice: each is checked
     against the fp64 CPU oracle on a small problem, timed (CUDA events, a GPU spin before
     each launch, cold L2 by rotating inputs >= 2x L2), and the fastest few re-measured
     interleaved (A B A B, every launch on the next input set); candidates within noise
     of the fastest are tied, and ties go to the untuned choice, then fewer registers,
     then the name;
  3. re-times every winner alone in a fresh worker (the repeat pass, --no-repeat skips
     it) and keeps how far the times moved, the between-run noise plx db compare uses;
  4. records the winners in the tuning database (<cache dir>/tuning/v1/<gpu>.json, see
     plx db), where plx::Engine finds them, and prints the summary.
The race runs in a worker subprocess: a candidate that crashes or hangs is recorded with
the reason and left out, and tuning carries on. Without a GPU: a dry run (the model's
ranking, labelled as predicted) that never writes the database, and exit 0.

Buckets (a kernel class x a shape; classes: family, dtype, head dim, mask of the spec):
  decode   the spec's gqa values x kv length {1024, 8192, 32768} x batch {1, 32}
  prefill  the spec's gqa values x q = kv length {1024, 8192}, batch 1
  backward the spec's gqa values x q = kv length {1024, 4096, 16384}, batch 1; the timed
           call is the backward (preprocess + gradients) on a real forward's statistics,
           checked against the fp64 gradient oracle; keys start "backward_", so forward
           and backward winners never share a bucket
  heads_kv 8, heads_q = 8 x gqa; windowed classes at each window width of the spec
  --buckets GLOB[,GLOB..]  only buckets whose key matches, e.g. 'decode_parallax_bf16_d128_*'
                           or '*_bh8_kv1024_*' (keys as plx db show prints them)

Model:
  --profile NAME   ceilings for the model when none are measured: h200 (measured figures),
                   h100, a100 (datasheet); default h200, or the GPU's own when it is an A100
  --arch ARCH      dry run: the arch to compile and rank for (default sm_90a); with a GPU it
                   must be the GPU's
Measurement:
  --budget-s N     seconds of timing for all buckets together (default 160), shared out
                   as the tune goes (0.05..5 s a bucket)
  --top N          variants raced per bucket, in model order (default 4; the untuned choice
                   is added when not among them); dry run: rows printed per bucket (3)
  --timeout-s N    a candidate silent this long is killed as hung (default 90)
  --no-check       skip the oracle check (not recommended)
  --no-repeat      skip the repeat pass. By default, after the race each bucket's winner is
                   re-timed in a fresh worker (new process and allocations, minutes later;
                   same harness, no check) and how far the times moved is recorded: per
                   bucket repeat_us, per database repro_rel = p90 of |repeat - winner| /
                   winner (plx db compare adds repro_rel x time to the noise; without it
                   two tunes differ by more than the within-run noise). Summary and --out
                   report show median and p90. Dry run: nothing is measured or repeated
  --repeat         the default (kept so older command lines still parse)
  --repeat-budget-s N   seconds of timing for the repeat pass (default: 10% of
                   --budget-s, at least 1), shared out as 0.02..0.5 s a bucket
  --remeasure-ceilings   measure the ceilings again even when the database has them
  --require-gpu    exit 1 (before compiling) when there is no usable GPU
  -j, --jobs N     compile on N threads (default: the number of hardware threads)
Output:
  --out FILE       JSON report (--json FILE is the same): every bucket's candidates,
                   predicted and measured, winner, noise, speedup over the untuned choice
  --svg FILE       roofline picture (default with --out: FILE with .svg instead of .json)
  --csv FILE       one row per bucket
)";

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string report_csv(const tune::Report& rep) {
  std::string s =
      "op,family,dtype,head_dim,causal,window,gqa,batch,q_len,kv_len,heads_q,heads_kv,winner,predicted_us,"
      "measured_us,bound,splits,noise_us,untuned,untuned_us,speedup,achieved,unit,fraction_of_ceiling\n";
  for (const tune::BucketReport& br : rep.buckets) {
    const tune::Bucket& b = br.bucket;
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},", to_string(b.op), to_string(b.family),
                     to_string(b.dtype), b.head_dim, b.causal ? 1 : 0, b.shape.window, b.gqa, b.shape.batch,
                     b.shape.q_len, b.shape.kv_len, b.shape.heads_q, b.shape.heads_kv);
    if (br.outcome) {
      const tune::BucketOutcome& o = *br.outcome;
      if (o.winner < 0) {
        s += std::string(11, ',') + "\n";
        continue;
      }
      const tune::Candidate& w = br.candidates[std::size_t(o.winner)];
      const tune::Achieved a = tune::achieved(b, o.winner_us, rep.profile);
      s += fmt::format("{},{:.2f},{:.2f},{},{},{:.3f},{},{},{},{:.3f},{},{:.3f}\n", csv_escape(w.name()), w.p.us,
                       o.winner_us, w.p.compute_bound ? "compute" : "memory", w.p.splits, o.noise_us,
                       o.untuned >= 0 ? csv_escape(br.candidates[std::size_t(o.untuned)].name()) : "",
                       o.untuned_us > 0 ? fmt::format("{:.2f}", o.untuned_us) : "",
                       o.speedup() > 0 ? fmt::format("{:.4f}", o.speedup()) : "", a.value, a.unit, a.fraction);
    } else if (!br.ranked.empty()) {
      const auto& [v, p] = br.ranked.front();
      // winner, predicted, measured (none), bound, splits, then 7 empty measured fields
      s += fmt::format("{},{:.2f},,{},{}{}\n", csv_escape(v.name()), p.us, p.compute_bound ? "compute" : "memory",
                       p.splits, std::string(7, ','));
    } else {
      s += std::string(11, ',') + "\n";
    }
  }
  return s;
}

void print_model_table(const tune::BucketReport& br, int top) {
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

std::string duration(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  return fmt::format("{}m{:02d}s", int(s) / 60, int(s) % 60);
}

bool matches_any(const std::string& key, const std::vector<std::string>& globs) {
  if (globs.empty()) return true;
  for (const std::string& g : globs)
    if (::fnmatch(g.c_str(), key.c_str(), 0) == 0) return true;
  return false;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i <= s.size()) {
    std::size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

int cmd_tune(const std::vector<std::string>& argv) {
  const Args a = parse(argv,
                       {{"profile", true}, {"arch", true}, {"require-gpu", false}, {"top", true}, {"json", true},
                        {"out", true}, {"csv", true}, {"svg", true}, {"jobs", true, 'j'}, {"budget-s", true},
                        {"buckets", true}, {"timeout-s", true}, {"no-check", false}, {"remeasure-ceilings", false},
                        {"repeat", false}, {"no-repeat", false}, {"repeat-budget-s", true}, {"worker", true}},
                       "tune");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (auto job = a.get("worker")) return tune_worker_main(*job);
  const int top = a.get_int("top", 4, 1, 1000);
  const int jobs = a.get_int("jobs", default_jobs(), 1, 1024);
  const int budget_s = a.get_int("budget-s", 160, 1, 1000000);
  const int timeout_s = a.get_int("timeout-s", 90, 1, 86400);
  if (a.has("repeat") && a.has("no-repeat")) throw UsageError("tune: --repeat and --no-repeat contradict each other");
  const bool repeat = !a.has("no-repeat");
  if (a.has("repeat-budget-s") && !repeat)
    throw UsageError("tune: --repeat-budget-s sets the repeat pass, which --no-repeat skips");
  const int repeat_budget_s = a.get_int("repeat-budget-s", std::max(1, budget_s / 10), 1, 1000000);
  if (a.has("json") && a.has("out")) throw UsageError("tune: --out and --json name the same report; give one");
  const std::optional<std::string> out_path = a.has("out") ? a.get("out") : a.get("json");
  std::optional<std::string> svg_path = a.get("svg");
  if (!svg_path && out_path) {
    std::filesystem::path p(*out_path);
    svg_path = (p.extension() == ".json" ? p.replace_extension(".svg") : std::filesystem::path(*out_path + ".svg"))
                   .string();
  }
  const std::vector<std::string> globs = split_commas(a.get_or("buckets", ""));
  if (a.has("buckets") && globs.empty()) throw UsageError("tune: --buckets wants one or more patterns");
  std::optional<Arch> want_arch;
  if (auto s = a.get("arch")) {
    want_arch = parse_arch(*s);
    if (!want_arch) throw UsageError(fmt::format("tune: --arch wants sm_80 or sm_90a, got '{}'", *s));
  }
  std::string profile_name = a.get_or("profile", "");
  if (!profile_name.empty()) {
    try {
      (void)profile(profile_name);
    } catch (const UnsupportedError& e) {
      throw UsageError(fmt::format("tune: --profile: {}", e.what()));
    }
  }

  const auto t_start = std::chrono::steady_clock::now();
  std::string why;
  const bool gpu = cu::available(&why);
  std::optional<cu::Device> dev;
  std::string gpu_name;
  Arch arch = want_arch.value_or(Arch::sm90a);
  if (gpu) {
    dev.emplace(0);
    gpu_name = dev->name();
    const Arch dev_arch = dev->arch();  // UnsupportedError for GPUs the templates do not target
    if (want_arch && *want_arch != dev_arch)
      throw UsageError(fmt::format("tune: --arch {} but the GPU ({}) is {}", to_string(*want_arch), gpu_name,
                                   to_string(dev_arch)));
    arch = dev_arch;
  }
  const std::string arch_s(to_string(arch));
  const std::string arch_short = arch == Arch::sm90a ? "sm90" : "sm80";

  std::vector<std::filesystem::path> spec_paths;
  for (const std::string& p : a.positional) spec_paths.emplace_back(p);
  if (spec_paths.empty()) {
    for (const char* kind : {"decode", "prefill"}) {
      const std::string rel = fmt::format("specs/{}_{}.yaml", kind, arch_short);
      auto found = find_in_source(rel);
      if (!found)
        throw Error(fmt::format("tune: no spec given and {} not found in the current directory, $PLX_SOURCE_DIR or "
                                "the build's source tree",
                                rel));
      spec_paths.push_back(*found);
    }
    // Hopper's wgmma prefill family lives in its own spec; race it against mma.sync.
    if (arch == Arch::sm90a)
      if (auto wg = find_in_source("specs/prefill_sm90_wgmma.yaml")) spec_paths.push_back(*wg);
  }
  std::vector<KernelSpec> specs;
  std::vector<std::vector<Variant>> spec_variants;
  std::size_t total_variants = 0, total_dropped = 0;
  for (const auto& p : spec_paths) {
    specs.push_back(load_spec(p));  // SpecError: FILE:LINE:COL: ...
    const ExpandResult ex = expand(specs.back());
    std::vector<Variant> vs;
    for (const Variant& v : ex.variants)
      if (v.arch == arch) vs.push_back(v);
    fmt::print("spec {} ({}): {} variants, {} dropped, {} for {}{}\n", specs.back().name, specs.back().source,
               ex.variants.size(), ex.dropped.size(), vs.size(), arch_s, gpu ? " (" + gpu_name + ")" : "");
    total_variants += vs.size();
    total_dropped += ex.dropped.size();
    spec_variants.push_back(std::move(vs));
  }
  if (!gpu && a.has("require-gpu"))
    throw Error(fmt::format("tune: no GPU ({}) and --require-gpu is set: specs validated ({} variants), nothing "
                            "compiled or measured",
                            why, total_variants));
  if (total_variants == 0) throw Error(fmt::format("tune: the specs have no variants for {}", arch_s));

  // Compile every variant first: NVRTC errors surface before any timing, the registers and
  // spills are known, and the worker then loads each cubin from the disk cache.
  KernelCache cache(KernelCache::default_root());
  std::vector<Variant> all;
  for (const auto& vs : spec_variants) all.insert(all.end(), vs.begin(), vs.end());
  std::vector<CompileJob> compile_jobs;
  for (const Variant& v : all) compile_jobs.push_back({render(v), arch_s});
  auto t0 = std::chrono::steady_clock::now();
  const auto outcomes = compile_all(compile_jobs, &cache, jobs, progress_line("compiling"));
  const double compile_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::map<std::string, std::pair<int, int>> resources;  // name -> (registers, spill bytes)
  std::set<std::string> compiled_ok;
  int failed = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (outcomes[i].ok) {
      compiled_ok.insert(all[i].name());
      resources[all[i].name()] = {outcomes[i].compiled.registers, outcomes[i].compiled.spill_bytes};
      continue;
    }
    ++failed;
    std::string msg = outcomes[i].error;
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    fmt::print("{} FAILED: {}\n", all[i].name(), msg);
  }
  const CacheStats st = cache.stats();
  fmt::print("compiled {} variants in {:.1f} s on {} threads ({} from the cache, {} built, {} failed) in {}\n",
             all.size(), compile_s, jobs, st.disk_hits + st.memory_hits, st.builds, failed, cache.root().string());

  // The model's ceilings: measured ones from this GPU's database (measured now on the first
  // tune), else the profile's.
  if (profile_name.empty()) profile_name = gpu_name.find("A100") != std::string::npos ? "a100" : "h200";
  GpuProfile g = profile(profile_name);
  std::optional<TuningDb> db;
  std::optional<Ceilings> ceilings;
  if (gpu) {
    g.sm_count = dev->sm_count();  // the model describes the GPU at hand
    db.emplace(cache.root(), GpuIdentity::of(*dev));
    db->load();
    ceilings = db->ceilings();
    if (!ceilings || a.has("remeasure-ceilings")) {
      try {
        std::string wg;
        ceilings = tune::run_ceilings_worker(worker_command(), timeout_s, &wg);
        if (!wg.empty()) fmt::print("note: the wgmma rate could not be measured ({}); the ceiling is mma.sync's\n", wg);
        db->record({}, ceilings);
        fmt::print("ceilings measured: copy {:.0f} GB/s, tensor cores {:.0f} TFLOP/s ({}; mma.sync {:.0f}), ridge "
                   "{:.0f} FLOP/B; stored in {}\n",
                   ceilings->copy_GBps, ceilings->tc_tflops, ceilings->tc_kernel, ceilings->mma_sync_tflops,
                   ceilings->ridge(), db->path().string());
      } catch (const Error& e) {
        ceilings.reset();
        fmt::print("ceilings not measured ({}); the model uses the {} profile\n", e.what(), g.name);
      }
    } else {
      fmt::print("ceilings (measured {}): copy {:.0f} GB/s, tensor cores {:.0f} TFLOP/s ({}), ridge {:.0f} FLOP/B\n",
                 db->path().string(), ceilings->copy_GBps, ceilings->tc_tflops, ceilings->tc_kernel,
                 ceilings->ridge());
    }
    if (ceilings) g = with_ceilings(g, *ceilings);
  } else {
    fmt::print("plx tune: no GPU ({}): dry run -- specs validated, {} variants compiled, ranked by the {} roofline "
               "model; nothing was measured and the tuning database is not written\n",
               why, compiled_ok.size(), g.name);
    fmt::print("model ceilings ({}, {}): {:.0f} GB/s, {:.0f} TFLOP/s bf16 dense, ridge {:.0f} FLOP/B -- predictions, "
               "not measurements\n",
               g.name, g.source, g.hbm_GBps, g.tc_tflops_bf16, g.tc_tflops_bf16 * 1e3 / g.hbm_GBps);
    if (a.has("repeat") || a.has("repeat-budget-s"))
      fmt::print("plx tune: --repeat: a dry run does not measure, so no winner is re-timed and no reproducibility "
                 "(repeat_us, repro_rel) is computed or recorded\n");
  }

  // Buckets, ranked by the model.
  tune::Report rep;
  rep.profile = g;
  for (const auto& s : specs) rep.specs.push_back(s.source);
  rep.gpu = gpu_name;
  rep.arch = arch_s;
  rep.measured = gpu;
  rep.ceilings = ceilings;
  rep.budget_s = budget_s;
  for (std::size_t si = 0; si < specs.size(); ++si) {
    std::vector<Variant> ok;
    for (const Variant& v : spec_variants[si])
      if (compiled_ok.count(v.name())) ok.push_back(v);
    for (const tune::Bucket& b : tune::buckets_for(specs[si], ok)) {
      tune::BucketReport br;
      br.bucket = b;
      br.key = tune::bucket_id(b).key();
      if (!matches_any(br.key, globs)) continue;
      br.ranked = tune::rank(ok, b, g);
      if (br.ranked.empty()) continue;
      rep.buckets.push_back(std::move(br));
    }
  }
  if (rep.buckets.empty())
    throw Error(globs.empty() ? "tune: no bucket has a variant that fits this GPU"
                              : fmt::format("tune: no bucket matches --buckets {}", a.get_or("buckets", "")));

  if (!gpu) {
    for (std::size_t bi = 0; bi < rep.buckets.size(); ++bi) {
      fmt::print("\nbucket {}/{}: {} (predicted)\n", bi + 1, rep.buckets.size(), rep.buckets[bi].bucket.flags());
      // The model alone cannot separate close variants: show the head of each ranking.
      print_model_table(rep.buckets[bi], a.has("top") ? top : 3);
    }
  } else {
    // Candidates: the model's top ones and the untuned choice (compiled here if the specs
    // lack it).
    std::vector<CompileJob> extra;
    std::set<std::string> extra_names;
    for (tune::BucketReport& br : rep.buckets) {
      const Variant untuned = tune::untuned_variant(br.bucket, arch);
      if (!compiled_ok.count(untuned.name()) && extra_names.insert(untuned.name()).second)
        extra.push_back({render(untuned), arch_s});
      if (br.bucket.op == Op::backward) {
        // A backward call also runs the per-row preprocess, and its inputs come from the
        // engine's training forward: compile both here, not inside the worker's watchdog.
        const Variant fwd = default_variant(br.bucket.args(), arch);
        if (!compiled_ok.count(fwd.name()) && extra_names.insert(fwd.name()).second)
          extra.push_back({render(fwd), arch_s});
        const std::string pre = backward_pre_name(untuned.family, untuned.dtype, untuned.head_dim);
        if (extra_names.insert(pre).second)
          extra.push_back({render_backward_pre(untuned.family, untuned.dtype, untuned.head_dim), arch_s});
      }
    }
    const auto extra_out = compile_all(extra, &cache, jobs, progress_line("compiling the untuned choices"));
    for (std::size_t i = 0; i < extra.size(); ++i)
      if (extra_out[i].ok)
        resources[extra[i].kernel.display_name] = {extra_out[i].compiled.registers, extra_out[i].compiled.spill_bytes};
    auto regs = [&](const Variant& v) {
      auto it = resources.find(v.name());
      return it == resources.end() ? -1 : it->second.first;
    };
    auto spills = [&](const Variant& v) {
      auto it = resources.find(v.name());
      return it == resources.end() ? -1 : it->second.second;
    };
    std::vector<tune::WorkerBucket> wbs;
    std::size_t n_cands = 0;
    for (tune::BucketReport& br : rep.buckets) {
      br.candidates = tune::candidates_for(br.ranked, tune::untuned_variant(br.bucket, arch), top, regs, spills);
      for (tune::Candidate& c : br.candidates)
        if (c.model_rank < 0) {  // the untuned choice, outside the spec: predict it too
          try {
            c.p = predict(c.v, br.bucket.shape, g);
          } catch (const Error&) {
          }
        }
      n_cands += br.candidates.size();
      wbs.push_back({br.bucket, br.key, br.candidates});
    }
    fmt::print("\nracing {} candidates in {} buckets (budget {} s of timing, top {} by the model + the untuned "
               "choice)\n",
               n_cands, wbs.size(), budget_s, top);

    // Progress: one redrawn line on a terminal, nothing in logs.
    const bool tty = ::isatty(STDERR_FILENO);
    std::size_t done = 0, timed = 0, bad = 0;
    const auto t_race = std::chrono::steady_clock::now();
    auto draw = [&] {
      if (!tty) return;
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_race).count();
      const double eta = done ? el / double(done) * double(wbs.size() - done) : double(budget_s);
      fmt::print(stderr, "\r\033[Ktune: bucket {}/{}, {} variants timed, {} failed, {} elapsed, ETA {}", done,
                 wbs.size(), timed, bad, duration(el), duration(eta));
      std::fflush(stderr);
    };
    std::vector<std::string> failures;
    tune::WorkerEvents ev;
    ev.begin = [&](int, int, const std::string&) { draw(); };
    ev.result = [&](int b, int c, const tune::CandidateResult& r) {
      if (r.status == tune::Status::timed) {
        ++timed;
      } else {
        ++bad;
        failures.push_back(fmt::format("  {} in {}: {}: {}", wbs[std::size_t(b)].candidates[std::size_t(c)].name(),
                                       wbs[std::size_t(b)].key, to_string(r.status), r.error));
      }
      draw();
    };
    ev.done = [&](int, const tune::BucketOutcome&) {
      ++done;
      draw();
    };
    tune::WorkerOptions wo;
    wo.command = worker_command();
    wo.budget_s = budget_s;
    wo.stall_s = timeout_s;
    wo.tune.check = !a.has("no-check");
    const auto outs = tune::run_tune_workers(wbs, wo, ev);
    if (tty) fmt::print(stderr, "\n");
    for (std::size_t i = 0; i < rep.buckets.size(); ++i) rep.buckets[i].outcome = outs[i];

    // --repeat: every winner again, in a fresh worker, after all buckets were raced.
    if (repeat) {
      std::size_t n_win = 0;
      for (const auto& o : outs) n_win += o.winner >= 0;
      fmt::print("\nrepeat: re-timing the {} winners in a fresh worker (budget {} s of timing)\n", n_win,
                 repeat_budget_s);
      tune::WorkerOptions ro = wo;
      ro.budget_s = repeat_budget_s;
      ro.bucket_min_s = 0.02;
      ro.bucket_max_s = 0.5;
      std::size_t rdone = 0;
      tune::WorkerEvents rev;
      rev.done = [&](int, const tune::BucketOutcome&) {
        ++rdone;
        if (tty) {
          fmt::print(stderr, "\r\033[Ktune: repeat {}/{}", rdone, n_win);
          std::fflush(stderr);
        }
      };
      const auto t_rep = std::chrono::steady_clock::now();
      const auto again = tune::run_repeat_workers(wbs, outs, ro, rev);
      if (tty) fmt::print(stderr, "\n");
      rep.repeated = true;
      rep.repeat_budget_s = repeat_budget_s;
      rep.repeat_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_rep).count();
      std::vector<std::pair<double, double>> pairs;
      for (std::size_t i = 0; i < rep.buckets.size(); ++i) {
        rep.buckets[i].repeat_us = again[i].us;
        rep.buckets[i].repeat_error = again[i].error;
        if (outs[i].winner >= 0) pairs.emplace_back(outs[i].winner_us, again[i].us);
      }
      rep.repro = measure::reproducibility(pairs);
    }

    // Summary.
    std::size_t kw = 6, ww = 6;
    for (const auto& br : rep.buckets) {
      kw = std::max(kw, br.key.size());
      if (br.outcome->winner >= 0) ww = std::max(ww, br.candidates[std::size_t(br.outcome->winner)].name().size());
    }
    fmt::print("\n{:<{}}  {:<{}}  {:>10}  {:>8}  {:>14}  {:>7}  {:>10}  {:>7}{}\n", "bucket", kw, "winner", ww,
               "time_us", "noise_us", "achieved", "of_ceil", "untuned_us", "speedup",
               repeat ? fmt::format("  {:>9}  {:>7}", "repeat_us", "moved") : "");
    int with_winner = 0, same_as_untuned = 0;
    for (const auto& br : rep.buckets) {
      const tune::BucketOutcome& o = *br.outcome;
      if (o.winner < 0) {
        fmt::print("{:<{}}  {}\n", br.key, kw, o.error.empty() ? "no winner: every candidate failed" : o.error);
        continue;
      }
      ++with_winner;
      same_as_untuned += o.winner == o.untuned;
      const tune::Achieved ach = tune::achieved(br.bucket, o.winner_us, g);
      std::string again;
      if (repeat)
        again = br.repeat_us > 0 ? fmt::format("  {:>9.2f}  {:>+6.2f}%", br.repeat_us,
                                               100 * (br.repeat_us - o.winner_us) / o.winner_us)
                                 : fmt::format("  {:>9}  {:>7}", "-", "-");
      fmt::print("{:<{}}  {:<{}}  {:>10.2f}  {:>8.2f}  {:>6.2f} {:<7}  {:>6.0f}%  {:>10}  {:>7}{}\n", br.key, kw,
                 br.candidates[std::size_t(o.winner)].name(), ww, o.winner_us, o.noise_us, ach.value, ach.unit,
                 100 * ach.fraction, o.untuned_us > 0 ? fmt::format("{:.2f}", o.untuned_us) : "-",
                 o.speedup() > 0 ? fmt::format("{:.3f}x", o.speedup()) : "-", again);
    }
    const double gm = tune::geomean_speedup(rep.buckets);
    fmt::print("\n{} of {} buckets tuned; the winner is the untuned choice in {}; geometric mean speedup over the "
               "untuned choice: {}\n",
               with_winner, rep.buckets.size(), same_as_untuned, gm > 0 ? fmt::format("{:.3f}x", gm) : "n/a");
    fmt::print("ceilings for the fractions: {} ({:.0f} GB/s, {:.0f} TFLOP/s)\n", g.name, g.hbm_GBps, g.tc_tflops_bf16);
    if (repeat) {
      int beyond = 0, not_repeated = 0;
      for (const auto& br : rep.buckets) {
        const tune::BucketOutcome& o = *br.outcome;
        if (o.winner < 0) continue;
        if (br.repeat_us <= 0) {
          ++not_repeated;
          continue;
        }
        beyond += std::abs(br.repeat_us - o.winner_us) > o.noise_us;
      }
      if (rep.repro)
        fmt::print("reproducibility (--repeat: each winner re-timed alone in a fresh worker after the race, {} "
                   "wall): |repeat - winner| / winner over {} buckets: median {:.2f}%, p90 {:.2f}% (repro_rel), max "
                   "{:.2f}%; {} moved by more than their recorded noise{}\n",
                   duration(rep.repeat_seconds), rep.repro->n,
                   100 * rep.repro->median_rel, 100 * rep.repro->p90_rel, 100 * rep.repro->max_rel, beyond,
                   not_repeated ? fmt::format("; {} winners not re-timed", not_repeated) : "");
      else
        fmt::print("reproducibility (--repeat): no winner could be re-timed ({} tried); nothing recorded\n",
                   not_repeated);
    }
    if (!failures.empty()) {
      fmt::print("\n{} candidate failures (recorded, skipped):\n", failures.size());
      for (const std::string& f : failures) fmt::print("{}\n", f);
    }

    // The database: winners keyed by the bucket of each tuned shape.
    std::vector<DbEntry> entries;
    const std::int64_t now = std::time(nullptr);
    for (const auto& br : rep.buckets) {
      const tune::BucketOutcome& o = *br.outcome;
      if (o.winner < 0) continue;
      DbEntry e;
      e.bucket = br.key;
      e.winner = br.candidates[std::size_t(o.winner)].name();
      e.winner_us = o.winner_us;
      if (o.runner_up >= 0) {
        e.runner_up = br.candidates[std::size_t(o.runner_up)].name();
        e.runner_up_us = o.runner_up_us;
      }
      e.predicted_us = br.candidates[std::size_t(o.winner)].p.us;
      e.noise_us = o.noise_us;
      e.repeat_us = br.repeat_us;
      e.measured_at = now;
      e.notes = fmt::format("plx tune: {}", br.bucket.flags());
      entries.push_back(std::move(e));
    }
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    if (out_path) {
      write_file_atomic(*out_path, tune::report_json(rep).dump(2) + "\n");
      fmt::print("\nwrote {}\n", *out_path);
    }
    if (svg_path) {
      write_file_atomic(*svg_path, tune::roofline_svg(rep));
      fmt::print("wrote {}\n", *svg_path);
    }
    if (auto path = a.get("csv")) {
      write_file_atomic(*path, report_csv(rep));
      fmt::print("wrote {}\n", *path);
    }
    // Last, after the reports: a database the disk refuses still leaves them written.
    if (!entries.empty()) {
      std::optional<DbRepro> repro;
      if (rep.repro) repro = DbRepro{rep.repro->p90_rel, rep.repro->median_rel, rep.repro->n};
      // Merges with other tuners; the faster winner stays per bucket; repro, when measured,
      // replaces the file's (it is this GPU's latest).
      db->record(entries, std::nullopt, repro);
      fmt::print("\ntuning database: {} winners recorded in {} ({} buckets in all){}\n", entries.size(),
                 db->path().string(), db->entries().size(),
                 repro ? fmt::format("; repro_rel {:.2f}%", 100 * repro->rel) : "");
    } else {
      fmt::print("\ntuning database: nothing recorded (no bucket has a measured winner)\n");
    }
    fmt::print("tune took {} (compile {:.0f} s)\n", duration(rep.seconds), compile_s);
    return failed || with_winner == 0 ? 1 : 0;
  }

  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (out_path) {
    write_file_atomic(*out_path, tune::report_json(rep).dump(2) + "\n");
    fmt::print("\nwrote {} (predicted: no GPU)\n", *out_path);
  }
  if (svg_path) {
    write_file_atomic(*svg_path, tune::roofline_svg(rep));
    fmt::print("wrote {} (predicted: no GPU)\n", *svg_path);
  }
  if (auto path = a.get("csv")) {
    write_file_atomic(*path, report_csv(rep));
    fmt::print("wrote {}\n", *path);
  }
  return failed ? 1 : 0;
}

}  // namespace plx::cli
