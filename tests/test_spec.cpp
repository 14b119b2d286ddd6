// The spec language (generator/spec.hpp), expansion (generator/expand.hpp) and the
// legality rules (generator/legality.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "generator/expand.hpp"
#include "generator/legality.hpp"
#include "generator/spec.hpp"
#include "generator/variant.hpp"
#include "parallax/errors.hpp"

using namespace plx;
namespace fs = std::filesystem;

namespace {

const fs::path kSpecs = fs::path(PLX_SOURCE_DIR) / "specs";

// The error text of a spec that must fail.
std::string error_of(const std::string& text, const std::string& name = "t.yaml") {
  try {
    parse_spec(text, name);
  } catch (const SpecError& e) {
    return e.what();
  }
  FAIL("expected a SpecError for:\n" << text);
  return {};
}

// Minimal valid decode spec; tests append lines after it (line 6 on).
const std::string kHead =
    "op: decode\n"         // 1
    "variant: parallax\n"  // 2
    "dtype: bf16\n"        // 3
    "head_dim: 128\n"      // 4
    "arch: sm_90a\n";      // 5

bool one_line(const std::string& s) { return s.find('\n') == std::string::npos && !s.empty(); }

}  // namespace

// ---------------------------------------------------------------------------------------
// Shipped specs
// ---------------------------------------------------------------------------------------

TEST_CASE("every shipped spec parses, expands to a modest legal set, and names round-trip", "[spec]") {
  struct Want {
    const char* file;
    const char* name;
    Op op;
    Arch arch;
    size_t legal, dropped;
  };
  const Want wants[] = {
      {"decode_sm90.yaml", "decode-sm90", Op::decode, Arch::sm90a, 120, 24},
      {"decode_sm80.yaml", "decode-sm80", Op::decode, Arch::sm80, 80, 16},
      {"decode_sm90_tma.yaml", "decode-sm90-tma", Op::decode, Arch::sm90a, 80, 16},
      {"prefill_sm90.yaml", "prefill-sm90", Op::prefill, Arch::sm90a, 26, 22},
      {"prefill_sm80.yaml", "prefill-sm80", Op::prefill, Arch::sm80, 26, 22},
      {"prefill_sm90_wgmma.yaml", "prefill-sm90-wgmma", Op::prefill, Arch::sm90a, 136, 1016},
      {"backward_sm90.yaml", "backward-sm90", Op::backward, Arch::sm90a, 72, 120},
      {"backward_sm80.yaml", "backward-sm80", Op::backward, Arch::sm80, 36, 12},
      {"backward_sm90_wgmma.yaml", "backward-sm90-wgmma", Op::backward, Arch::sm90a, 38, 10},
  };
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(kSpecs))
    if (e.path().extension() == ".yaml") files.insert(e.path().filename().string());
  for (const auto& w : wants) {
    INFO(w.file);
    CHECK(files.count(w.file) == 1);
    KernelSpec s = load_spec(kSpecs / w.file);
    CHECK(s.name == w.name);
    CHECK(s.op == w.op);
    CHECK(s.archs == std::vector<Arch>{w.arch});
    CHECK(s.families.size() == 3);
    CHECK(s.dtypes == std::vector<DType>{DType::bf16, DType::fp16});
    CHECK(s.head_dims == std::vector<int>{64, 128});
    CHECK(!s.qk_scale);
    CHECK(s.source == (kSpecs / w.file).string());
    ExpandResult r = expand(s);
    CHECK(r.variants.size() == w.legal);
    CHECK(r.dropped.size() == w.dropped);
    CHECK(r.variants.size() >= 24);
    CHECK(r.variants.size() <= 144);  // every one is NVRTC-compiled in CI (~1 s each on 2 cores)
    for (const auto& v : r.variants) {
      INFO(v.name());
      CHECK(!why_illegal(v));
      CHECK(v.op == w.op);
      auto back = parse_variant_name(v.name());
      REQUIRE(back);
      CHECK(*back == v);
      if (v.op == Op::prefill) CHECK(v.tile.split_kv == 1);
    }
    for (const auto& d : r.dropped) {
      INFO(d.v.name());
      CHECK(one_line(d.reason));
      CHECK(why_illegal(d.v) == d.reason);
      auto back = parse_variant_name(d.v.name());
      REQUIRE(back);
      CHECK(*back == d.v);
    }
  }
  // decode_sm90 keeps its GQA groups and window widths for tuning buckets and tests.
  KernelSpec d = load_spec(kSpecs / "decode_sm90.yaml");
  CHECK(d.gqa == std::vector<int>{1, 2, 4, 8});
  CHECK(d.windows == std::vector<int>{-1, 256});
  CHECK(d.window_flags() == std::vector<bool>{false, true});
  CHECK(d.tile.split_kv == std::vector<int>{0});
  CHECK(d.tile.block_n == std::vector<int>{64});
  CHECK(d.tile.stages == std::vector<int>{2, 3, 4});
  CHECK(load_spec(kSpecs / "decode_sm80.yaml").tile.stages == std::vector<int>{2, 3});
}

TEST_CASE("the backward specs drop exactly the combinations their headers name", "[spec]") {
  for (const char* f : {"backward_sm90.yaml", "backward_sm80.yaml"}) {
    INFO(f);
    for (const auto& d : expand(load_spec(kSpecs / f)).dropped) {
      INFO(d.v.name() << ": " << d.reason);
      const bool rows = d.v.tile.block_m != 16 * d.v.tile.warps &&
                        d.reason.find("must be 16 x warps") != std::string::npos;
      const bool regs = d.v.tile.block_m == 16 * d.v.tile.warps && d.v.head_dim == 128 && d.v.tile.block_n == 64 &&
                        d.reason.find("exceed 176 (spills)") != std::string::npos;
      CHECK((rows || regs));
    }
  }
}

TEST_CASE("the prefill specs drop exactly the combinations their headers name", "[spec]") {
  for (const char* f : {"prefill_sm90.yaml", "prefill_sm80.yaml"}) {
    INFO(f);
    for (const auto& d : expand(load_spec(kSpecs / f)).dropped) {
      INFO(d.v.name() << ": " << d.reason);
      bool softmax_rows = d.v.family == Family::softmax && d.reason.find("not a multiple of warps 8") != std::string::npos;
      bool parallax_regs = d.v.family != Family::softmax && d.v.tile.block_m == 128 &&
                           d.reason.find("floats/thread exceed") != std::string::npos;
      // 2+ m-tiles per warp at d 128: accumulators + scores past the 160-float budget.
      const int mt = d.v.tile.block_m / d.v.tile.warps / rows_per_tile(d.v.family);
      bool spill_budget = d.v.head_dim == 128 && mt >= 2 &&
                          d.reason.find("floats/thread exceed 160 (spills)") != std::string::npos;
      CHECK((softmax_rows || parallax_regs || spill_budget));
    }
  }
}

