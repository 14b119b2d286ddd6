// The backward's host side without a GPU: argument validation messages, the default
// variant for every supported shape (legal, and naming what it serves), the launch plan
// (grid split into dK/dV and dQ/dR CTAs, workspace size), and the rendered sources.
#include <catch2/catch.hpp>

#include <string>

#include "generator/legality.hpp"
#include "generator/render.hpp"
#include "runtime/backward.hpp"
#include "runtime/launch.hpp"

using namespace plx;

namespace {
AttentionArgs args(Family f, int d) {
  AttentionArgs a;
  a.family = f;
  a.dtype = DType::bf16;
  a.head_dim = d;
  a.batch = 2;
  a.q_len = 1000;
  a.kv_len = 1300;
  a.heads_q = 8;
  a.heads_kv = 2;
  return a;
}
alignas(16) char dummy[64];

BackwardArgs all_set() {
  BackwardArgs g;
  g.dout = g.o = g.barv = g.dq = g.dr = g.dk = g.dv = dummy;
  g.stats = reinterpret_cast<const float*>(dummy);
  return g;
}
}  // namespace

TEST_CASE("backward: the default variant is legal and serves the call", "[backward]") {
  for (Family f : {Family::softmax, Family::parallax, Family::parallax_uncentered})
    for (DType dt : {DType::bf16, DType::fp16})
      for (int d : {64, 128})
        for (int window : {-1, 100})
          for (bool causal : {true, false})
            for (Arch arch : {Arch::sm80, Arch::sm90a}) {
              AttentionArgs a = args(f, d);
              a.dtype = dt;
              a.window_left = window;
              a.causal = causal;
              const Variant v = default_backward_variant(a, arch);
              INFO(v.name());
              CHECK(v.op == Op::backward);
              CHECK(!why_illegal(v));
              CHECK_NOTHROW(check_fits_backward(v, a));
              CHECK(parse_variant_name(v.name()) == v);
              const RenderedKernel r = render(v);
              CHECK(r.name_expression == "plx::backward_kernel<plx_gen::Cfg>");
              CHECK(r.source.find("plx::BackwardConfig<") != std::string::npos);
              CHECK(r.smem_bytes == smem_bytes(v));
            }
}

TEST_CASE("backward: the sm_90a choice (wgmma) is legal and serves every call", "[backward]") {
  for (Family f : {Family::softmax, Family::parallax, Family::parallax_uncentered})
    for (DType dt : {DType::bf16, DType::fp16})
      for (int d : {64, 128})
        for (int window : {-1, 100})
          for (bool causal : {true, false}) {
            AttentionArgs a = args(f, d);
            a.dtype = dt;
            a.window_left = window;
            a.causal = causal;
            const Variant v = wgmma_backward_variant(a);
            INFO(v.name());
            // The measured choice: the plain loop, block_n 64 at d 64 and for softmax without a window.
            CHECK(v.tile.mma == Mma::wgmma);
            CHECK(v.tile.block_n == (d == 64 || (f == Family::softmax && window < 0) ? 64 : 32));
            CHECK(v.arch == Arch::sm90a);
            CHECK(!why_illegal(v));
            CHECK_NOTHROW(check_fits_backward(v, a));
            CHECK(parse_variant_name(v.name()) == v);
            CHECK(render(v).name_expression == "plx::backward_sm90_kernel<plx_gen::Cfg>");
          }
}

TEST_CASE("backward: launch plan", "[backward]") {
  AttentionArgs a = args(Family::parallax, 128);
  const BackwardArgs g = all_set();
  const Variant v = default_backward_variant(a, Arch::sm90a);
  REQUIRE(v.tile.block_m == 64);
  const BackwardPlan bp = plan_backward(v, a, g);
  // 1300 keys / 64 = 21 key tiles x 2 kv heads, then 1000 rows / 64 = 16 query tiles x 8 q heads.
  CHECK(bp.params.kv_tiles == 21);
  CHECK(bp.params.q_tiles == 16);
  CHECK(bp.params.kv_ctas == 42);
  CHECK(bp.grid.x == 42 + 16 * 8);
  CHECK(bp.grid.y == 2);
  CHECK(bp.block.x == 128);
  CHECK(bp.smem_bytes == smem_bytes(v));
  // Preprocess: 8 rows of 16 lanes per block over batch x heads_q x q_len = 16000 rows.
  CHECK(bp.pre_grid.x == 2000);
  CHECK(bp.rows_floats == 16000u * 4);
  CHECK(bp.params.scale == Approx(1 / std::sqrt(128.0)));
  CHECK(bp.params.f.o == g.o);
  CHECK(bp.params.f.stats == nullptr);  // the backward never writes the forward's statistics
  CHECK(bp.params.barv == g.barv);
  a.family = Family::parallax_uncentered;  // no barv: its backward has b = 0
  CHECK(plan_backward(default_backward_variant(a, Arch::sm90a), a, g).params.barv == nullptr);
  a.family = Family::softmax;
  CHECK(plan_backward(default_backward_variant(a, Arch::sm90a), a, g).params.dr == nullptr);
}

