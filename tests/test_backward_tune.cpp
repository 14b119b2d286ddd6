// The tuner and the engine on the backward (issue 7: the backward's tile axes tunable like
// the forward's): backward buckets and their keys, the backward roofline model, the
// database round trip of a backward winner and the engine's lookup rule
// (choose_backward_variant). CPU only, except the [gpu] cases at the end, which race a
// backward bucket, catch a wrong backward kernel, and check the engine picks a recorded
// winner; they skip without a GPU.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <filesystem>
#include <iterator>
#include <set>
#include <tuple>

#include "autotune/backward_tune.hpp"
#include "autotune/bucket_key.hpp"
#include "autotune/choose_variant.hpp"
#include "autotune/roofline.hpp"
#include "autotune/tune.hpp"
#include "autotune/tuning_db.hpp"
#include "h200_identity.hpp"
#include "generator/expand.hpp"
#include "generator/legality.hpp"
#include "generator/spec.hpp"
#include "runtime/backward.hpp"
#include "runtime/driver.hpp"
#include "runtime/launch.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace plx;
using plx::testing::TempDir;
using plx::testing::h200;

namespace {

AttentionArgs training(Family f, int len, int heads_q, int heads_kv, int d = 128) {
  AttentionArgs a;
  a.family = f;
  a.batch = 1;
  a.q_len = a.kv_len = len;
  a.heads_q = heads_q;
  a.heads_kv = heads_kv;
  a.head_dim = d;
  a.causal = true;
  return a;
}

std::vector<Variant> spec_variants(const KernelSpec& s) { return expand(s).variants; }

KernelSpec spec(const char* rel) { return load_spec(fs::path(PLX_SOURCE_DIR) / rel); }

DbEntry entry(const std::string& bucket, const std::string& winner, double us) {
  DbEntry e;
  e.bucket = bucket;
  e.winner = winner;
  e.winner_us = us;
  e.predicted_us = us * 0.8;
  e.measured_at = 1767225600;
  e.notes = "test";
  return e;
}

TuningDb quiet_db(const fs::path& root) {
  TuningDb db(root, h200());
  db.set_warning_sink([](const std::string&) {});
  return db;
}

}  // namespace

TEST_CASE("backward bucket keys: op backward, prefill rounding, never a forward key", "[backward][tune]") {
  const AttentionArgs a = training(Family::parallax, 16384, 16, 8);
  CHECK(tune::bucket_of_backward(a).key() == "backward_parallax_bf16_d128_causal_bh8_kv16384_g2_q16384");
  CHECK(tune::bucket_of(a).key() == "prefill_parallax_bf16_d128_causal_bh8_kv16384_g2_q16384");
  // Rounded up like prefill; a q_len the forward would call decode is still a backward.
  CHECK(tune::bucket_of_backward(training(Family::parallax, 3000, 16, 8)).key() ==
        "backward_parallax_bf16_d128_causal_bh8_kv4096_g2_q4096");
  AttentionArgs tiny = training(Family::softmax, 1, 8, 8);
  tiny.kv_len = 100;
  CHECK(tune::bucket_of_backward(tiny).key() == "backward_softmax_bf16_d128_causal_bh8_kv128_g1_q1");
  CHECK(tune::bucket_of_backward(tiny).op == Op::backward);
  AttentionArgs w = a;
  w.window_left = 256;
  CHECK(tune::bucket_of_backward(w).key() == "backward_parallax_bf16_d128_causal_window_bh8_kv16384_g2_q16384");
  // The engine caches choices by BucketId: the forward and the backward ids differ.
  CHECK(!(tune::bucket_of_backward(a) == tune::bucket_of(a)));
}