TEST_CASE("legality of the wgmma backward (backward_sm90.cuh)", "[spec][legality]") {
  auto v = parse_variant_name("plx_backward_parallax_bf16_d128_causal_m128_n32_w12_s2_k1_wgmma_sm90a");
  REQUIRE(v);
  CHECK(v->op == Op::backward);
  CHECK(v->tile.mma == Mma::wgmma);
  CHECK(!why_illegal(*v));
  // 1024 align + dQ/dR (3 x 128 x 128 x 2 own + 2 stages x K, V x 32 x 128 x 2) + 2 x 2 barriers.
  CHECK(smem_bytes(*v) == 1024 + 98304 + 32768 + 32);
  auto with = [&](auto f) {
    Variant w = *v;
    f(w);
    return why_illegal(w).value_or("");
  };
  CHECK(with([](Variant& w) { w.arch = Arch::sm80; }) == "mma wgmma: wgmma needs sm_90a (arch is sm_80)");
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pp; }).empty());
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe_pp; }) ==
        "backward: mma wgmma-pipe-pp not implemented (the pipelined loop takes no ping-pong turns)");
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pp; w.tile.block_m = 64; w.tile.warps = 8; }) ==
        "mma wgmma-pp: ping-pong needs a second consumer warpgroup to hand turns to (block_m 64 is one)");
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe; }) ==
        "mma wgmma-pipe: the pipelined backward loop at head_dim 128 spills for the parallax family at block_n 32 "
        "(868 B per thread measured)");
  CHECK(with([](Variant& w) { w.family = Family::softmax; w.tile.block_n = 64; w.window = true; }) ==
        "mma wgmma: the plain backward loop at head_dim 128 spills for the softmax family at block_n 64 with a "
        "window (28 B per thread measured)");
  CHECK(!with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe; w.family = Family::softmax; w.tile.block_n = 64; })
             .empty());
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe; w.family = Family::softmax; }).empty());
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe; w.head_dim = 64; }).empty());
  CHECK(with([](Variant& w) { w.tile.warps = 8; }) ==
        "mma wgmma: warps 8 must be 4 x (2 consumer warpgroups + 1 producer) = 12");
  CHECK(with([](Variant& w) { w.tile.block_m = 96; }) ==
        "mma wgmma: block_m 96 is not 1, 2 or 3 consumer warpgroups of 64 rows (queries or keys)");
  CHECK(with([](Variant& w) { w.tile.block_n = 48; }) ==
        "mma wgmma: block_n 48 not in {32, 64} (the wgmma N of the score tiles; 128 spills)");
  CHECK(with([](Variant& w) { w.tile.block_n = 128; w.family = Family::softmax; w.head_dim = 64; }) ==
        "mma wgmma: block_n 128 not in {32, 64} (the wgmma N of the score tiles; 128 spills)");
  CHECK(with([](Variant& w) { w.tile.stages = 1; }) ==
        "mma wgmma: stages 1 not in 2..4 (one ring slot filling while another is consumed)");
  CHECK(with([](Variant& w) { w.tile.block_n = 64; }) ==
        "mma wgmma: backward accumulators 128 + scores 3 x block_n 64 / 2 + 40 = 264 registers per consumer thread "
        "exceed the 232 that 2 consumer warpgroups get");
  CHECK(with([](Variant& w) { w.tile.block_n = 64; w.family = Family::softmax; }).empty());  // 128 + 64 + 40
  CHECK(with([](Variant& w) { w.tile.block_n = 64; w.head_dim = 64; }).empty());  // 64 + 96 + 40 = 200
  CHECK(with([](Variant& w) { w.tile.stages = 4; }).empty());  // 166976 B
  CHECK(with([](Variant& w) { w.head_dim = 64; w.tile.block_m = 192; w.tile.warps = 16; }).empty());  // 152
  CHECK(with([](Variant& w) { w.tile.block_m = 192; w.tile.warps = 16; }).find("exceed the 152") != std::string::npos);
  // The mma.sync backward's rules are unchanged for mma sync (4 or 8 warps of 16 rows).
  Variant s = *v;
  s.tile.mma = Mma::sync;
  CHECK(why_illegal(s) == "warps 12 not in {1, 2, 4, 8}");
  s.tile.warps = 8;
  CHECK(!why_illegal(s));
}

// ---------------------------------------------------------------------------------------
// The language
// ---------------------------------------------------------------------------------------

TEST_CASE("scalars and one-element lists mean the same", "[spec]") {
  KernelSpec a = parse_spec(
      "op: decode\nvariant: softmax\ndtype: fp16\nhead_dim: 64\ncausal: false\nwindow: 128\n"
      "gqa: 4\narch: sm80\ntile:\n  block_m: 16\n  block_n: 64\n  warps: 4\n  stages: 3\n  split_kv: 2\n",
      "a.yaml");
  KernelSpec b = parse_spec(
      "op: decode\nvariant: [softmax]\ndtype: [fp16]\nhead_dim: [64]\ncausal: [false]\nwindow: [128]\n"
      "gqa: [4]\narch: [sm_80]\ntile: {block_m: [16], block_n: [64], warps: [4], stages: [3], split_kv: [2]}\n",
      "a.yaml");
  CHECK(a == b);
  CHECK(a.families == std::vector<Family>{Family::softmax});
  CHECK(a.causal == std::vector<bool>{false});
  CHECK(a.windows == std::vector<int>{128});
  CHECK(a.window_flags() == std::vector<bool>{true});
  CHECK(a.archs == std::vector<Arch>{Arch::sm80});
  CHECK(a.tile.split_kv == std::vector<int>{2});
  CHECK(a.name == "a");
}

TEST_CASE("defaults: name from the stem, gqa 1, causal, no window, auto scale, per-op tiles", "[spec]") {
  KernelSpec d = parse_spec(kHead, "some/dir/my_family.yaml");
  CHECK(d.name == "my_family");
  CHECK(d.source == "some/dir/my_family.yaml");
  CHECK(d.gqa == std::vector<int>{1});
  CHECK(d.causal == std::vector<bool>{true});
  CHECK(d.windows == std::vector<int>{-1});
  CHECK(!d.qk_scale);
  CHECK(d.qk_scale_for(128) == Approx(1.0 / std::sqrt(128.0)));
  CHECK(d.qk_scale_for(64) == Approx(0.125));
  CHECK(d.tile == TileAxes{{16}, {64}, {4}, {2}, {0}});
  CHECK(expand(d).variants.size() == 1);

  KernelSpec p = parse_spec("op: prefill\nvariant: softmax\ndtype: bf16\nhead_dim: 64\narch: sm_90a\n", "p.yaml");
  CHECK(p.tile == TileAxes{{64}, {64}, {4}, {2}, {1}});
  CHECK(expand(p).variants.size() == 1);

  KernelSpec named = parse_spec("name: fam_1.v-2\n" + kHead, "x.yaml");
  CHECK(named.name == "fam_1.v-2");
  // Aliases of the enums are accepted.
  KernelSpec alias = parse_spec(
      "op: decode\nvariant: [parallax-uncentered]\ndtype: [bfloat16, half]\nhead_dim: 64\narch: [sm90a]\n", "x");
  CHECK(alias.families == std::vector<Family>{Family::parallax_uncentered});
  CHECK(alias.dtypes == std::vector<DType>{DType::bf16, DType::fp16});
}

TEST_CASE("qk_scale: auto or a positive finite float", "[spec]") {
  CHECK(parse_spec(kHead + "qk_scale: 0.125\n", "t").qk_scale == 0.125);
  CHECK(parse_spec(kHead + "qk_scale: 1\n", "t").qk_scale == 1.0);
  CHECK(parse_spec(kHead + "qk_scale: 2.5e-1\n", "t").qk_scale_for(128) == 0.25);
  CHECK(!parse_spec(kHead + "qk_scale: auto\n", "t").qk_scale);
  for (const char* bad : {".nan", ".NaN", ".inf", "-.inf", "+.Inf", "nan", "inf", "infinity"}) {
    INFO(bad);
    std::string e = error_of(kHead + "qk_scale: " + bad + "\n");
    CHECK(e.rfind("t.yaml:6:11: key 'qk_scale': got '", 0) == 0);
    CHECK(e.find("NaN and inf are not allowed") != std::string::npos);
  }
  for (const char* bad : {"0", "-0.5", "1e30", "1e400", "abc", "0x10", "1.0.0", "''", "\"0.1\""}) {
    INFO(bad);
    std::string e = error_of(kHead + "qk_scale: " + bad + "\n");
    CHECK(e.rfind("t.yaml:6:11: key 'qk_scale': got ", 0) == 0);
    CHECK(e.find("expected auto or a positive finite float") != std::string::npos);
  }
  CHECK(error_of(kHead + "qk_scale: [0.1]\n") ==
        "t.yaml:6:11: key 'qk_scale': got a list, expected auto or a positive finite float in 1e-06..1e+06");
  CHECK(error_of(kHead + "qk_scale:\n") ==
        "t.yaml:6:1: key 'qk_scale': got nothing, expected auto or a positive finite float in 1e-06..1e+06");
}

