// plx bench: times attention calls through plx::Engine with the tuner's harness
// (autotune/measure.hpp) and prints, per shape, a line that pastes back as a command:
//   plx bench decode --family parallax ... --variant NAME  # median 20.13 us ...
// plus achieved TB/s (decode) or TFLOP/s (prefill, both counting conventions) as a
// fraction of this GPU's measured ceilings. `plx bench overhead` gives the host-side costs
// (cold compile, disk-cache load, per-call host time). Needs a GPU: without one it says so
// in one line and exits 1.
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "args.hpp"
#include "autotune/ceilings.hpp"
#include "autotune/heuristics.hpp"
#include "autotune/host_overhead.hpp"
#include "autotune/measure.hpp"
#include "autotune/tune.hpp"
#include "commands.hpp"
#include "common/json.hpp"
#include "generator/render.hpp"
#include "parallax/parallax.hpp"
#include "problem_flags.hpp"
#include "runtime/driver.hpp"
#include "runtime/jit.hpp"
#include "runtime/kernel_cache.hpp"
#include "runtime/launch.hpp"
#include "tune_worker.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx bench decode|prefill [shape flags] [options]
       plx bench overhead

Times one attention call per shape through plx::Engine: CUDA events, a 20 us GPU spin
before each timed launch (so the events time the GPU, not the host's enqueue), cold L2 by
rotating input sets whose total is at least 2x the L2 (or a flush), warm-up and repeats by
time; prints the median, p10/p90 and the achieved rate against this GPU's measured
ceilings (copy bandwidth, tensor-core rate; measured once, kept in the tuning database).
Each result line starts with the command that reproduces it.

Shape (lists separated by commas give every combination):
  --batch B[,B..]       default 1
  --kv-len L[,L..]      default 4096
  --q-len Q[,Q..]       default 1 (decode) or the kv length (prefill)
  --heads-q H           default 32
  --heads-kv K          default 8
  --head-dim D          (or --d) default 128
  --family F            parallax (default), softmax, parallax_uncentered
  --dtype T             bf16 (default), fp16
  --mask causal|full    default causal
  --window W            sliding window of W keys (default none)
  --page-size P         paged KV cache, P tokens a page (16..256), shuffled block table
  --shapes LIST         BxLxHqxHkv[xD],... instead of --batch/--kv-len/--heads-* (plx-bench's form)
Options:
  --variant NAME        time this variant (default: what the engine picks -- the tuned
                        winner, else the model's choice)
  --budget-s S          timing per shape (default 1)
  --reps N              at most N timed calls per shape (default 500)
  --spin-ns N           GPU spin before each timed call (default 20000; 0: none)
  --json                one JSON object per line instead of text
  --csv                 CSV with a header instead of text

Rates: decode counts the bytes a call must move (K and V of the visible keys once, q, r and
o); prefill counts FLOPs per visible (query, key) pair, Parallax 8*D and softmax 4*D, and
prints both conventions; the fraction is the family's own FLOPs over the tensor-core rate.
)";

struct Row {
  AttentionArgs a;
  Op op;
  std::string variant;
  bool tuned = false;
  int splits = 1;
  measure::Stats s;
  double bytes = 0, flops8 = 0, flops4 = 0;  // useful bytes; pairs x 8D and x 4D
};

std::string command_of(const Row& r) {
  return fmt::format("plx bench {} {} --variant {}", to_string(r.op), problem_flags(r.a), r.variant);
}

json::Value row_json(const Row& r, const std::optional<Ceilings>& c) {
  json::Value o = json::Value::object();
  o.set("op", std::string(to_string(r.op)));
  o.set("impl", "plx");
  o.set("family", std::string(to_string(r.a.family)));
  o.set("dtype", std::string(to_string(r.a.dtype)));
  o.set("batch", r.a.batch);
  o.set("q_len", r.a.q_len);
  o.set("kv_len", r.a.kv_len);
  o.set("heads_q", r.a.heads_q);
  o.set("heads_kv", r.a.heads_kv);
  o.set("d", r.a.head_dim);
  o.set("causal", r.a.causal);
  o.set("window", r.a.window_left);
  o.set("page", r.a.page_size);
  o.set("variant", r.variant);
  o.set("tuned", r.tuned);
  o.set("splits", r.splits);
  o.set("median_us", r.s.median);
  o.set("p10_us", r.s.p10);
  o.set("p90_us", r.s.p90);
  o.set("mad_us", r.s.mad);
  o.set("n", r.s.n);
  o.set("bytes", r.bytes);
  o.set("GBps", r.bytes / (r.s.median * 1e3));
  const double own = has_probe(r.a.family) ? r.flops8 : r.flops4;
  o.set("TFLOPs", own / (r.s.median * 1e6));
  o.set("TFLOPs_parallax_8D", r.flops8 / (r.s.median * 1e6));
  o.set("TFLOPs_softmax_4D", r.flops4 / (r.s.median * 1e6));
  if (c) {
    o.set("copy_GBps", c->copy_GBps);
    o.set("tc_tflops", c->tc_tflops);
    o.set("fraction_of_copy", r.bytes / (r.s.median * 1e3) / c->copy_GBps);
    o.set("fraction_of_tc", own / (r.s.median * 1e6) / c->tc_tflops);
  }
  o.set("command", command_of(r));
  return o;
}

std::string row_text(const Row& r, const std::optional<Ceilings>& c) {
  std::string s = fmt::format("{}  # median {:.2f} us (p10 {:.2f}, p90 {:.2f}, n {})", command_of(r), r.s.median,
                              r.s.p10, r.s.p90, r.s.n);
  if (r.op == Op::decode) {
    const double tbs = r.bytes / (r.s.median * 1e6);
    s += fmt::format(", {:.3f} TB/s", tbs);
    if (c) s += fmt::format(" = {:.0f}% of the measured copy {:.2f} TB/s", 100 * tbs * 1e3 / c->copy_GBps, c->copy_GBps / 1e3);
    if (r.splits > 1) s += fmt::format(", {} KV splits", r.splits);
  } else {
    const double t8 = r.flops8 / (r.s.median * 1e6), t4 = r.flops4 / (r.s.median * 1e6);
    const double own = has_probe(r.a.family) ? t8 : t4;
    s += fmt::format(", {:.1f} TFLOP/s Parallax-counted (8*D per visible pair) = {:.1f} softmax-counted (4*D)", t8, t4);
    if (c) s += fmt::format("; {:.0f}% of the measured tensor-core {:.0f} TFLOP/s", 100 * own / c->tc_tflops, c->tc_tflops);
  }
  s += r.tuned ? ", tuned winner" : "";
  return s;
}

int overhead(const Args& a) {
  std::string why;
  if (!cu::available(&why)) throw Error(fmt::format("bench: no GPU ({}): nothing measured", why));
  const std::string name = a.get_or("variant", "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s2_kauto_sm90a");
  const auto v = parse_variant_name(name);
  if (!v) throw UsageError(fmt::format("bench: --variant '{}' is not a variant name", name));
  const measure::HostOverhead h = measure::host_overhead(*v);
  json::Value o = json::Value::object();
  o.set("bench", "overhead");
  o.set("variant", name);
  o.set("cold_compile_ms", h.cold_compile_ms);
  o.set("disk_load_ms", h.disk_load_ms);
  o.set("host_us_per_call_auto", h.auto_us);
  o.set("host_us_per_call_named", h.named_us);
  o.set("host_us_raw_launch", h.raw_us);
  o.set("registers", h.registers);
  if (a.has("json")) {
    fmt::print("{}\n", o.dump());
  } else {
    fmt::print("overhead of {}: cold NVRTC compile {:.1f} ms, load from the disk cache {:.2f} ms, host time per call "
               "{:.2f} us (engine's choice) / {:.2f} us (named) / {:.2f} us (bare cuLaunchKernel), {} registers\n",
               name, h.cold_compile_ms, h.disk_load_ms, h.auto_us, h.named_us, h.raw_us, h.registers);
  }
  return 0;
}

std::vector<AttentionArgs> shapes_list(const std::string& list, const AttentionArgs& base, Op op) {
  std::vector<AttentionArgs> out;
  std::size_t i = 0;
  while (i <= list.size()) {
    std::size_t j = list.find(',', i);
    if (j == std::string::npos) j = list.size();
    const std::string item = list.substr(i, j - i);
    std::vector<int> f;
    std::size_t k = 0;
    while (k <= item.size()) {
      std::size_t e = item.find('x', k);
      if (e == std::string::npos) e = item.size();
      try {
        std::size_t used = 0;
        const std::string num = item.substr(k, e - k);
        f.push_back(std::stoi(num, &used));
        if (used != num.size()) throw std::invalid_argument(num);
      } catch (const std::exception&) {
        throw UsageError(fmt::format("bench: --shapes wants BxLxHqxHkv[xD] items, got '{}'", item));
      }
      k = e + 1;
    }
    if (f.size() < 4 || f.size() > 5)
      throw UsageError(fmt::format("bench: --shapes wants BxLxHqxHkv[xD] items, got '{}'", item));
    AttentionArgs a = base;
    a.batch = f[0];
    a.kv_len = f[1];
    a.q_len = op == Op::decode ? base.q_len : f[1];
    a.heads_q = f[2];
    a.heads_kv = f[3];
    if (f.size() == 5) a.head_dim = f[4];
    if (a.page_size > 0) a.max_pages = (a.kv_len + a.page_size - 1) / a.page_size;
    out.push_back(a);
    i = j + 1;
  }
  return out;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
  std::vector<Option> opts = problem_options();
  for (Option o : std::vector<Option>{{"variant", true}, {"budget-s", true}, {"reps", true}, {"spin-ns", true},
                                      {"json", false}, {"csv", false}, {"shapes", true}})
    opts.push_back(o);
  const Args a = parse(argv, opts, "bench");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (a.positional.size() > 1) throw UsageError("bench: one of decode, prefill or overhead");
  if (a.has("json") && a.has("csv")) throw UsageError("bench: --json or --csv, not both");
  const ProblemFlags pf = parse_problem(a, "bench");
  std::optional<Op> op = pf.op;
  if (!a.positional.empty()) {
    if (a.positional[0] == "overhead") return overhead(a);
    const auto p = parse_op(a.positional[0]);
    if (!p) throw UsageError(fmt::format("bench: '{}' is not decode, prefill or overhead", a.positional[0]));
    if (op && *op != *p)
      throw UsageError(fmt::format("bench: {} given, but --op {}", a.positional[0], to_string(*op)));
    op = p;
  }
  if (!op) throw UsageError("bench: say what to time: plx bench decode|prefill|overhead (see plx bench --help)");
  double budget_s = 1;
  if (auto b = a.get("budget-s")) {
    auto [end, ec] = std::from_chars(b->data(), b->data() + b->size(), budget_s);
    if (ec != std::errc() || end != b->data() + b->size() || !(budget_s >= 0.001 && budget_s <= 3600))
      throw UsageError(fmt::format("bench: --budget-s wants seconds in 0.001..3600, got '{}'", *b));
  }
  const int reps = a.get_int("reps", 500, 1, 1000000);
  const int spin_ns = a.get_int("spin-ns", 20000, 0, 10000000);
  std::vector<AttentionArgs> shapes;
  if (auto list = a.get("shapes")) {
    if (!pf.batch.empty() || !pf.kv_len.empty() || pf.heads_q || pf.heads_kv)
      throw UsageError("bench: --shapes replaces --batch, --kv-len, --heads-q and --heads-kv; give one form");
    shapes = shapes_list(*list, pf.expand(*op).front(), *op);
  } else {
    shapes = pf.expand(*op);
  }
  for (const AttentionArgs& s : shapes) {
    try {
      validate(s, /*pointers=*/false);
    } catch (const UnsupportedError& e) {
      throw UsageError(fmt::format("bench: {}", e.what()));
    }
    if (heuristics::choose_op(s.q_len) != *op)
      throw UsageError(fmt::format("bench: q_len {} is a {} call (decode serves q_len <= {})", s.q_len,
                                   to_string(heuristics::choose_op(s.q_len)), heuristics::kMaxDecodeTokens));
  }
  std::optional<Variant> named;
  if (auto v = a.get("variant")) {
    named = parse_variant_name(*v);
    if (!named) throw UsageError(fmt::format("bench: --variant '{}' is not a variant name (see plx gen)", *v));
  }

  std::string why;
  if (!cu::available(&why)) throw Error(fmt::format("bench: no GPU ({}): nothing measured", why));
  cu::Device dev(0);
  dev.make_current();
  const auto root = KernelCache::default_root();
  std::string note;
  const std::optional<Ceilings> ceil = gpu_ceilings(dev, root, &note);
  Engine engine(0, EngineOptions{root, true});
  measure::Harness h(dev);
  measure::AttentionInputs inputs(h);
  if (a.has("csv"))
    fmt::print("op,family,dtype,batch,q_len,kv_len,heads_q,heads_kv,d,causal,window,page,variant,splits,median_us,"
               "p10_us,p90_us,n,GBps,TFLOPs_parallax_8D,TFLOPs_softmax_4D,fraction_of_copy,fraction_of_tc\n");
  else if (!a.has("json"))
    fmt::print("# {}: ceilings {}\n", dev.name(),
               ceil ? fmt::format("copy {:.0f} GB/s, tensor cores {:.0f} TFLOP/s ({}; {})", ceil->copy_GBps,
                                  ceil->tc_tflops, ceil->tc_kernel, note)
                    : "unknown (" + note + ")");
  for (const AttentionArgs& s : shapes) {
    Row r;
    r.a = s;
    r.op = *op;
    if (named) {
      check_fits(*named, s);  // UnsupportedError: names what differs
      r.variant = named->name();
    } else {
      r.variant = engine.variant_for(s);
      r.tuned = r.variant != default_variant(s, dev.arch()).name();
    }
    r.splits = engine.splits_for(s, r.variant);
    inputs.prepare(s);
    engine.prepare(r.variant);
    measure::TimingOptions o;
    o.budget_s = budget_s;
    o.max_reps = reps;
    o.min_reps = std::min(10, reps);
    o.spin_ns = std::uint64_t(spin_ns);
    o.warmup_s = std::min(0.05, o.budget_s / 4);
    const std::string name = r.variant;
    r.s = measure::summarize(
        h.time([&](int rep, void* stream) { engine.attention(inputs.args(rep), name, stream); }, o));
    r.bytes = tune::useful_bytes(s);
    const double pairs = tune::visible_pairs(s);
    r.flops8 = pairs * 8.0 * s.head_dim;
    r.flops4 = pairs * 4.0 * s.head_dim;
    if (a.has("json")) {
      fmt::print("{}\n", row_json(r, ceil).dump());
    } else if (a.has("csv")) {
      const double own = has_probe(s.family) ? r.flops8 : r.flops4;
      fmt::print("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3f},{:.3f},{:.3f},{},{:.1f},{:.2f},{:.2f},{},{}\n",
                 to_string(r.op), to_string(s.family), to_string(s.dtype), s.batch, s.q_len, s.kv_len, s.heads_q,
                 s.heads_kv, s.head_dim, s.causal ? 1 : 0, s.window_left, s.page_size, r.variant, r.splits,
                 r.s.median, r.s.p10, r.s.p90, r.s.n, r.bytes / (r.s.median * 1e3), r.flops8 / (r.s.median * 1e6),
                 r.flops4 / (r.s.median * 1e6),
                 ceil ? fmt::format("{:.4f}", r.bytes / (r.s.median * 1e3) / ceil->copy_GBps) : "",
                 ceil ? fmt::format("{:.4f}", own / (r.s.median * 1e6) / ceil->tc_tflops) : "");
    } else {
      fmt::print("{}\n", row_text(r, ceil));
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace plx::cli
