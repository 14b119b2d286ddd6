#include "autotune/tune.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

#include "autotune/choose_variant.hpp"
#include "autotune/oracle_check.hpp"
#include "runtime/launch.hpp"
#include "generator/legality.hpp"
#include "runtime/driver.hpp"
#include "runtime/oracle.hpp"

namespace plx::tune {

std::string Bucket::flags() const {
  std::string mask = causal ? "causal" : "full";
  if (shape.window >= 0) mask += fmt::format(" --window {}", shape.window);
  return fmt::format("--op {} --family {} --dtype {} --head-dim {} --mask {} --batch {} --q-len {} --kv-len {} "
                     "--heads-q {} --heads-kv {}",
                     to_string(op), to_string(family), to_string(dtype), head_dim, mask, shape.batch, shape.q_len,
                     shape.kv_len, shape.heads_q, shape.heads_kv);
}

AttentionArgs Bucket::args() const {
  AttentionArgs a;
  a.family = family;
  a.dtype = dtype;
  a.head_dim = head_dim;
  a.causal = causal;
  a.window_left = shape.window;
  a.batch = shape.batch;
  a.q_len = shape.q_len;
  a.kv_len = shape.kv_len;
  a.heads_q = shape.heads_q;
  a.heads_kv = shape.heads_kv;
  return a;
}

std::vector<Bucket> buckets_for(const KernelSpec& spec, const std::vector<Variant>& variants) {
  struct Shape {
    int batch, q_len, kv_len;
  };
  std::vector<Shape> shapes;
  if (spec.op == Op::decode) {
    // Short, medium and long contexts; one sequence (latency) and 32 (throughput).
    for (int kv : {1024, 8192, 32768})
      for (int batch : {1, 32}) shapes.push_back({batch, 1, kv});
  } else if (spec.op == Op::backward) {
    // Training shapes: causal self-attention, q = kv, one sequence. Three lengths keep the
    // default tune to a few minutes: a 16384 bucket at gqa 8 is ~50 ms a call at d 128.
    for (int len : kBackwardLengths) shapes.push_back({1, len, len});
  } else {
    for (int len : {1024, 8192}) shapes.push_back({1, len, len});
  }
  std::vector<int> widths;
  for (int w : spec.windows)
    if (w >= 1) widths.push_back(w);

  std::vector<Bucket> out;
  std::vector<Variant> classes;  // one representative per (family, dtype, d, causal, window)
  for (const Variant& v : variants) {
    if (v.op != spec.op) continue;
    auto same = [&](const Variant& c) {
      return c.family == v.family && c.dtype == v.dtype && c.head_dim == v.head_dim && c.causal == v.causal &&
             c.window == v.window;
    };
    if (std::any_of(classes.begin(), classes.end(), same)) continue;
    classes.push_back(v);
    const std::vector<int> masks = v.window ? widths : std::vector<int>{-1};
    for (int window : masks)
      for (int g : spec.gqa)
        for (const Shape& s : shapes) {
          Bucket b;
          b.op = v.op;
          b.family = v.family;
          b.dtype = v.dtype;
          b.head_dim = v.head_dim;
          b.causal = v.causal;
          b.gqa = g;
          b.shape = Problem{s.batch, s.q_len, s.kv_len, kHeadsKv * g, kHeadsKv, window};
          out.push_back(b);
        }
  }
  return out;
}

BucketId bucket_id(const Bucket& b) {
  return b.op == Op::backward ? bucket_of_backward(b.args()) : bucket_of(b.args());
}

Variant untuned_variant(const Bucket& b, Arch arch) {
  return b.op == Op::backward ? untuned_backward_variant(b.args(), arch) : default_variant(b.args(), arch);
}

bool serves(const Variant& v, const Bucket& b) {
  return v.op == b.op && v.family == b.family && v.dtype == b.dtype && v.head_dim == b.head_dim &&
         v.causal == b.causal && v.window == (b.shape.window >= 0);
}

std::vector<Ranked> rank(const std::vector<Variant>& variants, const Bucket& b, const GpuProfile& g) {
  std::vector<Ranked> out;
  for (const Variant& v : variants)
    if (serves(v, b) && !why_illegal(v) && fits(v, g)) out.push_back({v, predict(v, b.shape, g)});
  std::stable_sort(out.begin(), out.end(), [](const Ranked& x, const Ranked& y) {
    // Equal predictions (e.g. memory bound, same bytes): the one doing less padded work,
    // then the smaller shared-memory footprint, then the name.
    if (x.p.us != y.p.us) return x.p.us < y.p.us;
    if (x.p.flops != y.p.flops) return x.p.flops < y.p.flops;
    if (smem_bytes(x.v) != smem_bytes(y.v)) return smem_bytes(x.v) < smem_bytes(y.v);
    return x.v.name() < y.v.name();
  });
  return out;
}

// ---- measuring a bucket ------------------------------------------------------------------

std::vector<Candidate> candidates_for(const std::vector<Ranked>& ranked, const Variant& untuned, int top,
                                      const std::function<int(const Variant&)>& registers,
                                      const std::function<int(const Variant&)>& spills) {
  std::vector<Candidate> out;
  bool have_untuned = false;
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    const bool is_untuned = ranked[i].v == untuned;
    if (!is_untuned && int(out.size()) >= top) continue;
    // Resources are asked for only here: in PLX_TUNE=sync asking may mean compiling.
    const int sp = spills ? spills(ranked[i].v) : -1;
    // A spilling variant is listed (as rejected) only when it is the untuned choice.
    if (!is_untuned && sp > 0) continue;
    Candidate c{ranked[i].v, ranked[i].p, int(i), is_untuned, registers ? registers(ranked[i].v) : -1, sp};
    out.push_back(std::move(c));
    have_untuned |= is_untuned;
  }
  if (!have_untuned) {
    Candidate c;
    c.v = untuned;
    c.model_choice = true;
    c.registers = registers ? registers(untuned) : -1;
    c.spill_bytes = spills ? spills(untuned) : -1;
    out.push_back(std::move(c));
  }
  return out;
}