TEST_CASE("ranges: step 1, step, mul, inside lists, block style", "[spec]") {
  auto tile = [](const std::string& body) { return parse_spec(kHead + "tile:\n" + body, "r.yaml").tile; };
  CHECK(tile("  stages: {from: 2, to: 4}\n").stages == std::vector<int>{2, 3, 4});
  CHECK(tile("  stages: {from: 3, to: 3}\n").stages == std::vector<int>{3});
  CHECK(tile("  block_n: {from: 16, to: 64, step: 16}\n").block_n == std::vector<int>{16, 32, 48, 64});
  CHECK(tile("  block_n: {from: 32, to: 128, mul: 2}\n").block_n == std::vector<int>{32, 64, 128});
  // `to` is a bound, not necessarily a value.
  CHECK(tile("  block_n: {from: 16, to: 100, mul: 2}\n").block_n == std::vector<int>{16, 32, 64});
  CHECK(tile("  block_n: {from: 16, to: 100, step: 32}\n").block_n == std::vector<int>{16, 48, 80});
  CHECK(tile("  block_n: {from: 16, to: 1024, mul: 4}\n").block_n == std::vector<int>{16, 64, 256, 1024});
  CHECK(tile("  block_n: [16, {from: 64, to: 256, mul: 2}]\n").block_n == std::vector<int>{16, 64, 128, 256});
  CHECK(tile("  warps:\n    from: 1\n    to: 8\n    mul: 2\n").warps == std::vector<int>{1, 2, 4, 8});
  CHECK(tile("  split_kv: [auto, {from: 2, to: 8, mul: 2}]\n").split_kv == std::vector<int>{0, 2, 4, 8});
  CHECK(parse_spec(kHead + "window: [-1, {from: 128, to: 512, mul: 2}]\n", "w").windows ==
        std::vector<int>{-1, 128, 256, 512});
  CHECK(parse_spec("op: decode\nvariant: parallax\ndtype: bf16\narch: sm_80\nhead_dim: {from: 64, to: 128, step: 64}\n", "w").head_dims == std::vector<int>{64, 128});
  // A 4096-value range is the most allowed.
  CHECK(parse_spec(kHead + "gqa: 1\nwindow: {from: 1, to: 4096}\n", "w").windows.size() == 4096);
}

// ---------------------------------------------------------------------------------------
// Errors: FILE:LINE:COL, key path, the bad value, the expectation
// ---------------------------------------------------------------------------------------

TEST_CASE("bad tile values name file:line:col, key, value and expectation", "[spec][errors]") {
  // "  block_n: [64, 0]": the 0 sits in column 17 of line 7.
  CHECK(error_of(kHead + "tile:\n  block_n: [64, 0]\n") ==
        "t.yaml:7:17: key 'tile.block_n': got '0', expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: 2048\n") ==
        "t.yaml:7:12: key 'tile.block_n': got '2048', expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: 40\n") ==
        "t.yaml:7:12: key 'tile.block_n': got '40', expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: 64.0\n") ==
        "t.yaml:7:12: key 'tile.block_n': got '64.0', expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: \"64\"\n") ==
        "t.yaml:7:12: key 'tile.block_n': got '\"64\"', expected a positive integer multiple of 16 in 16..1024 (unquoted)");
  CHECK(error_of(kHead + "tile:\n  warps: 17\n") == "t.yaml:7:10: key 'tile.warps': got '17', expected an integer in 1..16");
  CHECK(error_of(kHead + "tile:\n  warps: 0\n") == "t.yaml:7:10: key 'tile.warps': got '0', expected an integer in 1..16");
  CHECK(error_of(kHead + "tile:\n  stages: 9\n") == "t.yaml:7:11: key 'tile.stages': got '9', expected an integer in 1..8");
  CHECK(error_of(kHead + "tile:\n  stages: -2\n") == "t.yaml:7:11: key 'tile.stages': got '-2', expected an integer in 1..8");
  CHECK(error_of(kHead + "tile:\n  block_m: 12\n") ==
        "t.yaml:7:12: key 'tile.block_m': got '12', expected a positive integer multiple of 8 in 8..1024");
  CHECK(error_of(kHead + "tile:\n  split_kv: 0\n") ==
        "t.yaml:7:13: key 'tile.split_kv': got '0', expected auto or a positive split count in 1..1024");
  CHECK(error_of(kHead + "tile:\n  split_kv: automatic\n") ==
        "t.yaml:7:13: key 'tile.split_kv': got 'automatic', expected auto or a positive split count in 1..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: [64, [128]]\n") ==
        "t.yaml:7:17: key 'tile.block_n': got a list inside the list, expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile: [16]\n") ==
        "t.yaml:6:7: key 'tile': got a list, expected a mapping of block_m, block_n, warps, stages, split_kv, mma, loader");
  CHECK(error_of(kHead + "tile:\n") ==
        "t.yaml:6:1: key 'tile': got nothing, expected a mapping of block_m, block_n, warps, stages, split_kv, mma, loader");
}

TEST_CASE("split_kv other than auto/1 is refused for prefill", "[spec][errors]") {
  std::string head = "op: prefill\nvariant: softmax\ndtype: bf16\nhead_dim: 64\narch: sm_80\n";
  CHECK(error_of(head + "tile:\n  split_kv: [1, 4]\n") ==
        "t.yaml:7:17: key 'tile.split_kv': got '4', expected auto or 1 (prefill does not split the keys)");
  // auto and 1 are the same kernel for prefill: one variant, named k1.
  auto r = expand(parse_spec(head + "tile:\n  split_kv: [auto, 1]\n", "p"));
  REQUIRE(r.variants.size() == 1);
  CHECK(r.variants[0].tile.split_kv == 1);
  CHECK(r.variants[0].name() == "plx_prefill_softmax_bf16_d64_causal_m64_n64_w4_s2_k1_sm80");
}

TEST_CASE("huge, negative and non-integer numbers", "[spec][errors]") {
  CHECK(error_of("op: decode\nvariant: parallax\ndtype: bf16\nhead_dim: 99999999999\narch: sm_90a\n") ==
        "t.yaml:4:11: key 'head_dim': got '99999999999', expected a positive integer multiple of 8 in 8..512");
  for (const char* v : {"1e30", "-64", "0", "1000", "0x40", "64abc", "+-64", "12.5", "true", "~x"}) {
    INFO(v);
    std::string e = error_of("op: decode\nvariant: parallax\ndtype: bf16\nhead_dim: " + std::string(v) + "\narch: sm_90a\n");
    CHECK(e == "t.yaml:4:11: key 'head_dim': got '" + std::string(v) +
                   "', expected a positive integer multiple of 8 in 8..512");
  }
  CHECK(error_of(kHead + "gqa: [1, 0]\n") ==
        "t.yaml:6:10: key 'gqa': got '0', expected a GQA group size (heads_q / heads_kv), an integer in 1..256");
  CHECK(error_of(kHead + "window: [-1, 0]\n") ==
        "t.yaml:6:14: key 'window': got '0', expected -1 (no window) or a window width in keys in 1..16777216");
  CHECK(error_of(kHead + "window: -2\n") ==
        "t.yaml:6:9: key 'window': got '-2', expected -1 (no window) or a window width in keys in 1..16777216");
  CHECK(error_of(kHead + "window: 99999999999999999999999\n").rfind("t.yaml:6:9: key 'window': got '9999", 0) == 0);
}

