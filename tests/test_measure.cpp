// The timing harness's pure half (statistics, paired noise, the winner rule, input
// rotation, useful work), the ceilings' kernels compiling for both arches, and the tuner's
// candidate list -- all without a GPU. The [gpu] cases time real launches.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "common/json.hpp"

#include "autotune/bucket_key.hpp"
#include "autotune/ceilings.hpp"
#include "autotune/heuristics.hpp"
#include "autotune/measure.hpp"
#include "autotune/oracle_check.hpp"
#include "autotune/tune.hpp"
#include "autotune/tune_report.hpp"
#include "autotune/tune_workers.hpp"
#include "autotune/tuning_db.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"
#include "common/fs_atomic.hpp"
#include "runtime/launch.hpp"
#include "xml_check.hpp"

using namespace plx;
using namespace plx::measure;

TEST_CASE("quantile and summarize: the worked examples", "[measure]") {
  CHECK(quantile({1, 2, 3, 4}, 0.5) == Approx(2.5));
  CHECK(quantile({1, 2, 3, 4}, 0.1) == Approx(1.3));
  CHECK(quantile({7}, 0.9) == 7);
  CHECK_THROWS_AS(quantile({}, 0.5), Error);
  const Stats s = summarize({5, 1, 4, 2, 3});
  CHECK(s.n == 5);
  CHECK(s.median == 3);
  CHECK(s.p10 == Approx(1.4));
  CHECK(s.p90 == Approx(4.6));
  CHECK(s.mad == 1);
  CHECK(s.min == 1);
  CHECK(s.max == 5);
  CHECK(s.rel_spread() == Approx(3.2 / 3));
  CHECK_THROWS_AS(summarize({}), Error);
  // One outlier moves neither the median nor the MAD much: why they, not mean/stddev.
  const Stats o = summarize({10, 10.1, 9.9, 10, 10.05, 9.95, 500});
  CHECK(o.median == 10);
  CHECK(o.mad == Approx(0.05));
}

TEST_CASE("compare_paired: the floor, real differences, and paired noise", "[measure]") {
  const std::vector<double> a(20, 10.0);
  std::vector<double> b(20, 10.05);
  Paired p = compare_paired(a, b);
  CHECK(p.diff == Approx(0.05));
  CHECK(p.noise == Approx(0.1));  // 1% of 10: the floor
  CHECK(p.tied);
  b.assign(20, 11.0);
  p = compare_paired(a, b);
  CHECK(p.diff == Approx(1.0));
  CHECK(!p.tied);
  // Common-mode drift (both slow in the same rounds) cancels in the pairs.
  std::vector<double> x, y;
  for (int i = 0; i < 40; ++i) {
    const double drift = (i % 5) * 0.5;  // +-10% between rounds
    x.push_back(10 + drift);
    y.push_back(10.3 + drift);  // 3% slower every round
  }
  p = compare_paired(x, y);
  CHECK(p.diff == Approx(0.3));
  CHECK(!p.tied);
  // Independent noise larger than the difference: tied.
  std::mt19937 rng(3);
  std::normal_distribution<double> nd(0, 1.0);
  x.clear();
  y.clear();
  for (int i = 0; i < 30; ++i) {
    x.push_back(10 + nd(rng));
    y.push_back(10.1 + nd(rng));
  }
  p = compare_paired(x, y);
  CHECK(p.noise > 0.2);
  CHECK(p.tied);
  CHECK_THROWS_AS(compare_paired({1, 2}, {1}), Error);
  CHECK_THROWS_AS(compare_paired({}, {}), Error);
}

TEST_CASE("compare_runs: the tuner's noise across two runs, never below the floor", "[measure]") {
  // The worked examples of measure.hpp.
  Paired p = compare_runs(10, 0.1, 10.08, 0.12);
  CHECK(p.diff == Approx(0.08));
  CHECK(p.noise == Approx(0.12));  // the larger recorded noise
  CHECK(p.tied);
  p = compare_runs(10, 0, 10.5, 0);
  CHECK(p.noise == Approx(0.1));  // unknown noise: the floor of the faster
  CHECK(!p.tied);
  // Two-sided: which run was faster does not matter.
  CHECK(compare_runs(10.5, 0, 10, 0).diff == Approx(-0.5));
  CHECK(!compare_runs(10.5, 0, 10, 0).tied);
  CHECK(compare_runs(10.2, 0.3, 10, 0.1).tied);
  CHECK(compare_runs(10, 0.1, 10.2, 0.3).tied);
  // Exactly at the noise is tied, as in compare_paired (diff <= noise).
  CHECK(compare_runs(10, 0.25, 10.25, 0).tied);
  CHECK(!compare_runs(10, 0.25, 10.2501, 0).tied);
  // The floor scales with the faster median and follows floor_rel.
  CHECK(compare_runs(100, 0, 100.9, 0).tied);
  CHECK(!compare_runs(100, 0, 101.1, 0).tied);
  CHECK(!compare_runs(100, 0, 100.9, 0, 0.005).tied);
  // A recorded noise from compare_paired (which holds the floor already) carries over.
  const std::vector<double> a(20, 10.0), b(20, 10.05);
  const Paired within = compare_paired(a, b);
  CHECK(compare_runs(10.0, within.noise, 10.0 + within.noise, 0).tied);
  CHECK(!compare_runs(10.0, within.noise, 10.0 + 2 * within.noise, 0).tied);
}