const char* to_string(Status s) {
  switch (s) {
    case Status::timed: return "timed";
    case Status::failed: return "failed";
    case Status::rejected: return "rejected";
  }
  return "?";
}

bool is_sticky(const DriverError& e) {
  switch (e.code) {
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_INVALID_PC:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_ASSERT:
    case CUDA_ERROR_CONTEXT_IS_DESTROYED:
      return true;
    default:
      return false;
  }
}

namespace {

std::string problem_key(const AttentionArgs& p) {
  return fmt::format("{}_{}_d{}_{}_g{}_q{}_kv{}_w{}", to_string(p.family), to_string(p.dtype), p.head_dim,
                     p.causal ? "causal" : "full", p.heads_q / std::max(1, p.heads_kv), p.q_len, p.kv_len,
                     p.window_left);
}

}  // namespace

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::string prepare_error(const std::function<void()>& prepare) {
  try {
    prepare();
  } catch (const DriverError& e) {
    if (is_sticky(e)) throw;
    return first_line(e.what());
  } catch (const Error& e) {
    return first_line(e.what());
  }
  return "";
}

BucketOutcome outcome_for(const std::vector<Candidate>& cands) {
  BucketOutcome out;
  out.results.resize(cands.size());
  for (std::size_t i = 0; i < cands.size(); ++i)
    if (cands[i].model_choice) out.untuned = int(i);
  return out;
}

