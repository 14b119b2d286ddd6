// [gpu] Every kernel against the double-precision CPU oracle on fresh random inputs, with
// the output poisoned (NaN) before launch. Skipped, with one line saying so, on machines
// without a GPU. Reproduce a failure with PLX_SEED=<seed in the message>.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "autotune/heuristics.hpp"
#include "generator/expand.hpp"
#include "generator/legality.hpp"
#include "generator/render.hpp"
#include "generator/spec.hpp"
#include "gpu_engine.hpp"
#include "gpu_harness.hpp"
#include "gpu_varlen.hpp"
#include "runtime/jit.hpp"

using namespace plx;
using namespace plx::testing;
namespace fs = std::filesystem;

namespace {

void expect_close(Engine& e, const Case& c, const std::string& what) {
  const std::uint64_t seed = fresh_seed();
  const Comparison cmp = run_case(e, c, seed);
  INFO(fmt::format("{} | variant {} | seed {} | rel_err {:.3g} | nonfinite {} | worst {}", what,
                   c.variant.empty() ? e.variant_for(c.args) : c.variant, seed, cmp.rel_err, cmp.nonfinite,
                   cmp.worst));
  CHECK(cmp.nonfinite == 0);
  CHECK(cmp.rel_err < tolerance(c.args.dtype));
}

AttentionArgs base_args(Family f, DType dt, int d) {
  AttentionArgs a;
  a.family = f;
  a.dtype = dt;
  a.head_dim = d;
  return a;
}

constexpr Family kFamilies[] = {Family::softmax, Family::parallax, Family::parallax_uncentered};
constexpr DType kDtypes[] = {DType::bf16, DType::fp16};

// Compiles every variant of the specs for this GPU's arch in parallel threads into the
// engine's disk cache, so the tests below load rather than compile one by one.
// The build may run on another machine than it was configured on (the GPU box).
fs::path source_dir() {
  const char* env = std::getenv("PLX_SOURCE_DIR");
  return env ? fs::path(env) : fs::path(PLX_SOURCE_DIR);
}

std::vector<Variant> shipped_variants(const std::string& arch) {
  std::vector<Variant> out;
  for (const auto& e : fs::directory_iterator(source_dir() / "specs")) {
    if (e.path().extension() != ".yaml") continue;
    for (const Variant& v : expand(load_spec(e.path())).variants)  // forward kernels (test_gpu_backward: the rest)
      if (std::string(to_string(v.arch)) == arch && v.op != Op::backward) out.push_back(v);
  }
  std::sort(out.begin(), out.end(), [](const Variant& a, const Variant& b) { return a.name() < b.name(); });
  return out;
}

void warm_cache(const std::vector<Variant>& vs, const std::string& arch) {
  KernelCache cache(KernelCache::default_root());
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < vs.size();) compile_kernel(cache, render(vs[i]), arch);
    });
  for (auto& t : pool) t.join();
}

}  // namespace

TEST_CASE("every shipped variant matches the oracle", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  const auto variants = shipped_variants(e->arch());
  REQUIRE(!variants.empty());
  warm_cache(variants, e->arch());
  int i = 0;
  for (const Variant& v : variants) {
    ++i;
    AttentionArgs a = base_args(v.family, v.dtype, v.head_dim);
    a.causal = v.causal;
    const int groups[] = {1, 2, 4, 8};
    const int group = groups[i % 4];
    if (v.op == Op::decode) {
      a.batch = 2;
      a.heads_kv = 2;
      a.heads_q = 2 * group;
      a.q_len = 1 + (i % 3 == 0 ? 2 : 0);  // some multi-token (speculative) decodes
      a.kv_len = 1000 + i % 7;
    } else {
      a.batch = 1;
      a.heads_kv = 2;
      a.heads_q = 2 * group;
      a.kv_len = 300 + i % 5;
      a.q_len = i % 2 ? a.kv_len : 129;  // self-attention and chunked prefill
    }
    if (v.window) a.window_left = 100 + i % 3;
    Case c{a, {}, v.name()};
    expect_close(*e, c, fmt::format("shipped variant #{}", i));
    // Paged decode in every variant's ring schedule (its block-table staging depends on
    // the stage count): pages 16 and 32, so tiles span several pages, with live lengths.
    if (v.op == Op::decode)
      expect_close(*e, {a, {a.kv_len - 3, 17}, v.name(), 16 << (i % 2)}, fmt::format("shipped variant #{}, paged", i));
  }
}