TEST_CASE("compare_runs with reproducibility: the between-run term, and which term decided", "[measure][repro]") {
  // The worked example of measure.hpp: 3% apart, 1% noise; run A's repro_rel 5%.
  Paired p = compare_runs(RunTime{10, 0.1, 0.05}, RunTime{10.3, 0.1, 0});
  CHECK(p.noise == Approx(0.5));
  CHECK(p.by == NoiseTerm::repro_a);
  CHECK(p.tied);
  // Without it: the within-run rule as before (the floor ties with the recorded noises
  // and, as the first term, is named).
  p = compare_runs(RunTime{10, 0.1, 0}, RunTime{10.3, 0.1, 0});
  CHECK(p.noise == Approx(0.1));
  CHECK(p.by == NoiseTerm::floor);
  CHECK(!p.tied);
  CHECK(compare_runs(10, 0.1, 10.3, 0.1).tied == p.tied);  // the old signature is this rule
  // The term scales with the faster time and comes from either side; the larger decides.
  p = compare_runs(RunTime{20, 0, 0.01}, RunTime{10, 0, 0.03});
  CHECK(p.noise == Approx(0.3));
  CHECK(p.by == NoiseTerm::repro_b);
  CHECK(!p.tied);  // 10 apart
  p = compare_runs(RunTime{10, 0.4, 0.02}, RunTime{10.3, 0.1, 0});
  CHECK(p.by == NoiseTerm::noise_a);  // 0.4 > 0.2 (repro) > 0.1
  CHECK(p.tied);
  CHECK(compare_runs(RunTime{10, 0, 0}, RunTime{10.3, 0.5, 0}).by == NoiseTerm::noise_b);
  // compare_paired names its terms too.
  CHECK(compare_paired({10, 10, 10, 10}, {10.05, 10.05, 10.05, 10.05}).by == NoiseTerm::floor);
  CHECK(compare_paired({10, 10, 10, 10, 10, 10}, {10, 14, 10, 14, 10, 14}).by == NoiseTerm::paired);
  CHECK(std::string(to_string(NoiseTerm::repro_b)) == "repro_b");
}

TEST_CASE("reproducibility: median and p90 of the relative moves; nothing measured, nothing", "[measure][repro]") {
  // The worked example of measure.hpp.
  auto r = reproducibility({{10, 10.1}, {10, 9.8}, {20, 21}, {5, 0}});
  REQUIRE(r);
  CHECK(r->n == 3);
  CHECK(r->median_rel == Approx(0.02));
  CHECK(r->p90_rel == Approx(0.044));
  CHECK(r->max_rel == Approx(0.05));
  // Direction does not matter; order does not matter.
  auto s = reproducibility({{20, 19}, {10, 9.9}, {10, 10.2}});
  REQUIRE(s);
  CHECK(s->median_rel == Approx(r->median_rel));
  CHECK(s->p90_rel == Approx(r->p90_rel));
  // One pair: every statistic is its move.
  r = reproducibility({{8, 8.4}});
  REQUIRE(r);
  CHECK(r->n == 1);
  CHECK(r->median_rel == Approx(0.05));
  CHECK(r->p90_rel == Approx(0.05));
  // No usable pair: no statistic (not a 0 that would claim perfect reproduction).
  CHECK(!reproducibility({}));
  CHECK(!reproducibility({{0, 10}, {10, 0}, {-1, 5}}));
}

TEST_CASE("tie order: the model's choice, then fewer registers, then the name", "[measure]") {
  Contender m{"zeta", true, 200, {}}, r96{"beta", false, 96, {}}, r64{"gamma", false, 64, {}},
      r64b{"alpha", false, 64, {}}, unk{"aaa", false, -1, {}};
  CHECK(tie_before(m, r64));
  CHECK(!tie_before(r64, m));
  CHECK(tie_before(r64, r96));
  CHECK(tie_before(r64b, r64));
  CHECK(tie_before(r96, unk));  // a known register count sorts before an unknown one
  CHECK(!tie_before(unk, r96));
  CHECK(!tie_before(m, m));
}

namespace {
std::vector<double> around(double v, int n, double jitter, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-jitter, jitter);
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(v + u(rng));
  return out;
}
}  // namespace