TEST_CASE("wrong enum values and types", "[spec][errors]") {
  CHECK(error_of("op: train\n") == "t.yaml:1:5: key 'op': got 'train', expected one of decode | prefill | backward (one op per spec)");
  CHECK(error_of("op: [decode, prefill]\n") ==
        "t.yaml:1:5: key 'op': got a list, expected one of decode | prefill | backward (one op per spec)");
  CHECK(error_of("op: decode\nvariant: [parallax, lla]\n") ==
        "t.yaml:2:21: key 'variant': got 'lla', expected one of parallax | softmax | parallax_uncentered");
  CHECK(error_of("op: decode\ndtype: fp32\n") == "t.yaml:2:8: key 'dtype': got 'fp32', expected one of bf16 | fp16");
  CHECK(error_of("op: decode\ndtype: {a: 1}\n") == "t.yaml:2:8: key 'dtype': got a mapping, expected one of bf16 | fp16");
  CHECK(error_of("op: decode\narch: sm_75\n") == "t.yaml:2:7: key 'arch': got 'sm_75', expected one of sm_80 | sm_90a");
  CHECK(error_of(kHead + "causal: yes\n") == "t.yaml:6:9: key 'causal': got 'yes', expected true or false");
  CHECK(error_of(kHead + "causal: [true, \"false\"]\n") ==
        "t.yaml:6:16: key 'causal': got '\"false\"', expected true or false");
  CHECK(error_of(kHead + "gqa: !!int 4\n").find("t.yaml:6:6: key 'gqa': got '4' with the tag 'tag:yaml.org,2002:int', expected") !=
        std::string::npos);
  CHECK(error_of("name: 'a b'\n" + kHead) ==
        "t.yaml:1:7: key 'name': got '\"a b\"', expected a name of 1..64 characters from A-Z a-z 0-9 _ . -");
  CHECK(error_of("name: [x]\n" + kHead) ==
        "t.yaml:1:7: key 'name': got a list, expected a name of 1..64 characters from A-Z a-z 0-9 _ . -");
}

TEST_CASE("unknown keys at the top level, in tile and in ranges", "[spec][errors]") {
  CHECK(error_of(kHead + "heads: 4\n") ==
        "t.yaml:6:1: key 'heads': got an unknown key, expected one of name, op, variant, dtype, head_dim, gqa, "
        "causal, window, qk_scale, arch, tile");
  CHECK(error_of(kHead + "tile:\n  block_m: 16\n  blok_n: 64\n") ==
        "t.yaml:8:3: key 'tile.blok_n': got an unknown key, expected one of block_m, block_n, warps, stages, split_kv, mma, loader");
  CHECK(error_of(kHead + "tile:\n  stages: {from: 2, to: 4, stride: 1}\n") ==
        "t.yaml:7:28: key 'tile.stages.stride': got an unknown key, expected one of from, to, step, mul");
  CHECK(error_of(kHead + "window: {from: 1, too: 4}\n") ==
        "t.yaml:6:19: key 'window.too': got an unknown key, expected one of from, to, step, mul");
  CHECK(error_of(kHead + "? [a]\n: 1\n").rfind("t.yaml:6:3: key '(top level)': got a list as a key", 0) == 0);
  // Keys are case-sensitive.
  CHECK(error_of(kHead + "Tile: {}\n").rfind("t.yaml:6:1: key 'Tile': got an unknown key", 0) == 0);
}

TEST_CASE("duplicates, empty lists, missing keys", "[spec][errors]") {
  CHECK(error_of(kHead + "dtype: fp16\n") == "t.yaml:6:1: key 'dtype': got the key a second time (first at 3:1), expected each key once");
  CHECK(error_of(kHead + "tile:\n  warps: 4\n  warps: 8\n") ==
        "t.yaml:8:3: key 'tile.warps': got the key a second time (first at 7:3), expected each key once");
  CHECK(error_of(kHead + "tile: {stages: {from: 1, to: 2, to: 3}}\n") ==
        "t.yaml:6:33: key 'tile.stages.to': got the key a second time (first at 6:26), expected each key once");
  CHECK(error_of("op: decode\ndtype: [bf16, fp16, bf16]\n") ==
        "t.yaml:2:21: key 'dtype': got 'bf16' again (first at 2:9), expected each value once");
  CHECK(error_of("op: decode\ndtype: [bf16, bfloat16]\n") ==
        "t.yaml:2:15: key 'dtype': got 'bfloat16' again (first at 2:9), expected each value once");
  CHECK(error_of(kHead + "tile:\n  stages: [2, {from: 1, to: 3}]\n") ==
        "t.yaml:7:15: key 'tile.stages': got '2' (from a range) again (first at 7:12), expected each value once");
  CHECK(error_of("op: decode\ndtype: []\n") ==
        "t.yaml:2:8: key 'dtype': got an empty list, expected at least one value (one of bf16 | fp16)");
  CHECK(error_of("op: decode\ndtype:\nvariant: softmax\n") == "t.yaml:2:1: key 'dtype': got nothing, expected one of bf16 | fp16");
  CHECK(error_of("op: decode\ndtype: [bf16, ~]\n") == "t.yaml:2:15: key 'dtype': got an empty list item, expected one of bf16 | fp16");
  CHECK(error_of("variant: softmax\n") == "t.yaml:1:1: key 'op': got no value (the key is missing), expected one of decode | prefill | backward (one op per spec)");
  CHECK(error_of("op: decode\nvariant: softmax\ndtype: bf16\nhead_dim: 64\n") ==
        "t.yaml:1:1: key 'arch': got no value (the key is missing), expected one of sm_80 | sm_90a");
  CHECK(error_of("op: decode\nvariant: softmax\narch: sm_80\nhead_dim: 64\n") ==
        "t.yaml:1:1: key 'dtype': got no value (the key is missing), expected one of bf16 | fp16");
}

