#include "autotune/db_compare.hpp"

#include <fmt/format.h>

#include "autotune/measure.hpp"

namespace plx {

const char* to_string(Agreement a) {
  switch (a) {
    case Agreement::same_winner: return "same";
    case Agreement::tied: return "tied";
    case Agreement::disagree: return "disagree";
  }
  return "?";
}

std::string DbComparison::summary() const {
  return fmt::format("agree {}/{} buckets (same winner {}, tied {}), disagree {}", agree(), both.size(), same, tied,
                     disagree);
}

DbComparison compare_dbs(const DbFile& a, const DbFile& b) {
  DbComparison c;
  c.repro_a = a.repro;
  c.repro_b = b.repro;
  const double ra = a.repro ? a.repro->rel : 0, rb = b.repro ? b.repro->rel : 0;
  for (const auto& [key, ea] : a.entries) {  // std::map: sorted by key
    auto it = b.entries.find(key);
    if (it == b.entries.end()) {
      c.only_a.push_back(key);
      continue;
    }
    const DbEntry& eb = it->second;
    BucketComparison x;
    x.bucket = key;
    x.a = ea;
    x.b = eb;
    // One rule (measure::compare_runs), asked twice: with the runs' reproducibility, and
    // without it (zero adds no term) to count what the between-run term changed.
    const measure::Paired p = measure::compare_runs({ea.winner_us, ea.noise_us, ra}, {eb.winner_us, eb.noise_us, rb});
    const measure::Paired w = measure::compare_runs({ea.winner_us, ea.noise_us, 0}, {eb.winner_us, eb.noise_us, 0});
    const bool same = ea.winner == eb.winner;
    auto verdict = [&](bool tied) {
      return same ? Agreement::same_winner : tied ? Agreement::tied : Agreement::disagree;
    };
    x.diff_us = p.diff;
    x.noise_us = p.noise;
    x.noise_by = p.by;
    x.beyond_noise = !p.tied;
    x.verdict = verdict(p.tied);
    x.verdict_within_run = verdict(w.tied);
    x.beyond_within_run_noise = !w.tied;
    x.swapped = ea.winner != eb.winner && ea.runner_up == eb.winner && eb.runner_up == ea.winner;
    switch (x.verdict) {
      case Agreement::same_winner:
        ++c.same;
        c.same_beyond_noise += x.beyond_noise;
        c.same_within_by_repro += x.beyond_within_run_noise && !x.beyond_noise;
        break;
      case Agreement::tied:
        ++c.tied;
        c.tied_by_repro += x.verdict_within_run == Agreement::disagree;
        break;
      case Agreement::disagree:
        ++c.disagree;
        break;
    }
    c.both.push_back(std::move(x));
  }
  for (const auto& [key, eb] : b.entries)
    if (!a.entries.count(key)) c.only_b.push_back(key);
  return c;
}

namespace {
void side(const DbEntry& e, json::Value& o, const char* s) {
  o.set(fmt::format("winner_{}", s), e.winner);
  o.set(fmt::format("winner_us_{}", s), e.winner_us);
  o.set(fmt::format("noise_us_{}", s), e.noise_us);
  o.set(fmt::format("repeat_us_{}", s), e.repeat_us > 0 ? json::Value(e.repeat_us) : json::Value());
  o.set(fmt::format("runner_up_{}", s), e.runner_up.empty() ? json::Value() : json::Value(e.runner_up));
  o.set(fmt::format("runner_up_us_{}", s), e.runner_up.empty() ? json::Value() : json::Value(e.runner_up_us));
}
}  // namespace

json::Value to_json(const DbComparison& c) {
  json::Value r = json::Value::object();
  r.set("agree", c.agree());
  r.set("compared", int(c.both.size()));
  r.set("same", c.same);
  r.set("tied", c.tied);
  r.set("disagree", c.disagree);
  r.set("same_beyond_noise", c.same_beyond_noise);
  r.set("repro_rel_a", c.repro_a ? json::Value(c.repro_a->rel) : json::Value());
  r.set("repro_rel_b", c.repro_b ? json::Value(c.repro_b->rel) : json::Value());
  r.set("tied_by_repro", c.tied_by_repro);
  r.set("same_within_by_repro", c.same_within_by_repro);
  r.set("all_agree", c.all_agree());
  json::Value oa = json::Value::array(), ob = json::Value::array();
  for (const std::string& k : c.only_a) oa.push_back(k);
  for (const std::string& k : c.only_b) ob.push_back(k);
  r.set("only_a", std::move(oa));
  r.set("only_b", std::move(ob));
  json::Value bs = json::Value::array();
  for (const BucketComparison& x : c.both) {
    json::Value o = json::Value::object();
    o.set("bucket", x.bucket);
    o.set("verdict", to_string(x.verdict));
    side(x.a, o, "a");
    side(x.b, o, "b");
    o.set("diff_us", x.diff_us);
    o.set("noise_us", x.noise_us);
    o.set("noise_by", measure::to_string(x.noise_by));
    o.set("verdict_within_run", to_string(x.verdict_within_run));
    o.set("beyond_noise", x.beyond_noise);
    o.set("swapped", x.swapped);
    bs.push_back(std::move(o));
  }
  r.set("buckets", std::move(bs));
  return r;
}

}  // namespace plx