TEST_CASE("decide: a clear winner; ties go to the model's choice, registers, name", "[measure]") {
  SECTION("clear winner") {
    std::vector<Contender> c{{"a", true, 64, around(12, 50, 0.05, 1)},
                             {"b", false, 80, around(10, 50, 0.05, 2)},
                             {"c", false, 64, around(11, 50, 0.05, 3)}};
    const Decision d = decide(c);
    CHECK(d.fastest == 1);
    CHECK(d.winner == 1);
    CHECK(d.tied == std::vector<int>{1});
    CHECK(d.median[1] == Approx(10).epsilon(0.01));
    CHECK(d.noise > 0);
  }
  SECTION("within noise: the model's choice wins although it is not the fastest") {
    std::vector<Contender> c{{"fast", false, 64, around(10.0, 50, 0.02, 1)},
                             {"model", true, 128, around(10.04, 50, 0.02, 2)}};
    const Decision d = decide(c);
    CHECK(d.fastest == 0);
    CHECK(d.winner == 1);
    CHECK(d.tied.size() == 2);
    CHECK(d.noise == Approx(0.1).epsilon(0.05));  // the 1% floor of 10 us
  }
  SECTION("within noise, no model's choice: fewer registers, then the name") {
    std::vector<Contender> c{{"b", false, 96, around(10.0, 50, 0.02, 1)},
                             {"z", false, 64, around(10.03, 50, 0.02, 2)},
                             {"a", false, 64, around(10.05, 50, 0.02, 3)}};
    const Decision d = decide(c);
    CHECK(d.winner == 2);  // 64 registers, and "a" < "z"
    CHECK(d.tied.size() == 3);
  }
  SECTION("the same samples in another order give the same winner") {
    std::vector<Contender> c{{"b", false, 96, around(10.0, 50, 0.02, 1)},
                             {"z", false, 64, around(10.03, 50, 0.02, 2)},
                             {"a", false, 64, around(10.05, 50, 0.02, 3)}};
    std::vector<Contender> r(c.rbegin(), c.rend());
    CHECK(c[std::size_t(decide(c).winner)].name == r[std::size_t(decide(r).winner)].name);
  }
  SECTION("failed contenders take no part; none measured -> no winner") {
    std::vector<Contender> c{{"dead", true, 32, {}}, {"ok", false, 64, around(5, 10, 0.01, 1)}};
    const Decision d = decide(c);
    CHECK(d.winner == 1);
    CHECK(d.median[0] == 0);
    std::vector<Contender> none{{"x", false, 1, {}}};
    CHECK(decide(none).winner == -1);
  }
}

TEST_CASE("rotation_for: enough sets to evict the L2 twice, else a flush", "[measure]") {
  const std::size_t l2 = 60u << 20, big = std::size_t(1) << 40;
  CHECK(rotation_for(2u << 20, l2, big).sets == 61);
  CHECK(!rotation_for(2u << 20, l2, big).flush);
  CHECK(rotation_for(std::size_t(4) << 30, l2, big).sets == 2);
  const Rotation tiny = rotation_for(1024, l2, big);
  CHECK(tiny.sets == 64);
  CHECK(tiny.flush);
  // Memory-limited: as many as fit, and a flush.
  const Rotation lim = rotation_for(std::size_t(4) << 30, l2, std::size_t(5) << 30);
  CHECK(lim.sets == 1);
  CHECK(lim.flush);
}

TEST_CASE("input bytes and useful work of a call", "[measure]") {
  AttentionArgs a;
  a.family = Family::parallax;
  a.batch = 1;
  a.q_len = 1;
  a.kv_len = 32768;
  a.heads_q = 32;
  a.heads_kv = 8;
  a.head_dim = 128;
  // K + V: 8 x 32768 x 128 x 2 B x 2 = 134217728; q, r, o: 3 x 32 x 128 x 2 = 24576
  CHECK(input_bytes(a) == 134217728u + 24576u);
  CHECK(tune::useful_bytes(a) == 134217728.0 + 24576.0);
  CHECK(tune::visible_pairs(a) == 32.0 * 32768);
  CHECK(tune::useful_flops(a) == 32.0 * 32768 * 1024);
  a.family = Family::softmax;
  CHECK(input_bytes(a) == 134217728u + 16384u);
  a.page_size = 64;  // 512 pages per sequence, 2 KiB of table
  CHECK(input_bytes(a) == 134217728u + 16384u + 2048u);
  // Causal prefill, q = kv = 4: 1 + 2 + 3 + 4 = 10 pairs per head.
  AttentionArgs p;
  p.q_len = p.kv_len = 4;
  p.heads_q = 2;
  p.heads_kv = 1;
  p.head_dim = 64;
  CHECK(tune::visible_pairs(p) == 20);
  p.window_left = 2;  // 1 + 2 + 2 + 2
  CHECK(tune::visible_pairs(p) == 14);
  p.window_left = -1;
  p.causal = false;
  CHECK(tune::visible_pairs(p) == 32);
}

TEST_CASE("the oracle check's small problem keeps the bucket's kernel class", "[measure]") {
  AttentionArgs b;
  b.family = Family::parallax_uncentered;
  b.dtype = DType::fp16;
  b.head_dim = 64;
  b.batch = 32;
  b.q_len = 4;
  b.kv_len = 32768;
  b.heads_q = 64;
  b.heads_kv = 8;
  b.window_left = 256;
  const AttentionArgs s = tune::check_problem(b);
  CHECK(s.family == b.family);
  CHECK(s.dtype == b.dtype);
  CHECK(s.head_dim == 64);
  CHECK(s.q_len == 4);
  CHECK(s.heads_q / s.heads_kv == 8);
  CHECK(s.window_left == 77);
  CHECK(s.kv_len % 64 != 0);
  const auto live = tune::check_live_lengths(s);
  REQUIRE(live.size() == std::size_t(s.batch));
  CHECK(live[0] != live[1]);
  b.q_len = b.kv_len = 8192;
  b.window_left = -1;
  const AttentionArgs pf = tune::check_problem(b);
  CHECK(heuristics::choose_op(pf.q_len) == Op::prefill);
  CHECK(pf.window_left == -1);
  CHECK_NOTHROW(validate(pf, false));
  CHECK_NOTHROW(validate(s, false));
}

