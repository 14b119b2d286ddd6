// The roofline model and the tuner's ranking, without a GPU: the worked examples in
// autotune/roofline.{hpp,cpp} hold, decode is memory bound and prefill compute bound,
// small batches get more KV splits, and the ranking is deterministic.
#include <catch2/catch.hpp>

#include "autotune/roofline.hpp"
#include "autotune/tune.hpp"
#include "generator/expand.hpp"
#include "generator/spec.hpp"
#include "parallax/errors.hpp"

using namespace plx;

namespace {

Variant decode_variant(Family f, int d, int block_m, int stages) {
  Variant v;
  v.op = Op::decode;
  v.family = f;
  v.head_dim = d;
  v.tile = Tile{block_m, 64, 4, stages, 0};
  return v;
}

Variant prefill_variant(Family f, int block_m, int warps) {
  Variant v;
  v.op = Op::prefill;
  v.family = f;
  v.tile = Tile{block_m, 64, warps, 2, 1};
  return v;
}

}  // namespace

TEST_CASE("profiles: the h200 uses the reference figures; unknown names are refused", "[roofline]") {
  const GpuProfile h = profile("h200");
  CHECK(h.hbm_GBps == 4280.0);
  CHECK(h.tc_tflops_bf16 == 754.0);
  CHECK(h.sm_count == 132);
  CHECK(profile("a100").sm_count == 108);
  CHECK_THROWS_AS(profile("b200"), UnsupportedError);
}

TEST_CASE("the small functions' worked examples", "[roofline]") {
  CHECK(roofline::flops_per_pair(Family::softmax, 128) == 512);
  CHECK(roofline::flops_per_pair(Family::parallax, 128) == 1024);
  CHECK(roofline::padded_rows(4, 16) == 16);
  CHECK(roofline::padded_rows(1000, 64) == 1024);
  CHECK(roofline::wave_efficiency(264, 132) == 1.0);
  CHECK(roofline::wave_efficiency(265, 132) == Approx(265.0 / 396));
  CHECK(roofline::wave_efficiency(64, 132) == Approx(64.0 / 132));
  CHECK(roofline::wave_efficiency(512, 132) == Approx(512.0 / 528));
  CHECK(roofline::roofline_us(134.2e6, 17.6e9, profile("h200")) == Approx(31.36).epsilon(1e-3));
}

TEST_CASE("decode worked example: parallax d128 m8 s3, batch 1, kv 32768, heads 32/8", "[roofline]") {
  const Prediction p =
      predict(decode_variant(Family::parallax, 128, 8, 3), Problem{1, 1, 32768, 32, 8, -1}, profile("h200"));
  CHECK(p.splits == 16);
  CHECK(p.ctas == 128);
  CHECK(p.bytes == 135307264.0);
  CHECK(p.flops == 2147483648.0);
  CHECK(p.intensity == Approx(15.87).epsilon(1e-3));
  CHECK_FALSE(p.compute_bound);
  CHECK(p.wave_efficiency == Approx(128.0 / 132));
  CHECK(p.us == Approx(34.60).epsilon(1e-3));
}

TEST_CASE("prefill worked example: softmax d128 m128 w8, batch 1, 4096 causal, heads 16/8", "[roofline]") {
  const Prediction p =
      predict(prefill_variant(Family::softmax, 128, 8), Problem{1, 4096, 4096, 16, 8, -1}, profile("h200"));
  CHECK(p.flops == 70866960384.0);
  CHECK(p.bytes == 16777216.0 + 33554432.0);
  CHECK(p.compute_bound);
  CHECK(p.splits == 1);
  CHECK(p.ctas == 512);
  CHECK(p.us == Approx(70866960384.0 / 754e6 / (512.0 / 528) + 2.0).epsilon(1e-9));
  CHECK(p.us == Approx(98.9).epsilon(1e-3));
}

TEST_CASE("decode is memory bound, prefill compute bound, across shapes and families", "[roofline]") {
  const GpuProfile g = profile("h200");
  for (Family f : {Family::softmax, Family::parallax}) {
    const int bm = f == Family::softmax ? 16 : 8;
    for (int batch : {1, 32})
      for (int kv : {1024, 32768}) {
        const Prediction p = predict(decode_variant(f, 128, bm, 3), Problem{batch, 1, kv, 32, 8, -1}, g);
        CHECK_FALSE(p.compute_bound);
      }
    const Prediction pre = predict(prefill_variant(f, f == Family::softmax ? 128 : 64, 8),
                                   Problem{1, 8192, 8192, 32, 8, -1}, g);
    CHECK(pre.compute_bound);
    CHECK(pre.intensity > g.tc_tflops_bf16 * 1e3 / g.hbm_GBps);  // beyond the ridge point
  }
  // Parallax does twice the FLOPs of softmax on the same K/V bytes.
  const Problem p{1, 8192, 8192, 32, 8, -1};
  const double soft = predict(prefill_variant(Family::softmax, 64, 4), p, g).flops;
  const double plx = predict(prefill_variant(Family::parallax, 64, 8), p, g).flops;
  CHECK(plx == Approx(2 * soft));
}