TEST_CASE("odd lengths, decode and prefill, every family and dtype", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies)
    for (DType dt : kDtypes)
      for (int d : {64, 128}) {
        for (int L : {1, 7, 63, 65, 1000, 4097}) {
          AttentionArgs a = base_args(f, dt, d);
          a.batch = 2;
          a.heads_q = 4;
          a.heads_kv = 2;
          a.kv_len = L;
          a.q_len = 1;
          expect_close(*e, {a, {}, ""}, fmt::format("decode L={}", L));
          a.batch = 1;
          a.q_len = std::min(L, 1000);
          if (a.q_len > 16) expect_close(*e, {a, {}, ""}, fmt::format("prefill L={}", L));
        }
      }
}

TEST_CASE("every GQA ratio 1..16", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies)
    for (int g = 1; g <= 16; ++g) {
      AttentionArgs a = base_args(f, g % 2 ? DType::bf16 : DType::fp16, g % 3 ? 128 : 64);
      a.batch = 1;
      a.heads_kv = 2;
      a.heads_q = 2 * g;
      a.kv_len = 777;
      a.q_len = 1 + g % 4;  // decode with 1..4 new tokens
      expect_close(*e, {a, {}, ""}, fmt::format("decode gqa {}", g));
      a.q_len = 200;
      expect_close(*e, {a, {}, ""}, fmt::format("prefill gqa {}", g));
    }
}

TEST_CASE("split-KV on and off give the same answer as the oracle", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies)
    for (const char* k : {"k1", "k3", "k8", "kauto"}) {
      AttentionArgs a = base_args(f, DType::bf16, 128);
      a.batch = 1;
      a.heads_q = 8;
      a.heads_kv = 1;
      a.kv_len = 2049;
      Variant v = *parse_variant_name(e->variant_for(a));
      v.tile.split_kv = std::string(k) == "kauto" ? 0 : std::stoi(k + 1);
      const int splits = e->splits_for(a, v.name());
      if (v.tile.split_kv == 0) CHECK(splits > 1);  // one small problem on a big GPU: splits
      expect_close(*e, {a, {}, v.name()}, fmt::format("split {} ({} splits)", k, splits));
    }
}

// The in-kernel merge counts finished CTAs per row block on workspace counters that each
// launch must leave at zero: alternate grids of different sizes on one stream, several
// row blocks (multi-token decode), split counts past the merge's shared-memory cap.
TEST_CASE("split-KV merge counters survive changing grids on one stream", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  struct Shape { int batch, q_len, heads_q, heads_kv, kv_len, splits; const char* block_m; };
  const Shape shapes[] = {{3, 3, 16, 2, 1500, 5, "m8"},  {1, 1, 8, 8, 777, 7, "m16"},
                          {3, 3, 16, 2, 1500, 5, "m16"}, {2, 2, 4, 1, 4097, 4000, "m8"},
                          {1, 1, 8, 8, 777, 3, "m8"}};
  for (Family f : {Family::parallax, Family::softmax})
    for (const Shape& sh : shapes) {
      AttentionArgs a = base_args(f, DType::bf16, 128);
      a.batch = sh.batch;
      a.q_len = sh.q_len;
      a.heads_q = sh.heads_q;
      a.heads_kv = sh.heads_kv;
      a.kv_len = sh.kv_len;
      Variant v = *parse_variant_name(e->variant_for(a));
      v.tile.block_m = f == Family::softmax ? 16 : std::stoi(sh.block_m + 1);
      v.tile.split_kv = sh.splits;
      const int splits = e->splits_for(a, v.name());
      CHECK(splits > 1);
      expect_close(*e, {a, {}, v.name()}, fmt::format("{} splits asked, {} run", sh.splits, splits));
    }
}

TEST_CASE("sliding windows", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies)
    for (int w : {1, 5, 64, 100, 1000, 5000}) {
      AttentionArgs a = base_args(f, DType::bf16, 128);
      a.batch = 2;
      a.heads_q = 4;
      a.heads_kv = 2;
      a.kv_len = 3001;
      a.window_left = w;
      a.q_len = 1;
      expect_close(*e, {a, {}, ""}, fmt::format("decode window {}", w));
      a.q_len = 2;
      expect_close(*e, {a, {}, ""}, fmt::format("decode 2 tokens window {}", w));
      a.q_len = 3001;
      a.batch = 1;
      if (w <= 1000) expect_close(*e, {a, {}, ""}, fmt::format("prefill window {}", w));
    }
}