TEST_CASE("candidates: the model's top K without spills, plus the untuned choice", "[measure][tune]") {
  auto v = [](int block_m, int stages) {
    Variant x;
    x.op = Op::decode;
    x.head_dim = 64;
    x.tile = Tile{block_m, 64, 4, stages, 0};
    return x;
  };
  std::vector<tune::Ranked> ranked;
  for (int s : {2, 3, 4})
    for (int m : {8, 16}) ranked.push_back({v(m, s), Prediction{}});
  auto regs = [](const Variant& x) { return x.tile.block_m * 4 + x.tile.stages; };
  auto spills = [](const Variant& x) { return x.tile.block_m == 16 && x.tile.stages == 2 ? 8 : 0; };
  // Untuned m8 s4 ranks 5th: appended after the first 2 non-spilling ones.
  auto c = tune::candidates_for(ranked, v(8, 4), 2, regs, spills);
  REQUIRE(c.size() == 3);
  CHECK(c[0].v == v(8, 2));
  CHECK(c[1].v == v(8, 3));  // m16 s2 spills: skipped
  CHECK(c[2].v == v(8, 4));
  CHECK(c[2].model_choice);
  CHECK(c[2].model_rank == 4);
  CHECK(c[0].registers == 34);
  // Untuned among the top: not duplicated.
  c = tune::candidates_for(ranked, v(8, 2), 2, regs, spills);
  CHECK(c.size() == 2);
  CHECK(c[0].model_choice);
  // Untuned not ranked at all (not in the spec): appended, rank -1.
  c = tune::candidates_for(ranked, v(16, 9), 1, regs, spills);
  REQUIRE(c.size() == 2);
  CHECK(c[1].model_rank == -1);
  CHECK(c[1].model_choice);
}

TEST_CASE("ceilings: ridge point, profile override, and the MMA kernels compile", "[measure][ceilings]") {
  Ceilings c;
  CHECK(!c.valid());
  CHECK(with_ceilings(profile("h200"), c).hbm_GBps == 4280.0);
  c.copy_GBps = 4280;
  c.tc_tflops = 754;
  CHECK(c.valid());
  CHECK(c.ridge() == Approx(176.17).epsilon(1e-3));
  const GpuProfile g = with_ceilings(profile("h200"), c);
  CHECK(g.name == "h200 (measured)");
  CHECK(g.sm_count == 132);
  CHECK(ceilings_detail::mma_sync_flops(264, 10) == 264.0 * 10 * 8 * 8 * 4096);
  CHECK(ceilings_detail::wgmma_flops(264, 10) == 264.0 * 10 * 2 * 4 * 262144);

  for (const char* arch : {"sm_80", "sm_90a"}) {
    INFO(arch);
    CompileRequest req;
    req.source = ceilings_detail::mma_source(arch);
    req.arch = arch;
    req.name_expression = "plx_mma_sync";
    req.display_name = "plx_ceilings";
    const CompiledKernel k = compile(req);
    CHECK(!k.cubin.empty());
    CHECK(k.spill_bytes == 0);
    CHECK((req.source.find("wgmma") != std::string::npos) == (std::string(arch) == "sm_90a"));
  }
}

namespace {

// One measured decode bucket with three candidates: the model's first (timed, finalist,
// tied), the untuned choice (timed, slower) and a failed one, as a worker reports them.
tune::Report measured_report() {
  tune::Report r;
  r.specs = {"specs/small.yaml"};
  r.gpu = "NVIDIA H200";
  r.arch = "sm_90a";
  r.measured = true;
  r.profile = profile("h200");
  Ceilings c;
  c.copy_GBps = 4100;
  c.tc_tflops = 640;
  c.mma_sync_tflops = 480;
  c.wgmma_tflops = 640;
  c.tc_kernel = "wgmma m64n128k16 bf16 (smem operands)";
  r.ceilings = c;
  r.profile = with_ceilings(r.profile, c);
  tune::BucketReport br;
  br.bucket.op = Op::decode;
  br.bucket.head_dim = 128;
  br.bucket.gqa = 4;
  br.bucket.shape = Problem{1, 1, 32768, 32, 8, -1};
  br.key = tune::bucket_of(br.bucket.args()).key();
  for (int stages : {3, 2, 4}) {
    Variant v;
    v.tile = Tile{8, 64, 4, stages, 0};
    tune::Candidate cand;
    cand.v = v;
    cand.p = predict(v, br.bucket.shape, r.profile);
    cand.model_rank = int(br.candidates.size());
    cand.model_choice = stages == 2;
    cand.registers = 100 + stages;
    cand.spill_bytes = 0;
    br.candidates.push_back(cand);
  }
  tune::BucketOutcome o;
  o.results.resize(3);
  o.results[0].status = tune::Status::timed;
  o.results[0].first = summarize({33, 34, 35});
  o.results[0].final = summarize({33.5, 33.6, 33.4});
  o.results[0].finalist = o.results[0].tied = true;
  o.results[1].status = tune::Status::timed;
  o.results[1].first = summarize({40, 41, 42});
  o.results[1].final = summarize({40, 40.2, 40.1});
  o.results[1].finalist = true;
  o.results[2].status = tune::Status::failed;
  o.results[2].error = "wrong result: relative error 0.5 > 1e-02 <&>";
  o.winner = 0;
  o.untuned = 1;
  o.runner_up = 1;
  o.winner_us = 33.5;
  o.untuned_us = o.runner_up_us = 40.1;
  o.noise_us = 0.34;
  o.seconds = 0.6;
  br.outcome = o;
  r.buckets.push_back(br);
  return r;
}

}  // namespace