TEST_CASE("backward buckets: the spec's classes x gqa x training lengths, keys unique", "[backward][tune]") {
  const KernelSpec s = spec("specs/backward_sm90_wgmma.yaml");
  const std::vector<Variant> vs = spec_variants(s);
  REQUIRE(!vs.empty());
  const std::vector<tune::Bucket> bs = tune::buckets_for(s, vs);
  std::set<std::tuple<Family, DType, int, bool>> classes;
  for (const Variant& v : vs) classes.insert({v.family, v.dtype, v.head_dim, v.window});
  // Windowed classes once per window width (the spec has one, 256).
  CHECK(bs.size() == classes.size() * s.gqa.size() * std::size(tune::kBackwardLengths));
  std::set<std::string> keys;
  std::set<int> lengths;
  for (const tune::Bucket& b : bs) {
    CHECK(b.op == Op::backward);
    CHECK(b.shape.batch == 1);
    CHECK(b.shape.q_len == b.shape.kv_len);
    CHECK(b.shape.heads_kv == tune::kHeadsKv);
    CHECK(b.shape.heads_q == tune::kHeadsKv * b.gqa);
    CHECK(b.causal);
    lengths.insert(b.shape.q_len);
    const std::string k = tune::bucket_id(b).key();
    CHECK(k.rfind("backward_", 0) == 0);
    CHECK(keys.insert(k).second);
    CHECK(b.flags().find("--op backward") != std::string::npos);
  }
  CHECK(lengths == std::set<int>{1024, 4096, 16384});
  // A forward tune of the same GPU never writes these keys.
  const KernelSpec p = spec("specs/prefill_sm90_wgmma.yaml");
  for (const tune::Bucket& b : tune::buckets_for(p, spec_variants(p))) CHECK(!keys.count(tune::bucket_id(b).key()));
}

TEST_CASE("backward model: the worked example, padding, and ranking only backward variants", "[backward][tune]") {
  const GpuProfile g = profile("h200");
  AttentionArgs a = training(Family::parallax, 16384, 16, 8);
  const Variant wg = wgmma_backward_variant(a);  // m128 n32 w12 s4
  const Prediction p = predict(wg, Problem{1, 16384, 16384, 16, 8, -1}, g);
  // roofline.cpp backward_work: 2 x 2.16e9 pairs x (5 + 6) x 256 FLOPs.
  CHECK(p.flops == Approx(16.0 * 128 * 1056768 * 256 * 11).epsilon(1e-12));
  CHECK(p.ctas == 128 * 8 + 128 * 16);
  CHECK(p.wave_efficiency == Approx(3072.0 / 3168));
  CHECK(p.compute_bound);
  CHECK(p.us == Approx(p.flops / 754e6 / (3072.0 / 3168) + 2 * g.launch_us));
  // The padded work is at least the useful work, and close to it on long sequences.
  const double useful = tune::useful_backward_flops(a);
  CHECK(useful == Approx(16.0 * 16384 * 16385 / 2 * 22 * 128));
  CHECK(p.flops >= useful);
  CHECK(p.flops < useful * 1.01);
  // Softmax does 7 products a pair, not 11.
  CHECK(roofline::backward_flops_per_pair(Family::softmax, 128) == 1792);
  CHECK(roofline::backward_flops_per_pair(Family::parallax_uncentered, 64) == 1408);
  // A window cuts the work; a longer sequence never predicts faster.
  const Prediction win = predict(wg, Problem{1, 16384, 16384, 16, 8, 256}, g);
  CHECK(win.flops < p.flops / 16);  // about 21x fewer: 384 keys a block instead of ~8256
  CHECK(predict(wg, Problem{1, 4096, 4096, 16, 8, -1}, g).us < p.us);
  // Short sequences pay for partial tiles: block_n 64 computes more padded pairs than 32.
  Variant n64 = wg;
  n64.head_dim = 64;
  n64.tile.block_n = 64;
  Variant n32 = n64;
  n32.tile.block_n = 32;
  CHECK(predict(n64, Problem{1, 200, 200, 8, 8, -1}, g).flops > predict(n32, Problem{1, 200, 200, 8, 8, -1}, g).flops);

  // rank(): only the bucket's backward variants, the fastest prediction first.
  const KernelSpec s = spec("specs/backward_sm90_wgmma.yaml");
  const std::vector<Variant> vs = spec_variants(s);
  int ranked_buckets = 0;
  for (const tune::Bucket& b : tune::buckets_for(s, vs)) {
    const auto r = tune::rank(vs, b, g);
    if (r.empty()) continue;
    ++ranked_buckets;
    for (std::size_t i = 0; i < r.size(); ++i) {
      CHECK(r[i].v.op == Op::backward);
      CHECK(tune::serves(r[i].v, b));
      CHECK(r[i].p.us > 0);
      if (i) CHECK(r[i - 1].p.us <= r[i].p.us);
    }
  }
  CHECK(ranked_buckets > 0);
}