TEST_CASE("bad ranges", "[spec][errors]") {
  CHECK(error_of(kHead + "tile:\n  stages: {from: 4, to: 2}\n") ==
        "t.yaml:7:25: key 'tile.stages.to': got '2', expected a value >= from (4)");
  CHECK(error_of(kHead + "tile:\n  stages: {from: 2}\n") ==
        "t.yaml:7:11: key 'tile.stages.to': got no value (the key is missing), expected the last value of the range");
  CHECK(error_of(kHead + "tile:\n  stages: {}\n") ==
        "t.yaml:7:11: key 'tile.stages.from': got no value (the key is missing), expected the first value of the range");
  CHECK(error_of(kHead + "tile:\n  block_n: {from: 16, to: 64, step: 16, mul: 2}\n") ==
        "t.yaml:7:41: key 'tile.block_n.mul': got both step and mul, expected at most one of step or mul");
  CHECK(error_of(kHead + "tile:\n  block_n: {from: 16, to: 64}\n") ==
        "t.yaml:7:12: key 'tile.block_n': got '17' from the range, expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: {from: 0, to: 64, step: 16}\n") ==
        "t.yaml:7:19: key 'tile.block_n.from': got '0', expected a positive integer multiple of 16 in 16..1024");
  CHECK(error_of(kHead + "tile:\n  block_n: {from: 16, to: 64, step: 0}\n") ==
        "t.yaml:7:37: key 'tile.block_n.step': got '0', expected a positive integer step");
  CHECK(error_of(kHead + "tile:\n  block_n: {from: 16, to: 64, mul: 1}\n") ==
        "t.yaml:7:36: key 'tile.block_n.mul': got '1', expected an integer factor in 2..1024");
  CHECK(error_of(kHead + "window: {from: -1, to: 64, mul: 2}\n") ==
        "t.yaml:6:16: key 'window.from': got '-1', expected a positive start for a mul range");
  CHECK(error_of(kHead + "window: {from: 1, to: 100000}\n") ==
        "t.yaml:6:9: key 'window': got a range of 100000 values, expected at most 4096 values");
  CHECK(error_of(kHead + "window: {from: 1, to: 99999999999}\n").rfind(
            "t.yaml:6:23: key 'window.to': got '99999999999', expected an integer bound in -1..16777216", 0) == 0);
  CHECK(error_of(kHead + "tile:\n  block_n: {from: 16, to: 2048, mul: 2}\n") ==
        "t.yaml:7:27: key 'tile.block_n.to': got '2048', expected an integer bound in 16..1024");
  CHECK(error_of(kHead + "tile:\n  stages: {from: auto, to: 3}\n") ==
        "t.yaml:7:18: key 'tile.stages.from': got 'auto', expected an integer in 1..8");
  CHECK(error_of(kHead + "dtype: {from: 1, to: 2}\n").rfind("t.yaml:6:1: key 'dtype': got the key a second time (first at 3:1)", 0) == 0);
  CHECK(error_of("op: decode\ndtype: {from: 1, to: 2}\n") == "t.yaml:2:8: key 'dtype': got a mapping, expected one of bf16 | fp16");
}

TEST_CASE("a spec that would expand to too many combinations is refused", "[spec][errors]") {
  std::string e = error_of(kHead + "tile:\n  block_m: {from: 8, to: 1024, step: 8}\n  block_n: {from: 16, to: 1024, step: 16}\n"
                                   "  warps: {from: 1, to: 16}\n");
  CHECK(e == "t.yaml:6:1: the spec expands to 131072 combinations, expected at most 65536 (split it into several specs)");
}

TEST_CASE("documents that are not a spec", "[spec][errors]") {
  CHECK(error_of("") == "t.yaml:1:1: got an empty spec, expected a mapping with at least op, variant, dtype, head_dim, arch");
  CHECK(error_of("# only a comment\n\n") ==
        "t.yaml:1:1: got an empty spec, expected a mapping with at least op, variant, dtype, head_dim, arch");
  CHECK(error_of("- op\n- decode\n") ==
        "t.yaml:1:1: key '(top level)': got a list, expected a mapping of spec keys (op, variant, dtype, head_dim, arch, tile, ...)");
  CHECK(error_of("hello\n") ==
        "t.yaml:1:1: key '(top level)': got 'hello', expected a mapping of spec keys (op, variant, dtype, head_dim, arch, tile, ...)");
  CHECK(error_of(std::string(kSpecMaxBytes + 1, '#')) ==
        "t.yaml:1:1: got a spec of 262145 bytes, expected at most 262144 bytes");
  // yaml-cpp alone would loop forever on a stray ',' at document level.
  CHECK(error_of(", softmax]\ndtype: bf16\n") ==
        "t.yaml:1:1: YAML syntax error: unexpected ',' outside any list or mapping");
  CHECK(error_of("- a\n,\n") == "t.yaml:2:1: YAML syntax error: unexpected ',' outside any list or mapping");
  CHECK(error_of(kHead + "---\n" + kHead) ==
        "t.yaml:6:1: got a second YAML document, expected one document (one kernel family) per spec");
}

TEST_CASE("YAML syntax errors become one-line SpecErrors with file:line:col", "[spec][errors]") {
  std::string e = error_of("op: decode\nvariant: [parallax, softmax\ndtype: bf16\n");
  CHECK(e.rfind("t.yaml:", 0) == 0);
  CHECK(e.find("YAML syntax error: ") != std::string::npos);
  CHECK(one_line(e));
  // A tab may not indent a block.
  e = error_of("op: decode\ntile:\n\tblock_n: 64\n");
  CHECK(e.rfind("t.yaml:3:", 0) == 0);
  CHECK(e.find("YAML syntax error") != std::string::npos);
  // "a: b: c" -> illegal map value at the second ':'.
  e = error_of("op: decode: prefill\n");
  CHECK(e.rfind("t.yaml:1:", 0) == 0);
  CHECK(e.find("YAML syntax error: illegal map value") != std::string::npos);
  e = error_of("op: decode\ndtype: " + std::string(10000, '['));
  CHECK(e.rfind("t.yaml:2:", 0) == 0);
  CHECK(e.find("YAML nesting too deep") != std::string::npos);
  e = error_of("op: decode\nvariant: \"unterminated\n");
  CHECK(e.rfind("t.yaml:", 0) == 0);
  CHECK(one_line(e));
}