TEST_CASE("tune report JSON: schema, winner, speedup, achieved rate, failures", "[measure][report]") {
  const tune::Report r = measured_report();
  const json::Value j = json::parse(tune::report_json(r).dump(2));  // it also parses back
  CHECK(j.at("schema").as_string() == tune::kReportSchema);
  CHECK(j.at("version").as_int() == tune::kReportVersion);
  CHECK(j.at("measured").as_bool());
  CHECK(j.at("gpu").as_string() == "NVIDIA H200");
  CHECK(j.at("ceilings").at("tc_tflops").as_double() == 640);
  CHECK(j.at("ceilings").at("ridge_flop_per_byte").as_double() == Approx(640e3 / 4100));
  CHECK(j.at("profile").at("name").as_string() == "h200 (measured)");
  const json::Value& sum = j.at("summary");
  CHECK(sum.at("buckets").as_int() == 1);
  CHECK(sum.at("tuned").as_int() == 1);
  CHECK(sum.at("candidates_timed").as_int() == 2);
  CHECK(sum.at("candidates_failed").as_int() == 1);
  CHECK(sum.at("geomean_speedup").as_double() == Approx(40.1 / 33.5));
  const json::Value& b = j.at("buckets").as_array().at(0);
  for (const char* k : {"key", "flags", "op", "family", "dtype", "head_dim", "causal", "window", "gqa", "batch",
                        "q_len", "kv_len", "heads_q", "heads_kv", "winner", "winner_us", "noise_us", "untuned",
                        "untuned_us", "speedup", "runner_up", "runner_up_us", "achieved", "error", "candidates"}) {
    INFO(k);
    CHECK(b.find(k) != nullptr);
  }
  CHECK(b.at("key").as_string() == "decode_parallax_bf16_d128_causal_bh8_kv32768_g4_q1");
  CHECK(b.at("winner").as_string() == r.buckets[0].candidates[0].name());
  CHECK(b.at("untuned").as_string() == r.buckets[0].candidates[1].name());
  CHECK(b.at("speedup").as_double() == Approx(40.1 / 33.5));
  // K+V 134217728 + q, r, o 24576 bytes in 33.5 us = 4.007 TB/s, of 4.1 measured.
  CHECK(b.at("achieved").at("unit").as_string() == "TB/s");
  CHECK(b.at("achieved").at("value").as_double() == Approx(134242304.0 / 33.5e6));
  CHECK(b.at("achieved").at("fraction_of_ceiling").as_double() == Approx(134242304.0 / 33.5e6 / 4.1));
  const json::Array& cands = b.at("candidates").as_array();
  REQUIRE(cands.size() == 3);
  CHECK(cands[0].at("status").as_string() == "timed");
  CHECK(cands[0].at("tied").as_bool());
  CHECK(cands[0].at("final_us").as_double() == Approx(33.5));
  CHECK(cands[1].at("model_choice").as_bool());
  CHECK(cands[2].at("status").as_string() == "failed");
  CHECK(cands[2].at("error").as_string().find("wrong result") == 0);
  CHECK(cands[2].at("measured_us").is_null());
}

TEST_CASE("worker protocol: outcomes and ceilings survive their JSON form", "[measure][report]") {
  const tune::Report r = measured_report();
  const tune::BucketOutcome& o = *r.buckets[0].outcome;
  const tune::BucketOutcome back = tune::outcome_from_json(json::parse(tune::to_json(o).dump()));
  CHECK(back.winner == o.winner);
  CHECK(back.untuned == o.untuned);
  CHECK(back.runner_up == o.runner_up);
  CHECK(back.winner_us == o.winner_us);
  CHECK(back.noise_us == o.noise_us);
  REQUIRE(back.results.size() == 3);
  CHECK(back.results[0].first.median == o.results[0].first.median);
  CHECK(back.results[0].final.n == 3);
  CHECK(back.results[0].tied);
  CHECK(back.results[2].status == tune::Status::failed);
  CHECK(back.results[2].error == o.results[2].error);
  CHECK(tune::ceilings_from_json(tune::to_json(*r.ceilings)) == *r.ceilings);
  AttentionArgs a;
  a.family = Family::softmax;
  a.dtype = DType::fp16;
  a.head_dim = 64;
  a.window_left = 256;
  a.batch = 3;
  a.q_len = 2;
  a.kv_len = 999;
  a.heads_q = 16;
  a.heads_kv = 4;
  a.page_size = 32;
  const AttentionArgs b = tune::args_from_json(json::parse(tune::to_json(a).dump()));
  CHECK(b.family == a.family);
  CHECK(b.dtype == a.dtype);
  CHECK(b.window_left == 256);
  CHECK(b.kv_len == 999);
  CHECK(b.page_size == 32);
}