TEST_CASE("causal prefill costs about half the square; a window bounds decode traffic", "[roofline]") {
  const GpuProfile g = profile("h200");
  Variant causal = prefill_variant(Family::softmax, 128, 8), full = causal;
  full.causal = false;
  const Problem p{1, 8192, 8192, 16, 8, -1};
  const double ratio = predict(causal, p, g).flops / predict(full, p, g).flops;
  CHECK(ratio > 0.5);
  CHECK(ratio < 0.52);  // the diagonal tiles are computed whole

  Variant win = decode_variant(Family::parallax, 128, 8, 3), nowin = win;
  win.window = true;
  const Prediction w = predict(win, Problem{32, 1, 32768, 32, 8, 256}, g);
  const Prediction n = predict(nowin, Problem{32, 1, 32768, 32, 8, -1}, g);
  CHECK(w.bytes < n.bytes / 50);
}

TEST_CASE("small batches get more KV splits (and the merge's launch and traffic)", "[roofline]") {
  const GpuProfile g = profile("h200");
  const Variant v = decode_variant(Family::parallax, 128, 8, 3);
  const Prediction b1 = predict(v, Problem{1, 1, 16384, 32, 8, -1}, g);
  const Prediction b8 = predict(v, Problem{8, 1, 16384, 32, 8, -1}, g);
  const Prediction b32 = predict(v, Problem{32, 1, 16384, 32, 8, -1}, g);
  CHECK(b1.splits > b8.splits);
  CHECK(b8.splits > b32.splits);
  CHECK(b32.splits == 1);
  CHECK(b1.wave_efficiency > 0.9);  // the splits fill the SMs
  // A fixed split count of 1 leaves batch 1 on 8 of 132 SMs: the model sees it.
  Variant one = v;
  one.tile.split_kv = 1;
  const Prediction single = predict(one, Problem{1, 1, 16384, 32, 8, -1}, g);
  CHECK(single.splits == 1);
  CHECK(single.us > 5 * b1.us);
}

TEST_CASE("predict refuses illegal variants, CTAs too big for the SM and empty problems", "[roofline]") {
  const GpuProfile g = profile("h200");
  Variant bad = decode_variant(Family::softmax, 128, 8, 3);  // softmax needs block_m 16
  CHECK_THROWS_AS(predict(bad, Problem{1, 1, 1024, 8, 8, -1}, g), UnsupportedError);
  CHECK_THROWS_AS(predict(decode_variant(Family::parallax, 128, 8, 3), Problem{1, 1, 1024, 12, 8, -1}, g),
                  UnsupportedError);
  CHECK_THROWS_AS(predict(decode_variant(Family::parallax, 128, 8, 3), Problem{0, 1, 1024, 8, 8, -1}, g),
                  UnsupportedError);
  Variant big = decode_variant(Family::parallax, 128, 16, 3);
  big.tile.block_n = 128;  // 204800 B: fits the h200, not the a100
  CHECK(fits(big, g));
  CHECK_FALSE(fits(big, profile("a100")));
}

TEST_CASE("tuning buckets and ranking over the shipped decode spec are deterministic", "[roofline][tune]") {
  const KernelSpec spec = load_spec(PLX_SOURCE_DIR "/specs/decode_sm90.yaml");
  const ExpandResult ex = expand(spec);
  const auto buckets = tune::buckets_for(spec, ex.variants);
  // classes (family x dtype x d x window flag) x windows x gqa x 6 shapes
  std::size_t classes = 0;
  for (const auto& b : buckets) classes += b.gqa == spec.gqa[0] && b.shape.batch == 1 && b.shape.kv_len == 1024;
  CHECK(buckets.size() == classes * spec.gqa.size() * 6);
  const GpuProfile g = profile("h200");
  for (const auto& b : buckets) {
    const auto r1 = tune::rank(ex.variants, b, g);
    auto shuffled = ex.variants;
    std::reverse(shuffled.begin(), shuffled.end());
    const auto r2 = tune::rank(shuffled, b, g);
    REQUIRE(!r1.empty());
    REQUIRE(r1.size() == r2.size());
    for (std::size_t i = 0; i < r1.size(); ++i) {
      CHECK(r1[i].v == r2[i].v);
      CHECK(tune::serves(r1[i].v, b));
      if (i) CHECK(r1[i - 1].p.us <= r1[i].p.us);
    }
  }
}

TEST_CASE("prefill buckets use batch 1 and q = kv lengths", "[tune]") {
  const KernelSpec spec = load_spec(PLX_SOURCE_DIR "/specs/prefill_sm90.yaml");
  const auto buckets = tune::buckets_for(spec, expand(spec).variants);
  REQUIRE(!buckets.empty());
  for (const auto& b : buckets) {
    CHECK(b.shape.batch == 1);
    CHECK(b.shape.q_len == b.shape.kv_len);
    CHECK(b.shape.heads_q == 8 * b.gqa);
    CHECK(b.flags().find("--op prefill") == 0);
  }
}