TEST_CASE("backward: a varlen batch's plan covers the longest sequence", "[backward][varlen]") {
  // Three sequences of (q, k) lengths (0, 0), (1000, 1300), (17, 40): q_len / kv_len are the
  // longest, and the plan is the padded one's, with cu_seqlens handed to the kernels.
  AttentionArgs a = args(Family::parallax, 128);
  a.batch = 3;
  alignas(16) static int cu_q[4] = {0, 0, 1000, 1017}, cu_k[4] = {0, 0, 1300, 1340};
  a.cu_seqlens_q = cu_q;
  a.cu_seqlens_k = cu_k;
  const BackwardArgs g = all_set();
  AttentionArgs padded = a;
  padded.cu_seqlens_q = padded.cu_seqlens_k = nullptr;
  for (const Variant& v : {default_backward_variant(a, Arch::sm80), wgmma_backward_variant(a)}) {
    INFO(v.name());
    CHECK_NOTHROW(check_fits_backward(v, a));
    const BackwardPlan bp = plan_backward(v, a, g), pp = plan_backward(v, padded, g);
    CHECK(bp.params.f.cu_seqlens_q == cu_q);
    CHECK(bp.params.f.cu_seqlens_k == cu_k);
    CHECK(bp.params.q_tiles == (1000 + v.tile.block_m - 1) / v.tile.block_m);
    CHECK(bp.params.kv_tiles == (1300 + v.tile.block_m - 1) / v.tile.block_m);
    CHECK(bp.grid.x == pp.grid.x);
    CHECK(bp.grid.y == 3);
    // The row terms keep the stats layout [batch][heads_q][q_len] of the longest sequence.
    CHECK(bp.rows_floats == 3u * 8 * 1000 * 4);
    CHECK(bp.pre_grid.x == pp.pre_grid.x);
    // Strides per token and head as for the forward; the batch strides go unused.
    CHECK(bp.params.f.q_stride_t == 8 * 128);
    CHECK(bp.params.f.k_stride_t == 2 * 128);
    CHECK(bp.params.f.o_stride_t == bp.params.f.q_stride_t);
  }
}

TEST_CASE("backward: launch plan and source of a wgmma variant (backward_sm90.cuh)", "[backward]") {
  AttentionArgs a = args(Family::parallax, 128);
  const BackwardArgs g = all_set();
  const auto v = parse_variant_name("plx_backward_parallax_bf16_d128_causal_m128_n32_w12_s2_k1_wgmma_sm90a");
  REQUIRE(v);
  CHECK_NOTHROW(check_fits_backward(*v, a));
  const BackwardPlan bp = plan_backward(*v, a, g);
  // 1300 keys / 128 = 11 key tiles x 2 kv heads, then 1000 rows / 128 = 8 query tiles x 8 q heads.
  CHECK(bp.params.kv_tiles == 11);
  CHECK(bp.params.q_tiles == 8);
  CHECK(bp.params.kv_ctas == 22);
  CHECK(bp.grid.x == 22 + 8 * 8);
  CHECK(bp.grid.y == 2);
  CHECK(bp.block.x == 384);  // producer warpgroup + 2 consumers
  CHECK(bp.smem_bytes == 132128);
  CHECK(bp.params.f.persistent == 0);  // not the persistent wgmma prefill grid
  CHECK(bp.pre_grid.x == 2000);
  CHECK(bp.accum_floats == 0);  // two CTA roles: no dQ/dR workspace, no post kernel
  CHECK(bp.post_grid.x == 0);
  const RenderedKernel r = render(*v);
  CHECK(r.name_expression == "plx::backward_sm90_kernel<plx_gen::Cfg>");
  CHECK(r.source.find("#include \"plx/backward_sm90.cuh\"") != std::string::npos);
  CHECK(r.source.find("plx::BackwardSm90Config<plx::Family::parallax, plx::bf16, 128, 128, 32, 12, 2, true, false, false, false, false>;") !=
        std::string::npos);
  CHECK(r.threads == 384);
  CHECK(r.smem_bytes == 132128);
  // The engine's default stays the mma.sync kernel.
  CHECK(default_backward_variant(a, Arch::sm90a).tile.mma == Mma::sync);
  // Batches past gridDim.y's limit are still refused by name (the 65535 checks).
  a.batch = 70000;
  CHECK_THROWS_AS(plan_backward(*v, a, g), UnsupportedError);
}