TEST_CASE("the XML check catches what it should", "[measure][report]") {
  using plx::testing::xml_problem;
  CHECK(xml_problem("<svg a=\"1\"><g><text>x &amp; y</text></g></svg>") == "");
  CHECK(xml_problem("<svg><g></svg>") != "");
  CHECK(xml_problem("<svg a=1></svg>") != "");
  CHECK(xml_problem("<svg>a & b</svg>") != "");
  CHECK(xml_problem("<svg/><svg/>") != "");
  CHECK(xml_problem("<svg><text a=\"<\"/></svg>") != "");
}

TEST_CASE("roofline SVG: well-formed, every timed variant a point, the measured roofs", "[measure][report]") {
  const tune::Report r = measured_report();
  const std::string svg = tune::roofline_svg(r);
  INFO(svg.substr(0, 400));
  CHECK(plx::testing::xml_problem(svg) == "");
  CHECK(svg.rfind("<?xml", 0) == 0);
  std::size_t circles = 0;
  for (std::size_t p = svg.find("<circle cx=\""); p != std::string::npos; p = svg.find("<circle cx=\"", p + 1))
    ++circles;
  CHECK(circles == 2 + 4);  // the two timed candidates, plus the legend's four
  CHECK(svg.find("measured: 640 TFLOP/s (wgmma") != std::string::npos);
  CHECK(svg.find("mma.sync: 480 TFLOP/s") != std::string::npos);
  CHECK(svg.find("4.10 TB/s copy") != std::string::npos);
  CHECK(svg.find(r.buckets[0].candidates[0].name()) != std::string::npos);  // the tooltip
  // A dry run: predicted points, labelled so.
  tune::Report dry = r;
  dry.measured = false;
  dry.ceilings.reset();
  dry.gpu.clear();
  dry.profile = profile("h100");
  dry.buckets[0].outcome.reset();
  for (const auto& c : r.buckets[0].candidates) dry.buckets[0].ranked.push_back({c.v, c.p});
  const std::string d = tune::roofline_svg(dry);
  CHECK(plx::testing::xml_problem(d) == "");
  CHECK(d.find("predicted by the model (no GPU") != std::string::npos);
  CHECK(d.find("profile h100 (H100 SXM5 datasheet)") != std::string::npos);
}

namespace {

// Two buckets of two candidates, raced by a fake worker (a bash script standing in for
// `plx tune --worker`) that misbehaves while the second candidate is in the job.
std::vector<tune::WorkerBucket> fake_buckets() {
  std::vector<tune::WorkerBucket> out;
  for (int kv : {1024, 8192}) {
    tune::WorkerBucket wb;
    wb.bucket.shape = Problem{1, 1, kv, 32, 8, -1};
    wb.bucket.gqa = 4;
    wb.key = fmt::format("bucket_kv{}", kv);
    for (int stages : {2, 3}) {
      tune::Candidate c;
      c.v.tile = Tile{8, 64, 4, stages, 0};
      c.model_choice = stages == 2;
      wb.candidates.push_back(c);
    }
    out.push_back(wb);
  }
  return out;
}

// $1: what to do while candidate s3 is in the job (crash | hang | fatal); then a worker
// that finishes every bucket in its job with its first candidate as the winner.
constexpr const char* kFakeWorker = R"(
mode=$1; job=$2
if grep -q _s3_ "$job" || [ "$mode" = fatal ]; then
  echo '{"ev":"begin","b":0,"c":0,"phase":"check"}'
  echo '{"ev":"result","b":0,"c":0,"status":"timed","first":{"n":3,"median_us":10}}'
  echo '{"ev":"begin","b":0,"c":1,"phase":"time"}'
  case $mode in
    crash) kill -SEGV $$ ;;
    hang) sleep 30 ;;
    fatal) echo 'some library noise'; echo '{"ev":"fatal","error":"no CUDA driver"}'; exit 1 ;;
  esac
fi
for b in $(grep -o '"b":[0-9]*' "$job" | cut -d: -f2); do
  echo "{\"ev\":\"begin\",\"b\":$b,\"c\":0,\"phase\":\"time\"}"
  echo "{\"ev\":\"done\",\"b\":$b,\"winner\":0,\"untuned\":0,\"runner_up\":-1,\"winner_us\":10,\"untuned_us\":10,\"noise_us\":0.1,\"seconds\":0.1,\"results\":[{\"status\":\"timed\",\"first\":{\"n\":3,\"median_us\":10,\"p10_us\":9,\"p90_us\":11},\"final\":{\"n\":10,\"median_us\":10},\"finalist\":true,\"tied\":true}]}"
done
)";

std::vector<tune::BucketOutcome> race_fake(const std::string& mode, std::vector<std::string>* begins = nullptr) {
  const std::filesystem::path script = std::filesystem::temp_directory_path() / fmt::format("plx-fake-worker-{}.sh", ::getpid());
  write_file_atomic(script, kFakeWorker);
  tune::WorkerOptions o;
  o.command = {"/bin/bash", script.string(), mode};
  o.stall_s = 1;
  tune::WorkerEvents ev;
  ev.begin = [&](int b, int c, const std::string& phase) {
    if (begins) begins->push_back(fmt::format("{}/{}/{}", b, c, phase));
  };
  auto out = tune::run_tune_workers(fake_buckets(), o, ev);
  std::filesystem::remove(script);
  return out;
}

}  // namespace

