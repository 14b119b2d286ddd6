#include "autotune/tune_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "autotune/bucket_key.hpp"

namespace plx::tune {

namespace {

json::Value num_or_null(double v, bool present) { return present && std::isfinite(v) ? json::Value(v) : json::Value(); }

double get_d(const json::Value& o, const char* k, double fallback = 0) {
  const json::Value* v = o.find(k);
  return v && v->is_number() ? v->as_double() : fallback;
}
std::int64_t get_i(const json::Value& o, const char* k, std::int64_t fallback = 0) {
  const json::Value* v = o.find(k);
  return v && v->is_number() ? v->as_int() : fallback;
}
std::string get_s(const json::Value& o, const char* k) {
  const json::Value* v = o.find(k);
  return v && v->is_string() ? v->as_string() : std::string();
}
bool get_b(const json::Value& o, const char* k) {
  const json::Value* v = o.find(k);
  return v && v->is_bool() && v->as_bool();
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

Achieved achieved(const Bucket& b, double us, const GpuProfile& g) {
  Achieved a;
  const AttentionArgs args = b.args();
  if (us <= 0) return a;
  if (b.op == Op::decode) {
    a.unit = "TB/s";
    a.value = useful_bytes(args) / (us * 1e6);
    a.fraction = g.hbm_GBps > 0 ? a.value * 1e3 / g.hbm_GBps : 0;
  } else {
    a.unit = "TFLOP/s";
    a.value = (b.op == Op::backward ? useful_backward_flops(args) : useful_flops(args)) / (us * 1e6);
    a.fraction = g.tc_tflops_bf16 > 0 ? a.value / g.tc_tflops_bf16 : 0;
  }
  return a;
}

double geomean_speedup(const std::vector<BucketReport>& buckets) {
  double log_sum = 0;
  int n = 0;
  for (const BucketReport& b : buckets)
    if (b.outcome && b.outcome->speedup() > 0) {
      log_sum += std::log(b.outcome->speedup());
      ++n;
    }
  return n ? std::exp(log_sum / n) : 0;
}

// ---- JSON forms ----------------------------------------------------------------------------

json::Value to_json(const measure::Stats& s) {
  json::Value o = json::Value::object();
  o.set("n", s.n);
  o.set("median_us", s.median);
  o.set("p10_us", s.p10);
  o.set("p90_us", s.p90);
  o.set("mad_us", s.mad);
  o.set("min_us", s.min);
  o.set("max_us", s.max);
  return o;
}

measure::Stats stats_from_json(const json::Value& v) {
  measure::Stats s;
  if (!v.is_object()) return s;
  s.n = int(get_i(v, "n"));
  s.median = get_d(v, "median_us");
  s.p10 = get_d(v, "p10_us");
  s.p90 = get_d(v, "p90_us");
  s.mad = get_d(v, "mad_us");
  s.min = get_d(v, "min_us");
  s.max = get_d(v, "max_us");
  return s;
}

json::Value to_json(const CandidateResult& r) {
  json::Value o = json::Value::object();
  o.set("status", to_string(r.status));
  o.set("error", r.error.empty() ? json::Value() : json::Value(r.error));
  o.set("first", r.first.n ? to_json(r.first) : json::Value());
  o.set("final", r.final.n ? to_json(r.final) : json::Value());
  o.set("finalist", r.finalist);
  o.set("tied", r.tied);
  return o;
}

CandidateResult result_from_json(const json::Value& v) {
  CandidateResult r;
  const std::string st = get_s(v, "status");
  r.status = st == "timed" ? Status::timed : st == "rejected" ? Status::rejected : Status::failed;
  r.error = get_s(v, "error");
  if (const json::Value* f = v.find("first")) r.first = stats_from_json(*f);
  if (const json::Value* f = v.find("final")) r.final = stats_from_json(*f);
  r.finalist = get_b(v, "finalist");
  r.tied = get_b(v, "tied");
  return r;
}

json::Value to_json(const BucketOutcome& o) {
  json::Value j = json::Value::object();
  j.set("winner", o.winner);
  j.set("untuned", o.untuned);
  j.set("runner_up", o.runner_up);
  j.set("winner_us", o.winner_us);
  j.set("untuned_us", o.untuned_us);
  j.set("runner_up_us", o.runner_up_us);
  j.set("noise_us", o.noise_us);
  j.set("error", o.error.empty() ? json::Value() : json::Value(o.error));
  j.set("seconds", o.seconds);
  json::Value rs = json::Value::array();
  for (const CandidateResult& r : o.results) rs.push_back(to_json(r));
  j.set("results", std::move(rs));
  return j;
}

BucketOutcome outcome_from_json(const json::Value& v) {
  BucketOutcome o;
  o.winner = int(get_i(v, "winner", -1));
  o.untuned = int(get_i(v, "untuned", -1));
  o.runner_up = int(get_i(v, "runner_up", -1));
  o.winner_us = get_d(v, "winner_us");
  o.untuned_us = get_d(v, "untuned_us");
  o.runner_up_us = get_d(v, "runner_up_us");
  o.noise_us = get_d(v, "noise_us");
  o.error = get_s(v, "error");
  o.seconds = get_d(v, "seconds");
  if (const json::Value* rs = v.find("results"); rs && rs->is_array())
    for (const json::Value& r : rs->as_array()) o.results.push_back(result_from_json(r));
  return o;
}

json::Value to_json(const Ceilings& c) {
  json::Value o = ceilings_to_json(c);
  o.set("ridge_flop_per_byte", c.ridge());
  return o;
}

Ceilings ceilings_from_json(const json::Value& v) {
  Ceilings c;
  c.copy_GBps = get_d(v, "copy_GBps");
  c.tc_tflops = get_d(v, "tc_tflops");
  c.mma_sync_tflops = get_d(v, "mma_sync_tflops");
  c.wgmma_tflops = get_d(v, "wgmma_tflops");
  c.tc_kernel = get_s(v, "tc_kernel");
  c.measured_at = get_i(v, "measured_at");
  return c;
}

json::Value to_json(const AttentionArgs& a) {
  json::Value o = json::Value::object();
  o.set("family", std::string(to_string(a.family)));
  o.set("dtype", std::string(to_string(a.dtype)));
  o.set("head_dim", a.head_dim);
  o.set("causal", a.causal);
  o.set("window", a.window_left);
  o.set("batch", a.batch);
  o.set("q_len", a.q_len);
  o.set("kv_len", a.kv_len);
  o.set("heads_q", a.heads_q);
  o.set("heads_kv", a.heads_kv);
  o.set("page_size", a.page_size);
  return o;
}

AttentionArgs args_from_json(const json::Value& v) {
  AttentionArgs a;
  if (auto f = parse_family(get_s(v, "family"))) a.family = *f;
  if (auto d = parse_dtype(get_s(v, "dtype"))) a.dtype = *d;
  a.head_dim = int(get_i(v, "head_dim", 128));
  a.causal = get_b(v, "causal");
  a.window_left = int(get_i(v, "window", -1));
  a.batch = int(get_i(v, "batch", 1));
  a.q_len = int(get_i(v, "q_len", 1));
  a.kv_len = int(get_i(v, "kv_len", 1));
  a.heads_q = int(get_i(v, "heads_q", 1));
  a.heads_kv = int(get_i(v, "heads_kv", 1));
  a.page_size = int(get_i(v, "page_size", 0));
  return a;
}

// ---- the report ------------------------------------------------------------------------------

json::Value report_json(const Report& r) {
  json::Value j = json::Value::object();
  j.set("schema", kReportSchema);
  j.set("version", kReportVersion);
  j.set("plx_version", PLX_VERSION);
  json::Value specs = json::Value::array();
  for (const std::string& s : r.specs) specs.push_back(s);
  j.set("specs", std::move(specs));
  j.set("spec", r.specs.empty() ? json::Value() : json::Value(r.specs.front()));
  j.set("gpu", r.gpu.empty() ? json::Value() : json::Value(r.gpu));
  j.set("arch", r.arch);
  j.set("measured", r.measured);
  json::Value prof = json::Value::object();
  prof.set("name", r.profile.name);
  prof.set("hbm_GBps", r.profile.hbm_GBps);
  prof.set("tc_tflops_bf16", r.profile.tc_tflops_bf16);
  prof.set("sm_count", r.profile.sm_count);
  prof.set("source", r.profile.source);
  j.set("profile", std::move(prof));
  j.set("ceilings", r.ceilings ? to_json(*r.ceilings) : json::Value());
  j.set("budget_s", r.budget_s);
  j.set("seconds", r.seconds);

  int tuned = 0, failed = 0, timed = 0;
  json::Value buckets = json::Value::array();
  for (const BucketReport& br : r.buckets) {
    const Bucket& b = br.bucket;
    json::Value o = json::Value::object();
    o.set("key", br.key);
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
    json::Value cands = json::Value::array();
    if (br.outcome) {
      const BucketOutcome& out = *br.outcome;
      auto name_at = [&](int i) {
        return i >= 0 && i < int(br.candidates.size()) ? json::Value(br.candidates[i].name()) : json::Value();
      };
      o.set("winner", name_at(out.winner));
      o.set("winner_us", num_or_null(out.winner_us, out.winner >= 0));
      o.set("noise_us", num_or_null(out.noise_us, out.winner >= 0));
      o.set("untuned", name_at(out.untuned));
      o.set("untuned_us", num_or_null(out.untuned_us, out.untuned_us > 0));
      o.set("speedup", num_or_null(out.speedup(), out.speedup() > 0));
      o.set("runner_up", name_at(out.runner_up));
      o.set("runner_up_us", num_or_null(out.runner_up_us, out.runner_up >= 0));
      o.set("repeat_us", num_or_null(br.repeat_us, br.repeat_us > 0));
      if (r.repeated && br.repeat_us <= 0 && out.winner >= 0) o.set("repeat_error", br.repeat_error);
      if (out.winner >= 0) {
        const Achieved a = achieved(b, out.winner_us, r.profile);
        json::Value ach = json::Value::object();
        ach.set("unit", a.unit);
        ach.set("value", a.value);
        ach.set("fraction_of_ceiling", a.fraction);
        o.set("achieved", std::move(ach));
        ++tuned;
      } else {
        o.set("achieved", json::Value());
      }
      o.set("error", out.error.empty() ? json::Value() : json::Value(out.error));
      o.set("seconds", out.seconds);
      for (std::size_t i = 0; i < br.candidates.size(); ++i) {
        const Candidate& c = br.candidates[i];
        const CandidateResult& res = i < out.results.size() ? out.results[i] : CandidateResult{};
        json::Value x = json::Value::object();
        x.set("variant", c.name());
        x.set("predicted_us", num_or_null(c.p.us, c.model_rank >= 0));
        x.set("bytes", c.p.bytes);
        x.set("flops", c.p.flops);
        x.set("intensity", c.p.intensity);
        x.set("bound", c.p.compute_bound ? "compute" : "memory");
        x.set("splits", c.p.splits);
        x.set("model_rank", c.model_rank);
        x.set("model_choice", c.model_choice);
        x.set("registers", c.registers);
        x.set("spill_bytes", c.spill_bytes);
        x.set("status", to_string(res.status));
        x.set("error", res.error.empty() ? json::Value() : json::Value(res.error));
        x.set("measured_us", num_or_null(res.first.median, res.first.n > 0));
        x.set("p10_us", num_or_null(res.first.p10, res.first.n > 0));
        x.set("p90_us", num_or_null(res.first.p90, res.first.n > 0));
        x.set("n", res.first.n);
        x.set("final_us", num_or_null(res.final.median, res.final.n > 0));
        x.set("final_n", res.final.n);
        x.set("finalist", res.finalist);
        x.set("tied", res.tied);
        timed += res.status == Status::timed;
        failed += res.status != Status::timed;
        cands.push_back(std::move(x));
      }
    } else {
      // Dry run: the model's ranking; its first is what the model would pick.
      o.set("winner", br.ranked.empty() ? json::Value() : json::Value(br.ranked.front().v.name()));
      for (std::size_t i = 0; i < br.ranked.size(); ++i) {
        const auto& [v, p] = br.ranked[i];
        json::Value x = json::Value::object();
        x.set("variant", v.name());
        x.set("predicted_us", p.us);
        x.set("measured_us", json::Value());
        x.set("bytes", p.bytes);
        x.set("flops", p.flops);
        x.set("intensity", p.intensity);
        x.set("bound", p.compute_bound ? "compute" : "memory");
        x.set("splits", p.splits);
        x.set("model_rank", int(i));
        x.set("status", "predicted");
        cands.push_back(std::move(x));
      }
    }
    o.set("candidates", std::move(cands));
    buckets.push_back(std::move(o));
  }
  json::Value sum = json::Value::object();
  sum.set("buckets", int(r.buckets.size()));
  sum.set("tuned", tuned);
  sum.set("candidates_timed", timed);
  sum.set("candidates_failed", failed);
  const double gm = geomean_speedup(r.buckets);
  sum.set("geomean_speedup", num_or_null(gm, gm > 0));
  // plx tune --repeat: how far the winners' times moved when re-timed in a fresh worker.
  if (r.repeated) {
    json::Value rp = json::Value::object();
    rp.set("budget_s", r.repeat_budget_s);
    rp.set("seconds", r.repeat_seconds);
    rp.set("buckets", r.repro ? r.repro->n : 0);
    rp.set("median_rel", r.repro ? json::Value(r.repro->median_rel) : json::Value());
    rp.set("p90_rel", r.repro ? json::Value(r.repro->p90_rel) : json::Value());
    rp.set("max_rel", r.repro ? json::Value(r.repro->max_rel) : json::Value());
    sum.set("repro", std::move(rp));
  } else {
    sum.set("repro", json::Value());
  }
  j.set("summary", std::move(sum));
  j.set("buckets", std::move(buckets));
  return j;
}

// ---- the picture -------------------------------------------------------------------------------

std::string roofline_svg(const Report& r) {
  struct Point {
    double x, y;
    bool decode, winner;
    std::string title;
  };
  std::vector<Point> pts;
  for (const BucketReport& br : r.buckets) {
    if (br.outcome) {
      for (std::size_t i = 0; i < br.candidates.size() && i < br.outcome->results.size(); ++i) {
        const CandidateResult& res = br.outcome->results[i];
        const Candidate& c = br.candidates[i];
        const double us = res.final.n ? res.final.median : res.first.median;
        if (res.status != Status::timed || us <= 0 || c.p.bytes <= 0 || c.p.flops <= 0) continue;
        const double tflops = c.p.flops / (us * 1e6);
        pts.push_back({c.p.intensity, tflops, br.bucket.op == Op::decode, int(i) == br.outcome->winner,
                       fmt::format("{} {}: {:.2f} us, {:.1f} TFLOP/s at {:.1f} FLOP/B", br.key, c.name(), us,
                                   tflops, c.p.intensity)});
      }
    } else {
      for (std::size_t i = 0; i < br.ranked.size(); ++i) {
        const auto& [v, p] = br.ranked[i];
        if (p.us <= 0 || p.bytes <= 0 || p.flops <= 0) continue;
        const double tflops = p.flops / (p.us * 1e6);
        pts.push_back({p.intensity, tflops, br.bucket.op == Op::decode, i == 0,
                       fmt::format("{} {}: predicted {:.2f} us, {:.1f} TFLOP/s at {:.1f} FLOP/B", br.key, v.name(),
                                   p.us, tflops, p.intensity)});
      }
    }
  }
  const double bw_TBps = (r.ceilings ? r.ceilings->copy_GBps : r.profile.hbm_GBps) / 1e3;
  const double peak = r.ceilings ? r.ceilings->tc_tflops : r.profile.tc_tflops_bf16;
  const double ridge = bw_TBps > 0 ? peak / bw_TBps : 1;
  double xmin = ridge / 100, xmax = ridge * 10, ymin = peak / 1000, ymax = peak * 2;
  for (const Point& p : pts) {
    xmin = std::min(xmin, p.x / 2);
    xmax = std::max(xmax, p.x * 2);
    ymin = std::min(ymin, p.y / 2);
    ymax = std::max(ymax, p.y * 2);
  }
  auto decade_floor = [](double v) { return std::pow(10.0, std::floor(std::log10(std::max(v, 1e-9)))); };
  auto decade_ceil = [](double v) { return std::pow(10.0, std::ceil(std::log10(std::max(v, 1e-9)))); };
  xmin = decade_floor(xmin);
  xmax = decade_ceil(xmax);
  ymin = decade_floor(ymin);
  ymax = decade_ceil(ymax);

  const double W = 960, H = 640, L = 80, R = 250, T = 50, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  auto X = [&](double x) { return L + pw * (std::log10(x) - std::log10(xmin)) / (std::log10(xmax) - std::log10(xmin)); };
  auto Y = [&](double y) { return T + ph * (1 - (std::log10(y) - std::log10(ymin)) / (std::log10(ymax) - std::log10(ymin))); };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{}\" height=\"{}\" "
                   "viewBox=\"0 0 {} {}\" font-family=\"sans-serif\" font-size=\"12\">\n",
                   W, H, W, H);
  const std::string what = r.measured ? "measured" : "predicted by the model (no GPU: nothing measured)";
  s += fmt::format("<title>{}</title>\n", xml_escape("parallax-jit roofline: " + what));
  s += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", W, H);
  s += fmt::format("<text x=\"{}\" y=\"24\" font-size=\"15\">{}</text>\n", L,
                   xml_escape(fmt::format("Roofline{}: {} ({} points)", r.gpu.empty() ? "" : " of " + r.gpu, what,
                                          pts.size())));
  // Grid and axes: one line per decade.
  s += "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (double x = xmin; x <= xmax * 1.0001; x *= 10)
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", X(x), T, X(x), T + ph);
  for (double y = ymin; y <= ymax * 1.0001; y *= 10)
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", L, Y(y), L + pw, Y(y));
  s += "</g>\n";
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph);
  s += "<g text-anchor=\"middle\">\n";
  for (double x = xmin; x <= xmax * 1.0001; x *= 10)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{:g}</text>\n", X(x), T + ph + 16, x);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", L + pw / 2, H - 14,
                   "arithmetic intensity, FLOP per byte (the model's count of the work each variant does)");
  s += "</g>\n<g text-anchor=\"end\">\n";
  for (double y = ymin; y <= ymax * 1.0001; y *= 10)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{:g}</text>\n", L - 6, Y(y) + 4, y);
  s += "</g>\n";
  s += fmt::format("<text transform=\"translate(18,{:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n", T + ph / 2,
                   r.measured ? "achieved TFLOP/s (model FLOPs / measured median)" : "predicted TFLOP/s");