TEST_CASE("load_spec names the path of a missing or unreadable file", "[spec][errors]") {
  fs::path missing = fs::path(PLX_BINARY_DIR) / "no-such-dir" / "missing.yaml";
  try {
    load_spec(missing);
    FAIL("no error");
  } catch (const SpecError& e) {
    std::string m = e.what();
    CHECK(m.rfind(missing.string() + ": cannot open the spec file", 0) == 0);
    CHECK(one_line(m));
  }
  try {
    load_spec(fs::path(PLX_BINARY_DIR));
    FAIL("no error");
  } catch (const SpecError& e) {
    CHECK(std::string(e.what()) == std::string(PLX_BINARY_DIR) + ": cannot open the spec file: it is a directory");
  }
  fs::path dir = fs::path(PLX_BINARY_DIR) / "test_spec_tmp";
  fs::create_directories(dir);
  fs::path bad = dir / "bad_block_n.yaml";
  std::ofstream(bad) << kHead << "tile:\n  block_n: [64, 0]\n";
  try {
    load_spec(bad);
    FAIL("no error");
  } catch (const SpecError& e) {
    CHECK(std::string(e.what()) == bad.string() +
          ":7:17: key 'tile.block_n': got '0', expected a positive integer multiple of 16 in 16..1024");
  }
  fs::path good = dir / "good_one.yaml";
  std::ofstream(good) << kHead;
  CHECK(load_spec(good).name == "good_one");
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------
// Expansion and legality
// ---------------------------------------------------------------------------------------

namespace {
ExpandResult expand_text(const std::string& text) { return expand(parse_spec(text, "e.yaml")); }
std::string only_reason(const ExpandResult& r) {
  REQUIRE(r.variants.empty());
  REQUIRE(r.dropped.size() == 1);
  return r.dropped[0].reason;
}
}  // namespace

TEST_CASE("expansion is the cross product, in a fixed order", "[expand]") {
  auto r = expand_text(
      "op: decode\nvariant: [softmax, parallax]\ndtype: [fp16, bf16]\nhead_dim: [128, 64]\ncausal: [true, false]\n"
      "window: [-1, 256, 512]\narch: [sm_90a, sm_80]\ntile:\n  block_n: [64, 128]\n  stages: [2, 3]\n  split_kv: [auto, 4]\n");
  // 2 families x 2 dtypes x 2 d x 2 causal x 2 window flags x 2 block_n x 2 stages x 2 split x 2 arch;
  // d 128 x block_n 128 x stages 3 = 196608 B of smem is too much for sm_80 only:
  // 2 x 2 x 1 x 2 x 2 x 1 x 1 x 2 x 1 = 32 dropped.
  CHECK(r.variants.size() + r.dropped.size() == 512);
  CHECK(r.dropped.size() == 32);
  for (const auto& d : r.dropped) {
    CHECK_THAT(d.reason, Catch::Matches("smem 20[0-9]{4} B \\(K/V ring: stages 3 x block_n 128 x d 128 x K\\+V x 2 B = "
                                        "196608 B, plus Q tiles or the warp merge buffer\\) exceeds sm_80's 166912 B"));
  }
  const Variant& first = r.variants.front();
  CHECK(first.name() == "plx_decode_softmax_fp16_d128_causal_m16_n64_w4_s2_kauto_sm90a");
  CHECK(r.variants[1].name() == "plx_decode_softmax_fp16_d128_causal_m16_n64_w4_s2_kauto_sm80");
  CHECK(r.variants[2].name() == "plx_decode_softmax_fp16_d128_causal_m16_n64_w4_s2_k4_sm90a");
  CHECK(r.variants.back().name() == "plx_decode_parallax_bf16_d64_full-win_m16_n128_w4_s3_k4_sm80");
  std::set<std::string> names;
  for (const auto& v : r.variants) names.insert(v.name());
  for (const auto& d : r.dropped) names.insert(d.v.name());
  CHECK(names.size() == 512);
}

TEST_CASE("expansion is deterministic and round-trips through names", "[expand]") {
  const std::string text = "op: prefill\nvariant: [parallax_uncentered, softmax, parallax]\ndtype: [bf16, fp16]\n"
                           "head_dim: [64, 128, 256]\ncausal: [true, false]\narch: [sm_80, sm_90a]\n"
                           "tile:\n  block_m: {from: 32, to: 128, mul: 2}\n  block_n: [32, 64, 128]\n"
                           "  warps: [2, 4, 8]\n  stages: {from: 1, to: 4}\n";
  KernelSpec a = parse_spec(text, "d.yaml"), b = parse_spec(text, "d.yaml");
  CHECK(a == b);
  ExpandResult x = expand(a), y = expand(b);
  REQUIRE(x.variants.size() == y.variants.size());
  REQUIRE(x.dropped.size() == y.dropped.size());
  for (size_t i = 0; i < x.variants.size(); ++i) CHECK(x.variants[i] == y.variants[i]);
  for (size_t i = 0; i < x.dropped.size(); ++i) {
    CHECK(x.dropped[i].v == y.dropped[i].v);
    CHECK(x.dropped[i].reason == y.dropped[i].reason);
  }
  CHECK(!x.variants.empty());
  CHECK(x.variants.size() + x.dropped.size() == 3 * 2 * 3 * 2 * 2 * 3 * 3 * 3 * 4);
  for (const auto& v : x.variants) {
    auto back = parse_variant_name(v.name());
    REQUIRE(back);
    CHECK(*back == v);
    CHECK(v.head_dim != 256);
  }
  size_t d256 = 0;
  for (const auto& d : x.dropped) {
    auto back = parse_variant_name(d.v.name());
    REQUIRE(back);
    CHECK(*back == d.v);
    CHECK(one_line(d.reason));
    if (d.v.head_dim == 256) {
      ++d256;
      CHECK(d.reason == "head_dim 256: no template for head_dim 256 yet (templates cover 64 and 128)");
    }
  }
  CHECK(d256 == 3 * 2 * 2 * 2 * 3 * 3 * 3 * 4);
}

TEST_CASE("duplicates collapse: window widths, prefill split auto/1, repeated axes", "[expand]") {
  // Widths 128/256/512 all compile to the same window kernel.
  auto r = expand_text(kHead + "window: [128, -1, 256, 512]\n");
  REQUIRE(r.variants.size() == 2);
  CHECK(r.variants[0].window);
  CHECK(!r.variants[1].window);
  // A hand-built spec with repeated values still yields unique variants.
  KernelSpec s = parse_spec(kHead, "s.yaml");
  s.families = {Family::parallax, Family::parallax, Family::softmax};
  s.dtypes = {DType::bf16, DType::bf16};
  s.tile.split_kv = {0, 0, 2};
  auto e = expand(s);
  CHECK(e.variants.size() == 4);
  std::set<std::string> names;
  for (const auto& v : e.variants) names.insert(v.name());
  CHECK(names.size() == 4);
}

TEST_CASE("dropped reasons name the rule and the numbers", "[expand][legality]") {
  const std::string head = "op: decode\ndtype: bf16\narch: sm_90a\n";
  CHECK(only_reason(expand_text(head + "variant: parallax\nhead_dim: 256\n")) ==
        "head_dim 256: no template for head_dim 256 yet (templates cover 64 and 128)");
  CHECK(only_reason(expand_text(head + "variant: parallax\nhead_dim: 96\n")) ==
        "head_dim 96: no template for head_dim 96 yet (templates cover 64 and 128)");
  CHECK(only_reason(expand_text(head + "variant: parallax\nhead_dim: 64\ntile: {warps: 3, block_n: 96}\n")) ==
        "warps 3 not in {1, 2, 4, 8}");
  // block_m 8: one m-tile of 8 q + 8 r rows for Parallax; not a whole m16 tile for softmax.
  auto r = expand_text(head + "variant: [parallax, softmax]\nhead_dim: 64\ntile: {block_m: 8}\n");
  REQUIRE(r.variants.size() == 1);
  CHECK(r.variants[0].family == Family::parallax);
  REQUIRE(r.dropped.size() == 1);
  CHECK(r.dropped[0].reason == "decode: block_m 8 not a multiple of 16 rows per m16 tile (softmax: 16 q rows)");
  CHECK(only_reason(expand_text(head + "variant: softmax\nhead_dim: 64\ntile: {block_n: 64, warps: 8}\n")) ==
        "decode: block_n 64 not a multiple of 16 x warps 8 = 128 (each warp takes whole k16 steps of the tile's keys)");
  CHECK(only_reason(expand_text(head + "variant: softmax\nhead_dim: 64\ntile: {block_m: 128}\n")) ==
        "decode: block_m 128 exceeds 64");
  CHECK(only_reason(expand_text(head + "variant: parallax\nhead_dim: 128\ntile: {block_m: 32}\n")) ==
        "decode: accumulators m_tiles 4 x d 128 / 2 = 256 floats/thread exceed 128");
  CHECK(expand_text(head + "variant: parallax\nhead_dim: 64\ntile: {block_m: 32}\n").variants.size() == 1);
  CHECK(only_reason(expand_text(head + "variant: softmax\nhead_dim: 128\ntile: {block_n: 512, warps: 2, stages: 1}\n")) ==
        "decode: scores m_tiles 1 x (block_n 512 / warps 2) / 2 = 128 floats/thread exceed 64");
  CHECK(only_reason(expand_text("op: decode\ndtype: bf16\narch: sm_80\nvariant: parallax\nhead_dim: 128\n"
                                "tile: {block_n: 128, stages: 4}\n")) ==
        "smem 270336 B (K/V ring: stages 4 x block_n 128 x d 128 x K+V x 2 B = 262144 B, plus Q tiles or the warp "
              "merge buffer) exceeds sm_80's 166912 B");
  CHECK(only_reason(expand_text(head + "variant: parallax\nhead_dim: 128\ntile: {block_n: 128, stages: 4}\n")) ==
        "smem 270336 B (K/V ring: stages 4 x block_n 128 x d 128 x K+V x 2 B = 262144 B, plus Q tiles or the warp "
              "merge buffer) exceeds sm_90a's 232448 B");
  // 3 x 128 x 128 x 4 = 196608 B: fits sm_90a only.
  r = expand_text("op: decode\ndtype: bf16\narch: [sm_80, sm_90a]\nvariant: parallax\nhead_dim: 128\n"
                  "tile: {block_n: 128, stages: 3}\n");
  REQUIRE(r.variants.size() == 1);
  CHECK(r.variants[0].arch == Arch::sm90a);

  const std::string pre = "op: prefill\ndtype: bf16\narch: sm_90a\n";
  CHECK(only_reason(expand_text(pre + "variant: softmax\nhead_dim: 64\ntile: {block_m: 64, warps: 8}\n")) ==
        "prefill: block_m 64 not a multiple of warps 8 x 16 rows per m16 tile (softmax: 16 q rows) = 128");
  CHECK(expand_text(pre + "variant: parallax\nhead_dim: 64\ntile: {block_m: 64, warps: 8}\n").variants.size() == 1);
  CHECK(only_reason(expand_text(pre + "variant: parallax\nhead_dim: 128\ntile: {block_m: 128, warps: 4}\n")) ==
        "prefill: accumulators m_tiles_per_warp 4 x d 128 / 2 = 256 floats/thread exceed 128");
  CHECK(only_reason(expand_text(pre + "variant: parallax\nhead_dim: 64\ntile: {block_m: 128, warps: 4, block_n: 64}\n")) ==
        "prefill: scores m_tiles_per_warp 4 x block_n 64 / 2 = 128 floats/thread exceed 64");
  // 4 m-tiles x (64 / 2 + 32 / 2) = 192 floats: within each budget, past the joint one.
  CHECK(only_reason(expand_text(pre + "variant: parallax\nhead_dim: 64\ntile: {block_m: 128, warps: 4, block_n: 32}\n")) ==
        "prefill: accumulators 128 + scores 64 = 192 floats/thread exceed 160 (spills)");
  CHECK(expand_text(pre + "variant: parallax\nhead_dim: 64\ntile: {block_m: 64, warps: 4, block_n: 32}\n").variants.size() == 1);
}

TEST_CASE("why_illegal on hand-made variants (names pasted from the command line)", "[legality]") {
  Variant ok;  // decode parallax bf16 d128 m16 n64 w4 s2 kauto sm90a
  CHECK(!why_illegal(ok));
  auto with = [&](auto f) {
    Variant v = ok;
    f(v);
    return why_illegal(v).value_or("");
  };
  CHECK(with([](Variant& v) { v.tile.stages = 0; }) == "stages 0 not in 1..8 (cp.async ring depth)");
  CHECK(with([](Variant& v) { v.tile.stages = 9; }) == "stages 9 not in 1..8 (cp.async ring depth)");
  CHECK(with([](Variant& v) { v.tile.warps = 0; }) == "warps 0 not in {1, 2, 4, 8}");
  CHECK(with([](Variant& v) { v.tile.warps = 16; }) == "warps 16 not in {1, 2, 4, 8}");
  CHECK(with([](Variant& v) { v.tile.block_n = 0; }) ==
        "block_n 0 not a positive multiple of 16 (the k16 step of the P.V MMA)");
  CHECK(with([](Variant& v) { v.tile.block_n = 40; }) ==
        "block_n 40 not a positive multiple of 16 (the k16 step of the P.V MMA)");
  CHECK(with([](Variant& v) { v.tile.block_m = 0; }) == "block_m 0 must be positive");
  CHECK(with([](Variant& v) { v.tile.block_m = 12; }) ==
        "decode: block_m 12 not a multiple of 8 rows per m16 tile (parallax: 8 q + 8 r rows)");
  CHECK(with([](Variant& v) { v.tile.split_kv = -1; }) == "split_kv -1 must be >= 0 (0 = auto)");
  CHECK(with([](Variant& v) { v.tile.split_kv = 7; }).empty());
  CHECK(with([](Variant& v) { v.op = Op::prefill; v.tile.block_m = 64; v.tile.split_kv = 4; }) ==
        "prefill: split_kv 4 must be 1 or auto (prefill does not split the keys)");
  CHECK(with([](Variant& v) { v.op = Op::prefill; v.tile.block_m = 64; v.tile.split_kv = 0; }) ==
        "prefill: accumulators 128 + scores 64 = 192 floats/thread exceed 160 (spills)");
  CHECK(with([](Variant& v) { v.op = Op::prefill; v.tile.block_m = 64; v.tile.warps = 8; v.tile.split_kv = 0; }).empty());
  CHECK(with([](Variant& v) { v.head_dim = 0; }) ==
        "head_dim 0: no template for head_dim 0 yet (templates cover 64 and 128)");
  // A name from the tools parses and checks the same way.
  auto v = parse_variant_name("plx_decode_softmax_fp16_d64_causal-win_m16_n128_w4_s3_k2_sm80");
  REQUIRE(v);
  CHECK(!why_illegal(*v));
  CHECK(ring_bytes(*v) == 3 * 128 * 64 * 4);
  CHECK(smem_bytes(*v) == 16 * 64 * 2 + 3 * 128 * 64 * 4);  // Q tile + ring (> merge buffer)
  // The worked example of legality.hpp: the decode merge buffer outgrows the ring.
  auto w = parse_variant_name("plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_sm90a");
  REQUIRE(w);
  CHECK(smem_bytes(*w) == 79360);
  CHECK(rows_per_tile(Family::softmax) == 16);
  CHECK(rows_per_tile(Family::parallax_uncentered) == 8);
}

// ---------------------------------------------------------------------------------------
// The mma axis: wgmma kernels (templates/plx/prefill_sm90.cuh)
// ---------------------------------------------------------------------------------------

TEST_CASE("the mma axis: names, spec key, legality of the wgmma prefill", "[spec][legality]") {
  // mma.sync names carry no mma field (every existing name stays valid); wgmma names do.
  auto v = parse_variant_name("plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma_sm90a");
  REQUIRE(v);
  CHECK(v->tile.mma == Mma::wgmma);
  CHECK(v->name() == "plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma_sm90a");
  CHECK(!why_illegal(*v));
  // smem: 1024 align + 2 consumers x 64 x 128 x 2 + ring 2 x 128 x 128 x 4 + 2 x 3 barriers x 8
  // + the row sums' ones block 512 + the item decoder's 48.
  CHECK(smem_bytes(*v) == 1024 + 32768 + 131072 + 512 + 48 + 48);
  auto p = parse_variant_name("plx_prefill_softmax_fp16_d64_full-win_m128_n64_w12_s3_k1_wgmma-pipe_sm90a");
  REQUIRE(p);
  CHECK(p->tile.mma == Mma::wgmma_pipe);
  CHECK(!why_illegal(*p));
  CHECK(!parse_variant_name("plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_sync_sm90a"));
  CHECK(!parse_variant_name("plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_tcgen05_sm90a"));
  auto s = parse_variant_name("plx_prefill_parallax_bf16_d128_causal_m64_n64_w8_s2_k1_sm90a");
  REQUIRE(s);
  CHECK(s->tile.mma == Mma::sync);

  auto with = [&](auto f) {
    Variant w = *v;
    f(w);
    return why_illegal(w).value_or("");
  };
  CHECK(with([](Variant& w) { w.arch = Arch::sm80; }) == "mma wgmma: wgmma needs sm_90a (arch is sm_80)");
  CHECK(with([](Variant& w) { w.op = Op::decode; }) ==
        "mma wgmma: only the prefill and backward templates use wgmma (op is decode)");
  CHECK(with([](Variant& w) { w.tile.warps = 8; }) ==
        "mma wgmma: warps 8 must be 4 x (2 consumer warpgroups + 1 producer) = 12");
  CHECK(with([](Variant& w) { w.tile.block_m = 128; }) ==
        "mma wgmma: block_m 128 is not 1, 2 or 3 consumer warpgroups of 32 queries (32 q + 32 r rows of an m64 tile)");
  CHECK(with([](Variant& w) { w.tile.block_n = 96; }) ==
        "mma wgmma: block_n 96 not in {64, 128} (the wgmma N of S = Q K^T)");
  CHECK(with([](Variant& w) { w.tile.stages = 1; }) ==
        "mma wgmma: stages 1 not in 2..4 (one ring slot filling while another is consumed)");
  CHECK(with([](Variant& w) { w.tile.block_m = 96; w.tile.warps = 16; }) ==
        "mma wgmma: O 64 + S 64 + 40 = 168 registers per consumer thread exceed the 152 that 3 consumer "
        "warpgroups get");
  CHECK(with([](Variant& w) { w.tile.block_m = 96; w.tile.warps = 16; w.tile.block_n = 64; }).empty());
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe; w.head_dim = 64; w.tile.block_m = 96; w.tile.warps = 16; }) ==
        "mma wgmma-pipe: O 32 + S 64 + P 32 + 40 = 168 registers per consumer thread exceed the 152 that 3 consumer "
        "warpgroups get");
  // Ping-pong hands turns between consumers: one consumer (softmax block_m 64) has nobody.
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pp; w.family = Family::softmax; w.tile.warps = 8; }) ==
        "mma wgmma-pp: ping-pong needs 2 or 3 consumer warpgroups; block_m 64 gives 1");
  CHECK(with([](Variant& w) { w.tile.mma = Mma::wgmma_pipe_pp; }).empty());  // parallax m64: 2 consumers
  // 3 stages at d 128, block_n 128: 1024 + 32768 + 196608 + 72 = 230472 B (fits); 4 do not.
  CHECK(with([](Variant& w) { w.tile.stages = 3; }).empty());
  CHECK(with([](Variant& w) { w.tile.stages = 4; }).find("exceeds sm_90a's 232448 B") != std::string::npos);

  // The spec key.
  const std::string pre = "op: prefill\ndtype: bf16\narch: sm_90a\nvariant: parallax\nhead_dim: 128\n";
  ExpandResult r = expand_text(pre + "tile: {block_m: 64, block_n: 128, warps: [8, 12], mma: [sync, wgmma, wgmma-pipe, "
                                     "wgmma_pp, wgmma-pipe-pp]}\n");
  std::set<std::string> names;
  for (const auto& x : r.variants) names.insert(x.name());
  CHECK(names == std::set<std::string>{"plx_prefill_parallax_bf16_d128_causal_m64_n128_w8_s2_k1_sm90a",
                                       "plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma_sm90a",
                                       "plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma-pipe_sm90a",
                                       "plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma-pp_sm90a",
                                       "plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma-pipe-pp_sm90a"});
  for (const auto& x : r.variants) CHECK(parse_variant_name(x.name()) == x);  // -pp names parse back
  CHECK(error_of(pre + "tile:\n  mma: tensor\n") ==
        "t.yaml:7:8: key 'tile.mma': got 'tensor', expected one of sync | wgmma | wgmma-pipe | wgmma-pp | wgmma-pipe-pp | wgmma-red");
}