TEST_CASE("backward candidates: the engine's untuned backward is always raced", "[backward][tune]") {
  const AttentionArgs a = training(Family::parallax, 4096, 16, 8);
  CHECK(untuned_backward_variant(a, Arch::sm90a) == wgmma_backward_variant(a));
  CHECK(untuned_backward_variant(a, Arch::sm80) == default_backward_variant(a, Arch::sm80));
  tune::Bucket b;
  b.op = Op::backward;
  b.gqa = 2;
  b.shape = Problem{1, 4096, 4096, 16, 8, -1};
  CHECK(tune::untuned_variant(b, Arch::sm90a) == wgmma_backward_variant(b.args()));
  // The mma.sync spec on sm_90a races against the wgmma kernel the engine runs untuned.
  const KernelSpec s = spec("specs/backward_sm90.yaml");
  const auto r = tune::rank(spec_variants(s), b, profile("h200"));
  REQUIRE(!r.empty());
  const auto c = tune::candidates_for(r, tune::untuned_variant(b, Arch::sm90a), 2, nullptr, nullptr);
  REQUIRE(c.size() == 3);
  CHECK(c.back().model_choice);
  CHECK(c.back().v.tile.mma == Mma::wgmma);
  CHECK(c.back().model_rank == -1);
}

TEST_CASE("backward winners: database round trip and the engine's lookup rule", "[backward][tuning_db]") {
  TempDir t;
  const AttentionArgs a = training(Family::parallax, 16384, 16, 8);
  const Variant untuned = untuned_backward_variant(a, Arch::sm90a);
  Variant tuned = untuned;
  tuned.tile.stages = 3;
  tuned.tile.mma = Mma::wgmma;
  REQUIRE(!why_illegal(tuned));
  REQUIRE(tuned != untuned);
  const std::string key = tune::bucket_of_backward(a).key();
  {
    TuningDb db = quiet_db(t.path);
    db.load();
    CHECK(choose_backward_variant(db, a, Arch::sm90a).variant == untuned);  // nothing tuned
    // A forward winner of the same shape stays the forward's.
    const Variant fwd = default_variant(a, Arch::sm90a);
    db.record({entry(key, tuned.name(), 11700.0), entry(tune::bucket_key(a), fwd.name(), 3500.0)});
  }
  TuningDb db = quiet_db(t.path);
  REQUIRE(db.load() == DbStatus::ok);
  REQUIRE(db.lookup(key));
  CHECK(db.lookup(key)->winner == tuned.name());
  CHECK(db.lookup(key)->winner_us == 11700.0);
  VariantChoice c = choose_backward_variant(db, a, Arch::sm90a);
  CHECK(c.tuned);
  CHECK(c.variant == tuned);
  CHECK(choose_variant(db, a, Arch::sm90a).variant == default_variant(a, Arch::sm90a));
  // The whole bucket gets it; another bucket gets the untuned choice.
  CHECK(choose_backward_variant(db, training(Family::parallax, 12000, 16, 8), Arch::sm90a).variant == tuned);
  const AttentionArgs other = training(Family::parallax, 4096, 16, 8);
  CHECK(choose_backward_variant(db, other, Arch::sm90a).variant == untuned_backward_variant(other, Arch::sm90a));

  // Unusable winners fall back, saying why.
  auto with_winner = [&](const std::string& name) {
    TempDir d;
    TuningDb x = quiet_db(d.path);
    x.record({entry(key, name, 10.0)});
    return choose_backward_variant(x, a, Arch::sm90a);
  };
  c = with_winner(default_variant(a, Arch::sm90a).name());  // a forward kernel under a backward key
  CHECK(!c.tuned);
  CHECK(c.variant == untuned);
  CHECK(c.rejected.find("needs backward") != std::string::npos);
  Variant d64 = tuned;
  d64.head_dim = 64;
  c = with_winner(d64.name());
  CHECK(!c.tuned);
  CHECK(c.rejected.find("head_dim") != std::string::npos);
  c = with_winner(default_backward_variant(a, Arch::sm80).name());
  CHECK(!c.tuned);
  CHECK(c.rejected.find("targets sm_80") != std::string::npos);
  Variant spills = tuned;
  spills.tile.block_n = 64;  // d 128 block_n 64: legality refuses it (registers)
  REQUIRE(why_illegal(spills));
  c = with_winner(spills.name());
  CHECK(!c.tuned);
  CHECK(c.variant == untuned);

  // Another driver's database is never consulted.
  GpuIdentity upgraded = h200();
  upgraded.driver_version += 10;
  TuningDb stale(t.path, upgraded);
  stale.set_warning_sink([](const std::string&) {});
  CHECK(stale.load() == DbStatus::identity_mismatch);
  CHECK(choose_backward_variant(stale, a, Arch::sm90a).variant == untuned);
}