TEST_CASE("seqused_k with mixed live lengths, empty sequences included", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies)
    for (int win : {-1, 50}) {
      AttentionArgs a = base_args(f, DType::fp16, 128);
      a.batch = 6;
      a.heads_q = 8;
      a.heads_kv = 2;
      a.kv_len = 1500;
      a.window_left = win;
      a.q_len = 1;
      expect_close(*e, {a, {1500, 1, 0, 777, 64, 1201}, ""}, fmt::format("seqused decode win {}", win));
      a.q_len = 3;
      expect_close(*e, {a, {2, 1500, 0, 65, 1000, 3}, ""}, fmt::format("seqused 3 tokens win {}", win));
    }
}

TEST_CASE("paged KV cache: pages 16 to 256, shuffled, with live lengths", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  int i = 0;
  for (Family f : kFamilies)
    for (int page : {16, 64, 256}) {
      ++i;
      AttentionArgs a = base_args(f, i % 2 ? DType::bf16 : DType::fp16, i % 3 ? 128 : 64);
      a.batch = 4;
      a.heads_q = 8;
      a.heads_kv = 2;
      a.kv_len = 1000;
      a.q_len = 1 + i % 3;
      a.window_left = i % 4 == 0 ? 300 : -1;
      expect_close(*e, {a, {}, "", page}, fmt::format("paged decode, page {}", page));
      expect_close(*e, {a, {1000, 17, 0, 640}, "", page}, fmt::format("paged decode + seqused, page {}", page));
      a.q_len = 200;
      a.batch = 2;
      expect_close(*e, {a, {}, "", page}, fmt::format("paged prefill, page {}", page));
    }
}

TEST_CASE("fully masked rows are exactly zero, never NaN", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies) {
    // Prefill with more queries than keys, causal: the first q_len - kv_len rows see nothing.
    AttentionArgs a = base_args(f, DType::bf16, 64);
    a.heads_q = a.heads_kv = 2;
    a.q_len = 300;
    a.kv_len = 100;
    expect_close(*e, {a, {}, ""}, "prefill q_len > kv_len");
    // Every sequence empty: the whole output is 0 (checked as an absolute error).
    a.q_len = 1;
    a.batch = 3;
    expect_close(*e, {a, {0, 0, 0}, ""}, "decode, all sequences empty");
  }
}

TEST_CASE("non-causal attention and an explicit qk_scale", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  for (Family f : kFamilies) {
    AttentionArgs a = base_args(f, DType::bf16, 128);
    a.causal = false;
    a.qk_scale = 0.05f;
    a.heads_q = 4;
    a.heads_kv = 4;
    a.kv_len = 513;
    a.q_len = 200;
    expect_close(*e, {a, {}, ""}, "prefill non-causal");
    a.q_len = 1;
    expect_close(*e, {a, {}, ""}, "decode non-causal");
  }
}

TEST_CASE("bad arguments are refused before any launch", "[gpu]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  AttentionArgs a = base_args(Family::parallax, DType::bf16, 96);
  alignas(16) static char dummy[64];
  a.q = a.r = a.k = a.v = dummy;
  a.o = dummy;
  CHECK_THROWS_WITH(e->attention(a, nullptr), Catch::Contains("head_dim = 96"));
  a.head_dim = 128;
  a.heads_q = 3;
  a.heads_kv = 2;
  CHECK_THROWS_WITH(e->attention(a, nullptr), Catch::Contains("heads_q = 3"));
  a.heads_q = 2;
  a.r = nullptr;
  CHECK_THROWS_WITH(e->attention(a, nullptr), Catch::Contains("r is null"));
  a.r = dummy + 2;
  CHECK_THROWS_WITH(e->attention(a, nullptr), Catch::Contains("not 16-byte aligned"));
  a.r = dummy;
  a.page_size = 48;
  a.max_pages = 1;
  CHECK_THROWS_WITH(e->attention(a, nullptr), Catch::Contains("page_size = 48"));
  a.page_size = 0;
  a.max_pages = 0;
  CHECK_THROWS_AS(e->attention(a, "plx_decode_softmax_bf16_d128_causal_m16_n64_w4_s2_kauto_sm90a", nullptr),
                  UnsupportedError);
}