TEST_CASE("the loader axis: names, spec key, legality of the TMA decode ring", "[spec][legality][tma]") {
  // cp.async names carry no loader field (every existing name stays valid); TMA names end
  // in _tma before the arch.
  const std::string name = "plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_tma_sm90a";
  auto v = parse_variant_name(name);
  REQUIRE(v);
  CHECK(v->tile.loader == Loader::tma);
  CHECK(v->tile.mma == Mma::sync);
  CHECK(v->name() == name);
  CHECK(!why_illegal(*v));
  // 1024 align + Q 2 x 16 x 128 x 2 + max(ring 65536, merge 71168) + 2 stages x 2 barriers x 8.
  CHECK(smem_bytes(*v) == 1024 + 8192 + 71168 + 32);
  auto c = parse_variant_name("plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_sm90a");
  REQUIRE(c);
  CHECK(c->tile.loader == Loader::cp_async);
  CHECK(smem_bytes(*c) == 8192 + 71168);
  CHECK(!parse_variant_name("plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_cp-async_sm90a"));
  CHECK(!parse_variant_name("plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_tma_tma_sm90a"));
  // Field order is mma, then loader: the reverse does not parse.
  CHECK(!parse_variant_name("plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_tma_wgmma_sm90a"));
  auto both = parse_variant_name("plx_prefill_parallax_bf16_d128_causal_m64_n128_w12_s2_k1_wgmma_tma_sm90a");
  REQUIRE(both);  // parses, and is illegal by name
  CHECK(both->tile.mma == Mma::wgmma);
  CHECK(both->tile.loader == Loader::tma);
  CHECK(why_illegal(*both) == "loader tma: only the decode template has a TMA ring (op is prefill)");

  auto with = [&](auto f) {
    Variant w = *v;
    f(w);
    return why_illegal(w).value_or("");
  };
  CHECK(with([](Variant& w) { w.arch = Arch::sm80; }) == "loader tma: bulk tensor copies need sm_90a (arch is sm_80)");
  CHECK(with([](Variant& w) { w.op = Op::backward; }) ==
        "loader tma: only the decode template has a TMA ring (op is backward)");
  CHECK(with([](Variant& w) { w.tile.block_n = 192; w.tile.warps = 4; }) ==
        "loader tma: block_n 192 not a power of two up to 256 (a tile is whole pages or part of one, and one TMA "
        "box holds at most 256 rows)");
  CHECK(with([](Variant& w) { w.tile.block_n = 512; }).find("loader tma: block_n 512 not a power of two up to 256") == 0);
  CHECK(with([](Variant& w) { w.tile.block_n = 128; }).empty());
  CHECK(with([](Variant& w) { w.tile.stages = 4; }).empty());
  CHECK(with([](Variant& w) { w.head_dim = 64; w.family = Family::softmax; }).empty());
  // The decode rules still apply on top (8 warps x 16 keys > block_n 64).
  CHECK(with([](Variant& w) { w.tile.warps = 8; }).find("decode: block_n 64 not a multiple of 16 x warps 8") == 0);

  // The spec key: decode expands both loaders; the cp.async names are unchanged.
  ExpandResult r = expand_text(kHead + "tile: {block_m: 16, stages: 3, loader: [cp_async, tma]}\n");
  std::set<std::string> names;
  for (const auto& x : r.variants) names.insert(x.name());
  CHECK(names == std::set<std::string>{"plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s3_kauto_sm90a",
                                       "plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s3_kauto_tma_sm90a"});
  for (const auto& x : r.variants) CHECK(parse_variant_name(x.name()) == x);
  CHECK(error_of(kHead + "tile:\n  loader: dma\n") ==
        "t.yaml:7:11: key 'tile.loader': got 'dma', expected one of cp_async | tma");
  // On sm_80 the TMA half is dropped with the rule's reason.
  ExpandResult a = expand_text("op: decode\nvariant: parallax\ndtype: bf16\nhead_dim: 128\narch: sm_80\n"
                               "tile: {loader: [cp_async, tma]}\n");
  REQUIRE(a.variants.size() == 1);
  REQUIRE(a.dropped.size() == 1);
  CHECK(a.dropped[0].reason == "loader tma: bulk tensor copies need sm_90a (arch is sm_80)");
  // The shipped TMA spec holds only TMA variants, the shipped cp.async specs none.
  for (const auto& x : expand(load_spec(kSpecs / "decode_sm90_tma.yaml")).variants) CHECK(x.tile.loader == Loader::tma);
  for (const char* f : {"decode_sm90.yaml", "decode_sm80.yaml"})
    for (const auto& x : expand(load_spec(kSpecs / f)).variants) CHECK(x.tile.loader == Loader::cp_async);
}