TEST_CASE("backward race inputs and check problem: sizes and the bucket's class", "[backward][tune]") {
  AttentionArgs a = training(Family::parallax, 1024, 16, 8);
  CHECK(tune::backward_input_bytes(a) == 7u * 4194304 + 4u * 2097152 + 262144);
  a.family = Family::softmax;  // no r, dr, barv
  CHECK(tune::backward_input_bytes(a) == 4u * 4194304 + 4u * 2097152 + 262144);
  AttentionArgs b = training(Family::parallax_uncentered, 16384, 64, 8, 64);
  b.dtype = DType::fp16;
  b.window_left = 256;
  const AttentionArgs s = tune::backward_check_problem(b);
  CHECK(s.family == b.family);
  CHECK(s.dtype == b.dtype);
  CHECK(s.head_dim == 64);
  CHECK(s.causal);
  CHECK(s.window_left == 77);
  CHECK(s.heads_q / s.heads_kv == 8);
  CHECK(s.q_len == 136);
  CHECK(s.kv_len == 136);
  CHECK(tune::backward_check_live_lengths(s) == std::vector<int>{136, 101});
  validate_backward(s, BackwardArgs{}, /*pointers=*/false);
}

// ---- GPU ---------------------------------------------------------------------------------

#include "autotune/measure.hpp"
#include "parallax/parallax.hpp"

namespace {
bool gpu_or_skip() {
  if (cu::available()) return true;
  WARN("no GPU: skipped");
  return false;
}
bool is_hopper() { return cu::Device(0).arch() == Arch::sm90a; }
}  // namespace