BucketOutcome tune_bucket(measure::Harness& h, measure::AttentionInputs& inputs, const Bucket& b,
                          const std::vector<Candidate>& cands, const Runner& run, const TuneOptions& o,
                          CheckCache* checks) {
  const auto t0 = std::chrono::steady_clock::now();
  BucketOutcome out = outcome_for(cands);
  const AttentionArgs shape = b.args();
  out.error = prepare_error([&] { inputs.prepare(shape, o.mem_fraction); });
  if (!out.error.empty()) return finish_outcome(std::move(out), t0);
  const AttentionArgs small = check_problem(shape);
  CheckCache local;
  CheckCache& cache = checks ? *checks : local;
  RaceOps ops;
  ops.call_of = [&](const std::string& name) -> measure::Call {
    return [&, name](int rep, void* stream) { run.launch(name, inputs.args(rep), stream); };
  };
  ops.check = [&](const std::string& name) {
    const std::string pkey = problem_key(small), key = name + "|" + pkey;
    auto it = cache.verdicts.find(key);
    if (it == cache.verdicts.end()) {
      auto& oc = cache.cases[pkey];
      if (!oc) oc = std::make_shared<OracleCase>(small);
      const std::string verdict =
          oc->check([&](const AttentionArgs& a, void* stream) { run.launch(name, a, stream); }, h.stream());
      it = cache.verdicts.emplace(key, verdict).first;
    }
    return it->second;
  };
  return race(h, cands, run, o, ops, std::move(out), t0);
}