TEST_CASE("backward: the reduced dQ/dR form (mma wgmma-red)", "[backward]") {
  AttentionArgs a = args(Family::parallax, 128);
  const BackwardArgs g = all_set();
  const auto v = parse_variant_name("plx_backward_parallax_bf16_d128_causal_m128_n32_w12_s2_k1_wgmma-red_sm90a");
  REQUIRE(v);
  CHECK(v->tile.mma == Mma::wgmma_red);
  CHECK(v->name() == "plx_backward_parallax_bf16_d128_causal_m128_n32_w12_s2_k1_wgmma-red_sm90a");
  CHECK_NOTHROW(check_fits_backward(*v, a));
  const BackwardPlan bp = plan_backward(*v, a, g);
  // Only dK/dV CTAs, in 2-CTA clusters of key tiles 2k, 2k + 1: 11 key tiles round up to
  // 12 per kv head (one padding CTA each), x 2 kv heads; grid.x even. dQ and dR (2 x 16000
  // rows x 128) go through the workspace, which the preprocess zeroes and the post kernel
  // (one row per 16 lanes) converts.
  CHECK(bp.params.kv_tiles == 11);
  CHECK(bp.params.kv_ctas == 24);
  CHECK(bp.grid.x == 24);
  CHECK(bp.grid.x % 2 == 0);
  CHECK(bp.accum_floats == 2u * 16000 * 128);
  CHECK(bp.post_grid.x == 2000);
  // 1024 + 2 x 32768 + 2 x (3 x 8192 + 512) + 2 x 16384 (Ds) + 2 x 16384 (staging)
  // + 2 x 16384 (receive) + 2 x 2 x 8 + 2 x 2 x 8.
  CHECK(bp.smem_bytes == 215104);
  const RenderedKernel r = render(*v);
  CHECK(r.source.find("128, 32, 12, 2, true, false, false, false, true>;") != std::string::npos);
  CHECK(r.name_expression == "plx::backward_sm90_red_kernel<plx_gen::Cfg>");
  // An even number of key tiles needs no padding.
  AttentionArgs e = a;
  e.kv_len = e.q_len = 1024;
  CHECK(plan_backward(*v, e, g).grid.x == 8 * 2);
  // The two-role wgmma kernel keeps its grid and entry.
  Variant two = *v;
  two.tile.mma = Mma::wgmma;
  CHECK(plan_backward(two, a, g).params.kv_ctas == 22);
  CHECK(render(two).name_expression == "plx::backward_sm90_kernel<plx_gen::Cfg>");
  // Built for the probe families at d 128, block_n 32 only; and no 3rd stage (smem, with
  // the receive buffers: 240192 B).
  Variant w = *v;
  w.family = Family::softmax;
  CHECK(why_illegal(w));
  w = *v;
  w.tile.stages = 3;
  CHECK(why_illegal(w));
  w = *v;
  w.op = Op::prefill;
  CHECK(why_illegal(w));
}