// Varlen packed batches (cu_seqlens) through the mma.sync prefill (prefill.cuh; the wgmma
// kernel has its own group in test_gpu_prefill_sm90): sequences of 1, 7, 0 (empty), 64, 65,
// 300 and 1000 queries against as many or more keys, one with keys and no queries; every
// family, dtype and head dim, causal, causal + window, non-causal, GQA 1/2/4. gpu_varlen.hpp:
// per-sequence oracle, bitwise equality with batch-1 calls, poisoned guard rows.
TEST_CASE("varlen packed batches (cu_seqlens), mma.sync prefill", "[gpu][varlen]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  const Arch arch = *parse_arch(e->arch());
  auto sync_prefill = [&](Family f, DType dt, int d, bool causal, bool window, bool small_tile) {
    Variant v = variant_of(Op::prefill, f, dt, d, causal, window, arch,
                           heuristics::default_tile(Op::prefill, f, 0, /*wgmma_prefill=*/false, d));  // mma.sync
    if (small_tile) {
      Variant s = v;
      s.tile.block_m = 64;
      s.tile.block_n = 32;
      s.tile.warps = 4;
      if (!why_illegal(s)) v = s;
    }
    INFO(v.name());
    REQUIRE(!why_illegal(v));
    return v;
  };
  const std::vector<int> q = {1, 7, 0, 64, 65, 300, 1000, 0};
  const std::vector<int> k_eq = {1, 7, 0, 64, 65, 300, 1000, 50};
  const std::vector<int> k_le = {1, 40, 0, 64, 193, 301, 1000, 50};
  const int gqa[][2] = {{2, 2}, {2, 1}, {4, 1}};
  std::vector<VarlenCase> cases;
  int i = 0;
  auto add = [&](const Variant& v, const std::vector<int>& k, int window = -1) {
    const int* g = gqa[i++ % 3];
    cases.push_back({v, q, k, g[0], g[1], window});
  };
  for (Family f : kFamilies)
    for (DType dt : kDtypes)
      for (int d : {64, 128}) add(sync_prefill(f, dt, d, true, false, i % 2), i % 2 ? k_le : k_eq);
  for (Family f : kFamilies) {
    add(sync_prefill(f, DType::bf16, 64 << (i % 2), false, false, false), k_le);
    add(sync_prefill(f, i % 2 ? DType::fp16 : DType::bf16, 128, true, true, i % 2), i % 2 ? k_eq : k_le, 37 + 63 * (i % 2));
  }
  VarlenCase own{sync_prefill(Family::parallax, DType::bf16, 128, true, false, false), {1, 3, 0, 2}, {9, 3, 5, 700}, 4, 1};
  own.engine_choice = true;  // the engine's own choice (on sm_90a: the wgmma kernel)
  cases.push_back(own);
  std::vector<Variant> vs;
  for (const VarlenCase& c : cases) vs.push_back(c.v);
  warm_cache(vs, e->arch());
  const std::uint64_t seed = fresh_seed();
  std::vector<VarlenRun> runs(cases.size());
  for (std::size_t j = 0; j < cases.size(); ++j) {
    runs[j].seed = seed + j;
    varlen_launch(*e, cases[j], runs[j]);
  }
  varlen_oracles(runs);
  for (std::size_t j = 0; j < cases.size(); ++j) {
    const VarlenVerdict v = varlen_judge(cases[j], runs[j]);
    INFO(v.line << " (PLX_SEED=" << seed << ": case " << j << " uses PLX_SEED + " << j << ")");
    CHECK(v.ok);
  }
}