  // Roofs: memory up to the ridge, then flat at the tensor-core rate.
  const std::string src = r.ceilings ? "measured: " : fmt::format("profile {} ({}): ", r.profile.name, r.profile.source);
  auto roof = [&](double top, const char* colour, const char* dash, const std::string& label) {
    const double rx = top / bw_TBps;
    const double x0 = std::max(xmin, ymin / bw_TBps);
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{:.1f},{:.1f} {:.1f},{:.1f} "
                     "{:.1f},{:.1f}\"/>\n",
                     colour, dash, X(x0), Y(x0 * bw_TBps), X(rx), Y(top), X(xmax), Y(top));
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" fill=\"{}\">{}</text>\n", X(xmax) - 4,
                     Y(top) - 5, colour, xml_escape(label));
  };
  if (bw_TBps > 0 && peak > 0) {
    roof(peak, "#222222", "",
         fmt::format("{}{:.0f} TFLOP/s{}", src, peak, r.ceilings ? " (" + r.ceilings->tc_kernel + ")" : ""));
    if (r.ceilings && r.ceilings->mma_sync_tflops > 0 && r.ceilings->mma_sync_tflops < peak * 0.97)
      roof(r.ceilings->mma_sync_tflops, "#777777", " stroke-dasharray=\"6,4\"",
           fmt::format("mma.sync: {:.0f} TFLOP/s", r.ceilings->mma_sync_tflops));
    const double lx = std::max(xmin * 1.5, ymin * 3 / bw_TBps);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"#222222\">{}</text>\n", X(lx), Y(lx * bw_TBps) - 8,
                     xml_escape(fmt::format("{}{:.2f} TB/s copy; ridge {:.0f} FLOP/B", src, bw_TBps, ridge)));
  }
  // Points: losers first, winners on top.
  for (int pass = 0; pass < 2; ++pass)
    for (const Point& p : pts) {
      if (p.winner != (pass == 1)) continue;
      const char* colour = p.decode ? "#1f77b4" : "#ff7f0e";
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\" fill-opacity=\"{}\">"
                       "<title>{}</title></circle>\n",
                       X(p.x), Y(p.y), p.winner ? 4.5 : 3, p.winner ? colour : "none", colour,
                       p.winner ? "0.9" : "1", xml_escape(p.title));
    }
  // Legend.
  const double lx = W - R + 20;
  s += fmt::format("<g transform=\"translate({:.0f},{:.0f})\">\n", lx, T + 10);
  s += "<circle cx=\"0\" cy=\"0\" r=\"4.5\" fill=\"#1f77b4\"/><text x=\"12\" y=\"4\">decode, bucket winner</text>\n";
  s += "<circle cx=\"0\" cy=\"20\" r=\"3\" fill=\"none\" stroke=\"#1f77b4\"/><text x=\"12\" y=\"24\">decode, other</text>\n";
  s += "<circle cx=\"0\" cy=\"40\" r=\"4.5\" fill=\"#ff7f0e\"/><text x=\"12\" y=\"44\">prefill, bucket winner</text>\n";
  s += "<circle cx=\"0\" cy=\"60\" r=\"3\" fill=\"none\" stroke=\"#ff7f0e\"/><text x=\"12\" y=\"64\">prefill, other</text>\n";
  s += fmt::format("<text x=\"0\" y=\"92\">{}</text>\n", r.measured ? "one point per timed variant" : "model's first = winner");
  s += "</g>\n</svg>\n";
  return s;
}

}  // namespace plx::tune