TEST_CASE("tuning workers: a candidate that crashes the worker is recorded and left out", "[tune][workers]") {
  std::vector<std::string> begins;
  const auto out = race_fake("crash", &begins);
  REQUIRE(out.size() == 2);
  const auto names = fake_buckets();
  for (std::size_t b = 0; b < 2; ++b) {
    INFO("bucket " << b);
    CHECK(out[b].error.empty());
    CHECK(out[b].winner == 0);
    REQUIRE(out[b].results.size() == 2);
    CHECK(out[b].results[0].status == tune::Status::timed);
    CHECK(out[b].results[0].final.n == 10);
    CHECK(out[b].results[1].status == tune::Status::failed);
  }
  CHECK(out[0].results[1].error.find("crashed: worker killed by signal 11") == 0);
  CHECK(out[1].results[1].error.find("not run: it killed the tuning worker in bucket bucket_kv1024 (crashed") == 0);
  // The restarted worker saw only the first candidate of each bucket.
  CHECK(std::count(begins.begin(), begins.end(), "0/1/time") == 1);
}

TEST_CASE("tuning workers: a hung candidate is killed after the stall limit", "[tune][workers]") {
  const auto out = race_fake("hang");
  REQUIRE(out.size() == 2);
  CHECK(out[0].winner == 0);
  CHECK(out[0].results[1].status == tune::Status::failed);
  CHECK(out[0].results[1].error.find("timed out: no progress for 1 s, worker killed") == 0);
  CHECK(out[1].results[1].error.find("not run:") == 0);
}

TEST_CASE("tuning workers: a worker that cannot start fails every bucket once, with its reason", "[tune][workers]") {
  const auto out = race_fake("fatal");
  REQUIRE(out.size() == 2);
  for (const auto& o : out) {
    CHECK(o.winner == -1);
    // It got as far as a candidate, which is then blamed; the next worker fails the same way
    // with nothing in flight, and the tune stops instead of looping.
    CHECK(o.error.find("not tuned: worker exited with status 1: no CUDA driver") == 0);
  }
}

// A fake worker for the repeat pass: records its job in $1, then per bucket of the job
// (one candidate each) reports a winner of 10 us, or crashes when the candidate is s3.
constexpr const char* kFakeRepeatWorker = R"(
jobs=$1; job=$2; cat "$job" >> "$jobs"
b=-1; named=0
flush() {
  [ "$b" -ge 0 ] || return 0
  if [ $named = 1 ]; then
    echo "{\"ev\":\"done\",\"b\":$b,\"winner\":0,\"untuned\":0,\"runner_up\":-1,\"winner_us\":10,\"noise_us\":0.1,\"results\":[{\"status\":\"timed\",\"first\":{\"n\":3,\"median_us\":10},\"final\":{\"n\":10,\"median_us\":10},\"finalist\":true}]}"
  else
    echo "{\"ev\":\"done\",\"b\":$b,\"winner\":-1,\"untuned\":-1,\"runner_up\":-1,\"results\":[]}"
  fi
}
for t in $(grep -o '"b":[0-9]*\|"name":"[^"]*"' "$job"); do
  case $t in
    '"b":'*) flush; b=${t#\"b\":}; named=0 ;;
    *) echo "{\"ev\":\"begin\",\"b\":$b,\"c\":0,\"phase\":\"time\"}"
       case $t in *_s3_*) kill -SEGV $$ ;; esac
       named=1 ;;
  esac
done
flush
)";

TEST_CASE("tuning workers: the repeat pass re-times each winner alone, in a fresh worker", "[tune][workers][repro]") {
  const std::filesystem::path script =
      std::filesystem::temp_directory_path() / fmt::format("plx-fake-repeat-worker-{}.sh", ::getpid());
  const std::filesystem::path jobs = script.string() + ".jobs";
  write_file_atomic(script, kFakeRepeatWorker);
  const auto buckets = fake_buckets();
  std::vector<tune::BucketOutcome> outs(2);
  outs[0].winner = 0;  // s2 won bucket 0
  outs[0].winner_us = 9;
  outs[1].winner = -1;  // nothing won bucket 1
  tune::WorkerOptions o;
  o.command = {"/bin/bash", script.string(), jobs.string()};
  o.stall_s = 5;
  std::vector<std::string> done;
  tune::WorkerEvents ev;
  ev.done = [&](int b, const tune::BucketOutcome&) { done.push_back(std::to_string(b)); };
  auto rep = tune::run_repeat_workers(buckets, outs, o, ev);
  REQUIRE(rep.size() == 2);
  CHECK(rep[0].us == 10);  // the worker's time, not the race's 9
  CHECK(rep[0].error.empty());
  CHECK(rep[1].us == 0);
  CHECK(rep[1].error == "no winner to repeat");
  CHECK(done == std::vector<std::string>{"0"});  // in the caller's numbering
  // One job: the winner alone, without the oracle check.
  const json::Value job = json::parse(*read_file(jobs));
  REQUIRE(job.at("buckets").size() == 1);
  const json::Value& jb = job.at("buckets").as_array()[0];
  REQUIRE(jb.at("candidates").size() == 1);
  CHECK(jb.at("candidates").as_array()[0].at("name").as_string() == buckets[0].candidates[0].name());
  CHECK(job.at("options").at("check").as_bool() == false);

  // The winner is what is sent: s3 won bucket 1 and crashes the worker; bucket 0 keeps
  // its time, bucket 1 says why it has none.
  std::filesystem::remove(jobs);
  outs[1].winner = 1;
  rep = tune::run_repeat_workers(buckets, outs, o);
  CHECK(rep[0].us == 10);
  CHECK(rep[1].us == 0);
  CHECK(rep[1].error.find("crashed") == 0);
  std::filesystem::remove(script);
  std::filesystem::remove(jobs);
}