TEST_CASE("backward race on the GPU: checked, timed, a winner within noise", "[gpu][backward][tune]") {
  if (!gpu_or_skip()) return;
  TempDir t;
  cu::Device dev(0);
  dev.make_current();
  Engine engine(0, EngineOptions{t.path, true});
  measure::Harness h(dev);
  tune::BackwardInputs inputs(h);
  tune::Bucket b;
  b.op = Op::backward;
  b.gqa = 2;
  b.shape = Problem{1, 1024, 1024, 16, 8, -1};
  const Arch arch = dev.arch();
  const Variant untuned = tune::untuned_variant(b, arch);
  Variant other = untuned;
  other.tile.stages = untuned.tile.stages == 2 ? 3 : 2;
  REQUIRE(!why_illegal(other));
  std::vector<tune::Candidate> cands(2);
  cands[0].v = other;
  cands[0].model_rank = 0;
  cands[1].v = untuned;
  cands[1].model_choice = true;
  tune::Runner run;
  run.launch = [&](const std::string& n, const AttentionArgs& a, void* s) { engine.attention(a, n, s); };
  run.prepare = [&](const std::string& n) { engine.prepare(n); };
  run.launch_backward = [&](const std::string& n, const AttentionArgs& a, const BackwardArgs& g, void* s) {
    engine.attention_backward(a, g, n, s);
  };
  run.forward = [&](const AttentionArgs& a, void* s) { engine.attention(a, s); };
  tune::TuneOptions o;
  o.budget_s = 0.4;
  tune::CheckCache checks;
  const tune::BucketOutcome out = tune::tune_backward_bucket(h, inputs, b, cands, run, o, &checks);
  std::string why = out.error;
  for (const auto& r : out.results) why += std::string("; ") + tune::to_string(r.status) + " " + r.error;
  INFO(why);
  REQUIRE(out.error.empty());
  REQUIRE(out.winner >= 0);
  CHECK(out.untuned == 1);
  CHECK(out.results[0].status == tune::Status::timed);
  CHECK(out.results[1].status == tune::Status::timed);
  CHECK(out.winner_us > 1);  // a 1024-token backward is tens of microseconds or more
  CHECK(checks.verdicts.size() == 2);
  CHECK(checks.backward_cases.size() == 1);
  WARN("backward race " << tune::bucket_id(b).key() << ": " << cands[std::size_t(out.winner)].name() << " "
                        << out.winner_us << " us (untuned " << out.untuned_us << " us)");
}

TEST_CASE("backward oracle check: a kernel that writes nothing is caught", "[gpu][backward][tune]") {
  if (!gpu_or_skip()) return;
  TempDir t;
  cu::Device dev(0);
  dev.make_current();
  Engine engine(0, EngineOptions{t.path, true});
  cu::Stream stream;
  const AttentionArgs small = tune::backward_check_problem(training(Family::parallax, 4096, 32, 8));
  const tune::BackwardOracleCase oc(small);
  auto fwd = [&](const AttentionArgs& a, void* s) { engine.attention(a, s); };
  const std::string good = oc.check(
      fwd, [&](const AttentionArgs& a, const BackwardArgs& g, void* s) { engine.attention_backward(a, g, s); },
      stream.handle());
  INFO(good);
  CHECK(good.empty());
  const std::string bad = oc.check(fwd, [](const AttentionArgs&, const BackwardArgs&, void*) {}, stream.handle());
  CHECK(bad.find("wrong dq") != std::string::npos);
  CHECK(bad.find("not finite") != std::string::npos);
}

TEST_CASE("engine: attention_backward runs the database's backward winner", "[gpu][backward][tune]") {
  if (!gpu_or_skip()) return;
  if (!is_hopper()) {
    WARN("not sm_90a: skipped (the winner recorded here is a wgmma variant)");
    return;
  }
  TempDir t;
  cu::Device dev(0);
  const AttentionArgs a = training(Family::parallax, 4096, 16, 8);
  Variant tuned = wgmma_backward_variant(a);
  tuned.tile.stages = 3;
  {
    TuningDb db(t.path, GpuIdentity::of(dev));
    db.load();
    db.record({entry(tune::bucket_of_backward(a).key(), tuned.name(), 900.0)});
  }
  ::unsetenv("PLX_BACKWARD_MMA");
  ::unsetenv("PLX_BACKWARD_TILE");
  {
    Engine e(0, EngineOptions{t.path, true});
    CHECK(e.backward_variant_for(a) == tuned.name());
    const AttentionArgs other = training(Family::parallax, 1024, 16, 8);
    CHECK(e.backward_variant_for(other) == wgmma_backward_variant(other).name());
  }
  // The measurement switches still override the database.
  ::setenv("PLX_BACKWARD_MMA", "sync", 1);
  {
    Engine e(0, EngineOptions{t.path, true});
    CHECK(e.backward_variant_for(a) == default_backward_variant(a, Arch::sm90a).name());
  }
  ::unsetenv("PLX_BACKWARD_MMA");
}