// ---------------------------------------------------------------------------------------
// [tma] The sm_90a decode kernels whose K/V ring a producer warp fills with the TMA
// (templates/plx/kv_tma.cuh): the cases the cp.async ring is tested on above, plus K/V
// rows no live key uses poisoned with NaN (the TMA copies whole boxes; the consumers must
// zero those rows). Every case names its few variants and compiles them up front in
// parallel (an NVRTC decode compile takes seconds; the first TMA tests spent their time
// limit compiling), and keeps to small shapes, so each case runs alone well inside a
// minute. Each has a tag of its own: `test_gpu_attention "[tma-odd]"` (tools/bench/
// sessions/2026-11-30a-tma.sh runs them one by one under `timeout`). A hang is an
// mbarrier waiting for an arrival or bytes that never come.
// ---------------------------------------------------------------------------------------
namespace {

Engine* tma_engine_or_skip() {
  Engine* e = engine_or_skip();
  if (!e) return nullptr;
  if (e->arch() != "sm_90a") {
    WARN("skipping [tma] test: the TMA decode kernels need sm_90a, this GPU is " << e->arch());
    return nullptr;
  }
  return e;
}

// A decode variant of the tile the tests use (block_n 64, 4 consumer warps), TMA loader.
struct TmaTile {
  int block_m = 8, stages = 3, split_kv = 0;
};
Variant tma_decode(Family f, DType dt, int d, bool causal, bool window, TmaTile t = {}) {
  const Tile tile{f == Family::softmax ? 16 : t.block_m, 64, 4, t.stages, t.split_kv, Mma::sync, Loader::tma};
  const Variant v = variant_of(Op::decode, f, dt, d, causal, window, Arch::sm90a, tile);
  INFO(v.name());
  REQUIRE(!why_illegal(v));
  return v;
}
// The same tile with the cp.async ring: the reference behaviour.
Variant cp_async_of(Variant v) {
  v.tile.loader = Loader::cp_async;
  return v;
}
// The variant serving `a` (its family, dtype, head dim and mask) with tile t.
Variant tma_for(const AttentionArgs& a, TmaTile t = {}) {
  return tma_decode(a.family, a.dtype, a.head_dim, a.causal, a.window_left >= 0, t);
}

AttentionArgs decode_base(Family f, DType dt, int d) {
  AttentionArgs a = base_args(f, dt, d);
  a.batch = 2;
  a.heads_q = 4;
  a.heads_kv = 2;
  a.q_len = 1;
  return a;
}

// Both loaders of the same tile on the same case.
void expect_close_both(Engine& e, Case c, const Variant& t, const std::string& what) {
  c.variant = cp_async_of(t).name();
  expect_close(e, c, what + " [cp.async]");
  c.variant = t.name();
  expect_close(e, c, what + " [tma]");
}

std::vector<Variant> with_cp_async(std::vector<Variant> vs) {
  const std::size_t n = vs.size();
  for (std::size_t i = 0; i < n; ++i) vs.push_back(cp_async_of(vs[i]));
  return vs;
}

}  // namespace

TEST_CASE("TMA decode: a spread of decode_sm90_tma.yaml's variants", "[gpu][tma][tma-spec]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const std::vector<Variant> all = expand(load_spec(source_dir() / "specs" / "decode_sm90_tma.yaml")).variants;
  REQUIRE(all.size() == 80);
  // Every 11th variant: 8 of them, across families, dtypes, head dims, masks and stages
  // (tools/bench/sessions' nvrtc_compile compiles all 80 on the CPU).
  std::vector<Variant> vs;
  for (std::size_t i = 0; i < all.size(); i += 11) vs.push_back(all[i]);
  warm_cache(vs, e->arch());
  int i = 0;
  for (const Variant& v : vs) {
    ++i;
    AttentionArgs a = base_args(v.family, v.dtype, v.head_dim);
    a.batch = 3;
    a.heads_kv = 2;
    a.heads_q = 2 * (1 << (i % 4));
    a.q_len = 1 + (i % 3 == 0 ? 2 : 0);
    a.kv_len = 700 + i % 7;
    if (v.window) a.window_left = 100 + i % 3;
    Case c{a, {}, v.name()};
    c.page_size = i % 3 == 1 ? 16 : i % 3 == 2 ? 256 : 0;
    if (i % 2) c.seqused = {a.kv_len, 1 + i * 37, 0};
    c.poison_dead_rows = true;
    expect_close(*e, c, fmt::format("TMA spec variant #{} page {}", i, c.page_size));
  }
}

TEST_CASE("TMA decode: odd lengths contiguous and paged", "[gpu][tma][tma-odd]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const AttentionArgs shapes[] = {decode_base(Family::parallax, DType::bf16, 128),
                                  decode_base(Family::softmax, DType::fp16, 64),
                                  decode_base(Family::parallax_uncentered, DType::bf16, 128)};
  std::vector<Variant> vs;
  for (const AttentionArgs& a : shapes) vs.push_back(tma_for(a, {8, a.family == Family::softmax ? 4 : 3}));
  warm_cache(vs, e->arch());
  for (std::size_t s = 0; s < 3; ++s)
    for (int L : {1, 7, 63, 64, 65, 1000, 4097}) {
      AttentionArgs a = shapes[s];
      a.kv_len = L;
      expect_close(*e, {a, {}, vs[s].name()}, fmt::format("TMA decode L={}", L));
      Case paged{a, {}, vs[s].name(), 16 << (L % 5)};  // pages 16 .. 256
      expect_close(*e, paged, fmt::format("TMA paged decode L={} page {}", L, paged.page_size));
    }
}