TEST_CASE("backward: arguments are refused by name", "[backward]") {
  AttentionArgs a = args(Family::parallax, 128);
  a.q = a.r = a.k = a.v = dummy;
  BackwardArgs g = all_set();
  CHECK_NOTHROW(validate_backward(a, g));
  g.barv = nullptr;
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("barv"));
  a.family = Family::parallax_uncentered;
  CHECK_NOTHROW(validate_backward(a, g));  // only centered Parallax reads barv
  g.dr = nullptr;
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("dr is null"));
  a.family = Family::softmax;
  a.r = nullptr;
  CHECK_NOTHROW(validate_backward(a, g));  // softmax has neither r nor dr
  g.dv = dummy + 4;
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("dv = ") && Catch::Contains("16-byte"));
  g.dv = dummy;
  a.head_dim = 96;
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("head_dim = 96"));
  a.head_dim = 128;
  a.block_table = reinterpret_cast<const int*>(dummy);
  a.page_size = 16;
  a.max_pages = 100;
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("paged"));
  a.block_table = nullptr;
  a.page_size = a.max_pages = 0;
  // Varlen packed batches are accepted, pointers or not; the forward's varlen rules hold.
  alignas(16) static int cu[3] = {0, 500, 1000};
  a.cu_seqlens_q = a.cu_seqlens_k = cu;
  CHECK_NOTHROW(validate_backward(a, g));
  CHECK_NOTHROW(validate_backward(a, BackwardArgs{}, false));
  a.cu_seqlens_k = nullptr;  // both or neither
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("needs both"));
  CHECK_THROWS_WITH(validate_backward(a, BackwardArgs{}, false), Catch::Contains("needs both"));
  a.cu_seqlens_q = nullptr;
  a.cu_seqlens_k = cu;
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("needs both"));
  a.cu_seqlens_q = cu + 1;
  CHECK_NOTHROW(validate_backward(a, g));
  a.cu_seqlens_q = reinterpret_cast<const int*>(dummy + 2);  // int32 offsets: 4-byte aligned
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("cu_seqlens_q") && Catch::Contains("aligned"));
  a.cu_seqlens_q = cu;
  g.dq = nullptr;  // the gradients are still checked by name
  CHECK_THROWS_WITH(validate_backward(a, g), Catch::Contains("dq"));
  g.dq = dummy;
  a.cu_seqlens_q = a.cu_seqlens_k = nullptr;
  CHECK_NOTHROW(validate_backward(a, g));
  // A variant for another mask, or a forward variant, is refused by name.
  Variant v = default_backward_variant(a, Arch::sm90a);
  v.causal = !v.causal;
  CHECK_THROWS_WITH(check_fits_backward(v, a), Catch::Contains("causal"));
  v = default_variant(a, Arch::sm90a);
  CHECK_THROWS_WITH(check_fits_backward(v, a), Catch::Contains("not a backward"));
  // ... and a backward variant for a forward call.
  CHECK_THROWS_WITH(check_fits(default_backward_variant(a, Arch::sm90a), a), Catch::Contains("attention_backward"));
}

TEST_CASE("training forward: statistics force a prefill kernel", "[backward]") {
  AttentionArgs a = args(Family::parallax, 128);
  a.q_len = 3;
  CHECK(default_variant(a, Arch::sm90a).op == Op::decode);
  a.stats = reinterpret_cast<float*>(dummy);
  a.barv = dummy;
  const Variant v = default_variant(a, Arch::sm90a);
  CHECK(v.op == Op::prefill);
  CHECK_NOTHROW(check_fits(v, a));
  Variant d = v;
  d.op = Op::decode;
  d.tile = Tile{16, 64, 4, 2, 0};
  CHECK_THROWS_WITH(check_fits(d, a), Catch::Contains("statistics"));
  a.q = a.r = a.k = a.v = a.o = dummy;
  a.barv = nullptr;
  CHECK_THROWS_WITH(validate(a), Catch::Contains("barv"));
}

TEST_CASE("backward preprocess kernels render for every family, dtype and head dim", "[backward]") {
  for (Family f : {Family::softmax, Family::parallax, Family::parallax_uncentered})
    for (DType dt : {DType::bf16, DType::fp16})
      for (int d : {64, 128}) {
        const RenderedKernel r = render_backward_pre(f, dt, d);
        CHECK(r.display_name == backward_pre_name(f, dt, d));
        CHECK(r.name_expression == "plx::bwd_pre_kernel<plx_gen::Cfg>");
        CHECK(r.threads == 128);
      }
  CHECK_THROWS_AS(render_backward_pre(Family::parallax, DType::bf16, 96), UnsupportedError);
  CHECK(backward_pre_name(Family::parallax_uncentered, DType::fp16, 64) == "plx_bwdpre_parallax-uncentered_fp16_d64");
}