BucketOutcome finish_outcome(BucketOutcome out, std::chrono::steady_clock::time_point t0) {
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

BucketOutcome race(measure::Harness& h, const std::vector<Candidate>& cands, const Runner& run, const TuneOptions& o,
                   const RaceOps& ops, BucketOutcome out, std::chrono::steady_clock::time_point t0) {
  auto finish = [&] { return finish_outcome(std::move(out), t0); };
  auto report = [&](int i) {
    if (run.on_result) run.on_result(i, out.results[std::size_t(i)]);
  };
  const auto& call_of = ops.call_of;

  // First pass: every candidate alone.
  measure::TimingOptions first;
  first.budget_s = 0.5 * o.budget_s / double(std::max<std::size_t>(1, cands.size()));
  first.warmup_s = std::min(0.005, first.budget_s / 4);
  first.spin_ns = o.spin_ns;
  for (std::size_t i = 0; i < cands.size(); ++i) {
    CandidateResult& r = out.results[i];
    const Candidate& c = cands[i];
    const std::string name = c.name();
    if (c.spill_bytes > 0) {
      r.status = Status::rejected;
      r.error = fmt::format("spills {} bytes to local memory", c.spill_bytes);
      report(int(i));
      continue;
    }
    try {
      if (run.on_begin) run.on_begin(int(i), "check");
      if (run.prepare) run.prepare(name);
      if (o.check) {
        const std::string verdict = ops.check(name);
        if (!verdict.empty()) {
          r.status = Status::failed;
          r.error = verdict;
          report(int(i));
          continue;
        }
      }
      if (run.on_begin) run.on_begin(int(i), "time");
      r.first = measure::summarize(h.time(call_of(name), first));
      r.status = Status::timed;
    } catch (const DriverError& e) {
      r.status = Status::failed;
      r.error = first_line(e.what());
      report(int(i));
      if (is_sticky(e)) throw;
      continue;
    } catch (const std::exception& e) {
      r.status = Status::failed;
      r.error = first_line(e.what());
      report(int(i));
      continue;
    }
    report(int(i));
  }

  // Finalists: the fastest few of the first pass, and the untuned choice.
  std::vector<int> timed;
  for (std::size_t i = 0; i < cands.size(); ++i)
    if (out.results[i].status == Status::timed) timed.push_back(int(i));
  if (timed.empty()) return finish();
  std::stable_sort(timed.begin(), timed.end(),
                   [&](int x, int y) { return out.results[x].first.median < out.results[y].first.median; });
  const double best = out.results[timed[0]].first.median;
  std::vector<int> fin;
  for (int i : timed)
    if (int(fin.size()) < o.finalists && out.results[i].first.median <= best * (1 + o.finalist_within))
      fin.push_back(i);
  if (out.untuned >= 0 && out.results[out.untuned].status == Status::timed &&
      std::find(fin.begin(), fin.end(), out.untuned) == fin.end())
    fin.push_back(out.untuned);
  std::sort(fin.begin(), fin.end());  // candidate order: the same rounds on every run

  measure::TimingOptions final_opts;
  final_opts.budget_s = 0.5 * o.budget_s;
  final_opts.min_reps = 10;
  final_opts.max_reps = 400;
  final_opts.spin_ns = o.spin_ns;
  std::vector<measure::Call> calls;
  for (int i : fin) calls.push_back(call_of(cands[i].name()));
  std::vector<std::vector<double>> samples;
  try {
    if (run.on_begin) run.on_begin(fin.front(), "final");
    samples = h.interleave(calls, final_opts);
  } catch (const DriverError& e) {
    if (is_sticky(e)) throw;
    out.error = "interleaved re-measure failed: " + first_line(e.what());
    return finish();
  } catch (const Error& e) {
    out.error = "interleaved re-measure failed: " + first_line(e.what());
    return finish();
  }
  std::vector<measure::Contender> contenders;
  for (std::size_t k = 0; k < fin.size(); ++k) {
    const Candidate& c = cands[fin[k]];
    contenders.push_back({c.name(), c.model_choice, c.registers, samples[k]});
    out.results[fin[k]].finalist = true;
    out.results[fin[k]].final = measure::summarize(samples[k]);
  }
  const measure::Decision d = measure::decide(contenders);
  for (int k : d.tied) out.results[fin[k]].tied = true;
  out.winner = fin[d.winner];
  out.winner_us = d.median[d.winner];
  out.noise_us = d.noise;
  for (std::size_t k = 0; k < fin.size(); ++k) {
    if (fin[k] == out.untuned) out.untuned_us = d.median[k];
    if (int(k) != d.winner && (out.runner_up < 0 || d.median[k] < out.runner_up_us)) {
      out.runner_up = fin[k];
      out.runner_up_us = d.median[k];
    }
  }
  if (out.runner_up < 0)  // a lone finalist: the next of the first pass
    for (int i : timed)
      if (i != out.winner) {
        out.runner_up = i;
        out.runner_up_us = out.results[i].first.median;
        break;
      }
  return finish();
}

// ---- useful work ----------------------------------------------------------------------

double visible_pairs(const AttentionArgs& a) {
  const oracle::Problem p = oracle::problem_of(a);
  double per_head = 0;
  for (int i = 0; i < a.q_len; ++i) {
    const auto [lo, hi] = oracle::visible_range(p, 0, i);
    per_head += double(hi - lo);
  }
  return per_head * a.batch * a.heads_q;
}

double useful_flops(const AttentionArgs& a) {
  return visible_pairs(a) * roofline::flops_per_pair(a.family, a.head_dim);
}

double useful_backward_flops(const AttentionArgs& a) {
  return visible_pairs(a) * roofline::backward_flops_per_pair(a.family, a.head_dim);
}

double useful_bytes(const AttentionArgs& a) {
  const oracle::Problem p = oracle::problem_of(a);
  // The keys any query row sees: one range per sequence (rows are end-aligned).
  int lo = a.kv_len, hi = 0;
  for (int i = 0; i < a.q_len; ++i) {
    const auto [l, h] = oracle::visible_range(p, 0, i);
    if (l < h) {
      lo = std::min(lo, l);
      hi = std::max(hi, h);
    }
  }
  const double span = hi > lo ? hi - lo : 0;
  const double e = 2, d = a.head_dim;
  const double kv = double(a.batch) * a.heads_kv * span * d * e * 2;
  const double q = double(a.batch) * a.q_len * a.heads_q * d * e;
  return kv + q * (has_probe(a.family) ? 3 : 2);
}

}  // namespace plx::tune