TEST_CASE("TMA decode: GQA 1..16 and multi-token decode", "[gpu][tma][tma-gqa]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const Variant m8 = tma_decode(Family::parallax, DType::bf16, 128, true, false, {8});
  const Variant m16 = tma_decode(Family::parallax, DType::bf16, 128, true, false, {16});
  warm_cache({m8, m16}, e->arch());
  for (int g = 1; g <= 16; ++g) {
    AttentionArgs a = decode_base(Family::parallax, DType::bf16, 128);
    a.batch = 1;
    a.heads_q = 2 * g;
    a.kv_len = 777;
    a.q_len = 1 + g % 4;  // 1..4 new tokens, causal among them
    const std::string v = (g % 2 ? m8 : m16).name();
    expect_close(*e, {a, {}, v}, fmt::format("TMA decode gqa {}", g));
    expect_close(*e, {a, {}, v, 32}, fmt::format("TMA paged decode gqa {}", g));
  }
}

TEST_CASE("TMA decode: split-KV counts with empty splits and the in-kernel merge", "[gpu][tma][tma-split]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  std::vector<Variant> vs;
  for (int k : {1, 3, 8, 64, 0}) vs.push_back(tma_decode(Family::parallax, DType::bf16, 128, true, false, {8, 3, k}));
  warm_cache(vs, e->arch());
  for (const Variant& v : vs) {
    AttentionArgs a = decode_base(Family::parallax, DType::bf16, 128);
    a.batch = 1;
    a.heads_q = 8;
    a.heads_kv = 1;
    a.kv_len = 2049;
    const int splits = e->splits_for(a, v.name());
    if (v.tile.split_kv == 0) CHECK(splits > 1);
    expect_close(*e, {a, {}, v.name()}, fmt::format("TMA split k{} ({} splits)", v.tile.split_kv, splits));
    expect_close(*e, {a, {}, v.name(), 16}, fmt::format("TMA paged split k{}", v.tile.split_kv));
  }
  // Changing grids on one stream (the merge counters), several row blocks, and more
  // splits than tiles: CTAs without a tile must not touch a barrier (nor hang).
  struct Shape { int batch, q_len, heads_q, heads_kv, kv_len, variant; };
  const Shape shapes[] = {{3, 3, 16, 2, 1500, 1}, {1, 1, 8, 8, 777, 2}, {2, 2, 4, 1, 4097, 3},
                          {1, 1, 8, 8, 100, 3},   {1, 1, 8, 8, 1, 3},   {1, 1, 8, 8, 777, 1}};
  for (const Shape& sh : shapes) {
    AttentionArgs a = decode_base(Family::parallax, DType::bf16, 128);
    a.batch = sh.batch;
    a.q_len = sh.q_len;
    a.heads_q = sh.heads_q;
    a.heads_kv = sh.heads_kv;
    a.kv_len = sh.kv_len;
    const Variant& v = vs[std::size_t(sh.variant)];
    const int splits = e->splits_for(a, v.name());
    expect_close(*e, {a, {}, v.name()}, fmt::format("TMA k{}: {} splits, kv {}", v.tile.split_kv, splits, sh.kv_len));
    expect_close(*e, {a, {}, v.name(), 64}, fmt::format("TMA paged k{}, kv {}", v.tile.split_kv, sh.kv_len));
  }
}

TEST_CASE("TMA decode: sliding windows contiguous and paged", "[gpu][tma][tma-window]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const Variant p = tma_decode(Family::parallax, DType::bf16, 128, true, true);
  const Variant s = tma_decode(Family::softmax, DType::bf16, 128, true, true);
  warm_cache({p, s}, e->arch());
  for (const Variant& v : {p, s})
    for (int w : {1, 5, 64, 100, 1000, 5000}) {
      AttentionArgs a = decode_base(v.family, DType::bf16, 128);
      a.kv_len = 3001;
      a.window_left = w;
      for (int q : {1, 2}) {
        a.q_len = q;
        expect_close(*e, {a, {}, v.name()}, fmt::format("TMA window {} q {}", w, q));
        // Paged tiles start at a multiple of block_n, before the window's first key.
        for (int page : {16, 256})
          expect_close(*e, {a, {}, v.name(), page}, fmt::format("TMA paged window {} q {} page {}", w, q, page));
      }
    }
}