// ---- GPU -------------------------------------------------------------------------------

TEST_CASE("harness on the GPU: fill timing, interleave, ceilings", "[gpu][measure]") {
  if (!cu::available()) {
    WARN("no GPU: skipped");
    return;
  }
  cu::Device dev(0);
  dev.make_current();
  Harness h(dev);
  // The timed call is the harness's own fill kernel over 1 MiB: a few microseconds of GPU
  // time, far below a host enqueue plus synchronisation, so a sane median shows the events
  // time the GPU.
  cu::Buffer buf(1 << 20);
  TimingOptions o;
  o.budget_s = 0.05;
  const auto us = h.time([&](int, void*) { h.fill_random(buf.data(), buf.size(), DType::bf16, 1); }, o);
  REQUIRE(us.size() >= 5);
  const Stats st = summarize(us);
  INFO("fill 1 MiB: median " << st.median << " us, p10 " << st.p10 << " p90 " << st.p90);
  CHECK(st.median > 0.5);
  CHECK(st.median < 200);
  std::vector<int> reps;  // in enqueue order: must be 0, 1, 2, ... across both calls
  const auto both = h.interleave({[&](int rep, void*) {
                                    reps.push_back(rep);
                                    h.fill_random(buf.data(), buf.size(), DType::bf16, 1);
                                  },
                                  [&](int rep, void*) {
                                    reps.push_back(rep);
                                    h.fill_random(buf.data(), buf.size() / 2, DType::fp16, 2);
                                  }},
                                 o);
  REQUIRE(both.size() == 2);
  CHECK(both[0].size() == both[1].size());
  CHECK(both[0].size() >= 5);
  REQUIRE(reps.size() == 2 * both[0].size() + 2);  // + one untimed call each
  for (std::size_t i = 0; i < reps.size(); ++i) CHECK(reps[i] == int(i));

  std::string wg;
  const Ceilings c = measure_ceilings(dev, &wg);
  INFO("copy " << c.copy_GBps << " GB/s, mma.sync " << c.mma_sync_tflops << " TFLOP/s, wgmma " << c.wgmma_tflops
               << " TFLOP/s (" << wg << "), ceiling " << c.tc_kernel);
  CHECK(c.valid());
  CHECK(c.copy_GBps > 500);
  CHECK(c.mma_sync_tflops > 50);
  if (dev.arch_string() == "sm_90a") CHECK(wg.empty());
  WARN("ceilings: copy " << c.copy_GBps << " GB/s, mma.sync " << c.mma_sync_tflops << " TFLOP/s, wgmma "
                         << c.wgmma_tflops << " TFLOP/s, ridge " << c.ridge() << " FLOP/B");
}

TEST_CASE("PLX_TUNE=sync: the first call of an untuned bucket tunes it and records the winner", "[gpu][tune]") {
  if (!cu::available()) {
    WARN("no GPU: skipped");
    return;
  }
  std::string tmpl = "/tmp/plx-sync-tune-XXXXXX";
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const std::filesystem::path dir = tmpl;
  cu::Device dev(0);
  dev.make_current();
  AttentionArgs bucket;
  bucket.batch = 4;
  bucket.kv_len = 4096;
  bucket.heads_q = 16;
  bucket.heads_kv = 4;
  bucket.head_dim = 128;
  const AttentionArgs problem = tune::check_problem(bucket);
  const std::string key = tune::bucket_of(problem).key();
  std::string winner;
  {
    ::setenv("PLX_TUNE", "sync", 1);
    Engine engine(0, EngineOptions{dir, true});
    ::unsetenv("PLX_TUNE");
    cu::Stream stream;
    const tune::OracleCase oc(problem);
    // The call itself: tuned first, then run -- and its output must still be right.
    const std::string verdict =
        oc.check([&](const AttentionArgs& a, void* s) { engine.attention(a, s); }, stream.handle());
    INFO(verdict);
    CHECK(verdict.empty());
    TuningDb db(dir, GpuIdentity::of(dev));
    REQUIRE(db.load() == DbStatus::ok);
    const auto e = db.lookup(key);
    REQUIRE(e);
    winner = e->winner;
    CHECK(e->winner_us > 0);
    CHECK(e->notes.find("PLX_TUNE=sync") != std::string::npos);
    CHECK(engine.variant_for(problem) == winner);
    WARN("PLX_TUNE=sync recorded " << key << ": " << winner << " " << e->winner_us << " us (runner-up "
                                   << e->runner_up << " " << e->runner_up_us << " us)");
  }
  // A later process without PLX_TUNE runs the recorded winner at once.
  Engine later(0, EngineOptions{dir, true});
  CHECK(later.variant_for(problem) == winner);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