TEST_CASE("TMA decode: seqused_k incl. 0 with dead K/V rows poisoned (NaN) on both loaders", "[gpu][tma][tma-seqused]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const Variant plain = tma_decode(Family::parallax, DType::fp16, 128, true, false);
  const Variant win = tma_decode(Family::parallax, DType::fp16, 128, true, true);
  const Variant split = tma_decode(Family::parallax, DType::fp16, 128, true, false, {8, 3, 5});
  warm_cache(with_cp_async({plain, win, split}), e->arch());
  for (int page : {0, 16, 64, 256}) {
    AttentionArgs a = decode_base(Family::parallax, DType::fp16, 128);
    a.batch = 6;
    a.heads_q = 8;
    a.kv_len = 1500;
    Case c{a, {1500, 1, 0, 777, 64, 1201}, "", page};
    c.poison_dead_rows = true;
    expect_close_both(*e, c, plain, fmt::format("seqused page {}", page));
    expect_close_both(*e, c, split, fmt::format("seqused, 5 splits, page {}", page));
    c.args.q_len = 3;
    c.seqused = {2, 1500, 0, 65, 1000, 3};
    expect_close_both(*e, c, plain, fmt::format("seqused 3 tokens page {}", page));
    c.args.q_len = 1;
    c.args.window_left = 50;
    expect_close_both(*e, c, win, fmt::format("seqused window 50 page {}", page));
  }
}

TEST_CASE("TMA decode: paged caches of pages 16 to 256 shuffled with live lengths on both loaders", "[gpu][tma][tma-paged]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const Variant p = tma_decode(Family::parallax, DType::bf16, 128, true, false);
  const Variant s = tma_decode(Family::softmax, DType::fp16, 64, true, false, {16, 4});
  warm_cache(with_cp_async({p, s}), e->arch());
  int i = 0;
  for (const Variant& v : {p, s})
    for (int page : {16, 32, 64, 128, 256}) {
      ++i;
      AttentionArgs a = decode_base(v.family, v.dtype, v.head_dim);
      a.batch = 4;
      a.heads_q = 8;
      a.kv_len = 1000 + i;
      a.q_len = 1 + i % 3;
      Case c{a, {}, "", page};
      c.poison_dead_rows = true;
      expect_close_both(*e, c, v, fmt::format("paged page {}", page));
      c.seqused = {a.kv_len, 17, 0, 640};
      expect_close_both(*e, c, v, fmt::format("paged + seqused page {}", page));
    }
}

TEST_CASE("TMA decode: fully masked rows (every sequence empty) and non-causal", "[gpu][tma][tma-empty]") {
  Engine* e = tma_engine_or_skip();
  if (!e) return;
  const Variant empty = tma_decode(Family::parallax_uncentered, DType::bf16, 64, true, false);
  const Variant full = tma_decode(Family::parallax, DType::bf16, 128, false, false);
  warm_cache({empty, full}, e->arch());
  AttentionArgs a = decode_base(Family::parallax_uncentered, DType::bf16, 64);
  a.batch = 3;
  a.kv_len = 100;
  for (int page : {0, 16}) {
    Case c{a, {0, 0, 0}, empty.name(), page};
    c.poison_dead_rows = true;
    expect_close(*e, c, fmt::format("TMA decode, all sequences empty, page {}", page));
    c.seqused = {0, 100, 0};
    expect_close(*e, c, fmt::format("TMA decode, two of three sequences empty, page {}", page));
  }
  AttentionArgs n = decode_base(Family::parallax, DType::bf16, 128);
  n.causal = false;
  n.qk_scale = 0.05f;
  n.heads_q = 4;
  n.heads_kv = 4;
  n.kv_len = 513;
  expect_close(*e, {n, {}, full.name()}, "TMA decode non-causal");
  expect_close(*e, {n, {}, full.name(), 128}, "TMA paged decode non-causal");
}
