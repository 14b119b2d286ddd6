// Host-side launch planning without a GPU: argument validation messages, the variant the
// engine picks, grids, split counts and workspace sizes.
#include <catch2/catch.hpp>
#include <cstdint>
#include <fmt/format.h>

#include "generator/legality.hpp"
#include "generator/render.hpp"
#include "runtime/launch.hpp"
#include "runtime/tma.hpp"

using namespace plx;

namespace {
alignas(16) char g_dummy[64];

AttentionArgs decode_args() {
  AttentionArgs a;
  a.family = Family::parallax;
  a.batch = 2;
  a.q_len = 1;
  a.kv_len = 4096;
  a.heads_q = 32;
  a.heads_kv = 8;
  a.head_dim = 128;
  a.q = a.r = a.k = a.v = g_dummy;
  a.o = g_dummy;
  return a;
}
// validate()'s message for `base` after `edit` ("" when it passes).
template <class Edit>
std::string validation_message(AttentionArgs base, Edit edit) {
  edit(base);
  try {
    validate(base);
  } catch (const UnsupportedError& e) {
    return std::string(e.what());
  }
  return std::string();
}
}  // namespace

TEST_CASE("validation names the field and the value", "[launch]") {
  auto msg = [](auto f) { return validation_message(decode_args(), f); };
  CHECK(msg([](AttentionArgs&) {}).empty());
  CHECK_THAT(msg([](AttentionArgs& a) { a.batch = 0; }), Catch::Contains("batch = 0"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.kv_len = -3; }), Catch::Contains("kv_len = -3"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.heads_q = 12; }), Catch::Contains("heads_q = 12 must be a positive multiple of heads_kv = 8"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.head_dim = 256; }), Catch::Contains("head_dim = 256"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.window_left = 0; }), Catch::Contains("window_left = 0"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.qk_scale = -1.f; }), Catch::Contains("qk_scale = -1"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.family = static_cast<Family>(7); }), Catch::Contains("family = 7"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.dtype = static_cast<DType>(5); }), Catch::Contains("dtype = 5"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.k = nullptr; }), Catch::Contains("k is null"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.o = g_dummy + 8; }), Catch::Contains("o = ") );
  CHECK(msg([](AttentionArgs& a) { a.family = Family::softmax; a.r = nullptr; }).empty());  // r unused
  CHECK_THAT(msg([](AttentionArgs& a) { a.page_size = 100; a.max_pages = 64; a.block_table = reinterpret_cast<int*>(g_dummy); }),
             Catch::Contains("page_size = 100"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.page_size = 64; a.max_pages = 2; a.block_table = reinterpret_cast<int*>(g_dummy); }),
             Catch::Contains("holds fewer than kv_len = 4096"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.page_size = 64; a.max_pages = 64; }), Catch::Contains("block_table is null"));
  // Shape-only validation (variant_for) does not need pointers.
  AttentionArgs a = decode_args();
  a.q = nullptr;
  CHECK_NOTHROW(validate(a, false));
}

TEST_CASE("the engine's default variants are legal and in the shipped specs' space", "[launch]") {
  for (Family f : {Family::softmax, Family::parallax, Family::parallax_uncentered})
    for (int q_len : {1, 3, 16, 17, 1000})
      for (int group : {1, 4, 8, 16})
        for (bool window : {false, true})
          for (int page : {0, 16, 32, 64}) {
            AttentionArgs a = decode_args();
            a.family = f;
            a.q_len = q_len;
            a.heads_kv = 2;
            a.heads_q = 2 * group;
            a.window_left = window ? 128 : -1;
            if (page) {
              a.page_size = page;
              a.max_pages = (a.kv_len + page - 1) / page;
              a.block_table = reinterpret_cast<const int*>(std::uintptr_t{256});  // never read
            }
            for (Arch arch : {Arch::sm80, Arch::sm90a}) {
              const Variant v = default_variant(a, arch);
              INFO(v.name());
              CHECK(!why_illegal(v));
              CHECK(v.op == (q_len <= 16 ? Op::decode : Op::prefill));
              CHECK(v.window == window);
              // Paged decode with pages under 64 keys and <= 16 (batch, kv head) pairs fills
              // its ring by TMA on sm_90a (here batch x heads_kv = 2 x 2).
              const bool tma = v.op == Op::decode && arch == Arch::sm90a && page > 0 && page < 64;
              CHECK((v.tile.loader == Loader::tma) == tma);
              if (tma) CHECK(v.tile.stages == 4);
              CHECK_NOTHROW(check_fits(v, a));
            }
          }
}

TEST_CASE("launch plans: grids, splits and workspace", "[launch]") {
  AttentionArgs a = decode_args();
  const Variant v = default_variant(a, Arch::sm90a);
  CHECK(v.name() == "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_kauto_sm90a");
  LaunchPlan lp = plan_launch(v, a, 132);
  // batch 2 x 8 kv heads = 16 CTAs per split; 4096 keys = 64 tiles of 64.
  CHECK(lp.grid.y == 1);
  CHECK(lp.grid.z == 16);
  CHECK(lp.splits > 1);
  CHECK(lp.grid.x == unsigned(lp.splits));
  CHECK(lp.block.x == 128);
  CHECK(lp.smem_bytes == smem_bytes(v));
  CHECK(lp.ws_o_floats == size_t(lp.splits) * 2 * 32 * 2 * 128);
  CHECK(lp.ws_stats_floats == size_t(lp.splits) * 2 * 32 * 4);
  CHECK(lp.params.group == 4);
  CHECK(lp.params.k_stride_t == 8 * 128);
  CHECK(lp.params.k_stride_b == 4096LL * 8 * 128);
  CHECK(lp.params.num_splits == lp.splits);

  // Many sequences fill the GPU without splitting: no workspace.
  a.batch = 64;
  lp = plan_launch(v, a, 132);
  CHECK(lp.splits == 1);
  CHECK(lp.ws_o_floats == 0);

  // A fixed split count in the name is honoured (capped by the tiles).
  Variant fixed = v;
  fixed.tile.split_kv = 3;
  CHECK(plan_launch(fixed, a, 132).splits == 3);
  a.kv_len = 100;  // 2 tiles
  fixed.tile.split_kv = 8;
  CHECK(plan_launch(fixed, a, 132).splits == 2);

  // A window bounds the streamed span, so fewer splits.
  a = decode_args();
  a.batch = 1;
  a.kv_len = 1 << 17;
  const int wide = decode_splits_for(v, a, 132);
  a.window_left = 256;
  Variant vw = default_variant(a, Arch::sm90a);
  CHECK(decode_splits_for(vw, a, 132) < wide);

  // Small pages want two CTAs per SM (the block-table reads): batch 8 x 8192 keys, 8 kv
  // heads, 4 q heads per kv head: contiguous and page 64 run 2 splits, page 16 runs 4.
  a = decode_args();
  a.batch = 8;
  a.kv_len = 8192;
  a.heads_q = 32;
  a.heads_kv = 8;
  const Variant vp = default_variant(a, Arch::sm90a);
  CHECK(decode_splits_for(vp, a, 132) == 2);
  a.block_table = reinterpret_cast<const int*>(g_dummy);
  a.max_pages = 8192 / 16;
  a.page_size = 16;
  CHECK(decode_splits_for(vp, a, 132) == 4);
  a.page_size = 64;
  a.max_pages = 8192 / 64;
  CHECK(decode_splits_for(vp, a, 132) == 2);

  // Paged: strides come from the pool, not the batch.
  a = decode_args();
  a.block_table = reinterpret_cast<const int*>(g_dummy);
  a.page_size = 64;
  a.max_pages = 64;
  lp = plan_launch(v, a, 132);
  CHECK(lp.params.page_shift == 6);
  CHECK(lp.params.k_stride_b == 0);
  CHECK(lp.params.block_table == a.block_table);

  // Prefill, mma.sync: one CTA per (row block, q head, batch).
  a = decode_args();
  a.q_len = a.kv_len = 1000;
  const Variant pv80 = default_variant(a, Arch::sm80);
  lp = plan_launch(pv80, a, 132);
  CHECK(lp.grid.x == unsigned((1000 + pv80.tile.block_m - 1) / pv80.tile.block_m));
  CHECK(lp.grid.y == 32);
  CHECK(lp.grid.z == 2);
  CHECK(lp.splits == 1);
  CHECK(lp.params.persistent == 0);
  // wgmma: persistent, one CTA per SM while there are more items than SMs ...
  const Variant pv = default_variant(a, Arch::sm90a);
  REQUIRE(is_wgmma(pv.tile.mma));
  lp = plan_launch(pv, a, 132);
  const unsigned items = unsigned((1000 + pv.tile.block_m - 1) / pv.tile.block_m) * 32 * 2;
  REQUIRE(items > 132);
  CHECK(lp.grid.x == 132);
  CHECK(lp.grid.y == 1);
  CHECK(lp.grid.z == 1);
  CHECK(lp.params.persistent == 1);
  // ... unless asked for one CTA per item (PLX_PREFILL_GRID=items) ...
  lp = plan_launch(pv, a, 132, /*persistent_prefill=*/false);
  CHECK(lp.grid.x == unsigned((1000 + pv.tile.block_m - 1) / pv.tile.block_m));
  CHECK(lp.grid.y == 32);
  CHECK(lp.grid.z == 2);
  CHECK(lp.params.persistent == 0);
  // ... and one per item when there are fewer.
  a.q_len = a.kv_len = 64;
  a.heads_q = 2;
  a.heads_kv = 1;
  a.batch = 1;
  lp = plan_launch(default_variant(a, Arch::sm90a), a, 132);
  CHECK(lp.grid.x == 2);
  CHECK(lp.params.persistent == 1);
}

TEST_CASE("grids past the hardware limits are refused by name", "[launch]") {
  AttentionArgs a = decode_args();
  a.batch = 8192;
  a.heads_kv = 8;
  a.heads_q = 8;
  const Variant v = default_variant(a, Arch::sm90a);
  CHECK_THROWS_WITH(plan_launch(v, a, 132), Catch::Contains("batch x heads_kv = 65536"));
  a.batch = 8191;
  CHECK_NOTHROW(plan_launch(v, a, 132));
}

TEST_CASE("a named variant that does not fit the arguments is refused", "[launch]") {
  AttentionArgs a = decode_args();
  Variant v = default_variant(a, Arch::sm90a);
  v.family = Family::softmax;
  CHECK_THROWS_WITH(check_fits(v, a), Catch::Contains("family is softmax but the arguments need parallax"));
  v = default_variant(a, Arch::sm90a);
  v.head_dim = 64;
  CHECK_THROWS_WITH(check_fits(v, a), Catch::Contains("head_dim is 64"));
  v = default_variant(a, Arch::sm90a);
  v.window = true;
  CHECK_THROWS_WITH(check_fits(v, a), Catch::Contains("window"));
}

namespace {
Variant cp_variant_of(Variant v) {
  v.tile.loader = Loader::cp_async;
  return v;
}
}  // namespace

// The TMA decode kernels: the rendered entry point and the tensor maps the engine encodes
// per call (their shapes are pure host math; cuTensorMapEncodeTiled runs on the GPU box).
TEST_CASE("TMA decode: rendered kernel, launch plan and tensor map shapes", "[launch][tma]") {
  AttentionArgs a = decode_args();
  Variant v = default_variant(a, Arch::sm90a);
  REQUIRE(v.op == Op::decode);
  CHECK(v.tile.loader == Loader::cp_async);  // the engine's choice is unchanged
  const RenderedKernel cp = render(v);
  CHECK(cp.name_expression == "plx::decode_kernel<plx_gen::Cfg>");
  v.tile.loader = Loader::tma;
  REQUIRE(!why_illegal(v));
  const RenderedKernel r = render(v);
  CHECK(r.name_expression == "plx::decode_tma_kernel<plx_gen::Cfg>");
  CHECK(r.source.find(", true>;") != std::string::npos);  // DecodeConfig's TMA flag
  CHECK(r.smem_bytes == cp.smem_bytes + 1024 + v.tile.stages * 16);
  // One more warp than the tile's: the producer, which only issues the copies. The template
  // checks the same count (render's static_assert on Cfg::kThreads).
  CHECK(cp.threads == v.tile.warps * 32);
  CHECK(r.threads == v.tile.warps * 32 + 32);
  CHECK(r.source.find(fmt::format("Cfg::kThreads == {}", r.threads)) != std::string::npos);
  check_fits(v, a);

  // Contiguous [batch 2, kv 4096, heads_kv 8, d 128] bf16: 4-D, one 64-column panel per box.
  LaunchPlan lp = plan_launch(v, a, 132);
  CHECK(lp.smem_bytes == unsigned(r.smem_bytes));
  CHECK(lp.block.x == unsigned(r.threads));
  CHECK(plan_launch(cp_variant_of(v), a, 132).block.x == unsigned(cp.threads));
  TmaMapShape m = decode_kv_map_shape(v, lp.params);
  CHECK(m.rank == 4);
  CHECK((m.dims[0] == 128 && m.dims[1] == 8 && m.dims[2] == 4096 && m.dims[3] == 2));
  CHECK((m.strides[0] == 256 && m.strides[1] == 2048 && m.strides[2] == 2048ull * 4096));
  CHECK((m.box[0] == 64 && m.box[1] == 1 && m.box[2] == 64 && m.box[3] == 1));
  // Every stride is the previous one times its dimension (a dense cache).
  for (int i = 1; i + 1 < m.rank; ++i) CHECK(m.strides[i] == m.strides[i - 1] * m.dims[i]);

  // Paged pools: 3-D over page slots; a box is one page, or the tile when pages are larger.
  a.block_table = reinterpret_cast<const int*>(g_dummy);
  a.max_pages = 4096;
  for (int page : {16, 32, 64, 128, 256}) {
    a.page_size = page;
    lp = plan_launch(v, a, 132);
    m = decode_kv_map_shape(v, lp.params);
    INFO("page " << page);
    CHECK(m.rank == 3);
    CHECK((m.dims[0] == 128 && m.dims[1] == 8 && m.dims[2] == kTmaPagedSlots));
    CHECK((m.strides[0] == 256 && m.strides[1] == 2048));
    CHECK(m.box[2] == unsigned(page < 64 ? page : 64));
  }
  // Head dim 64, fp16: one panel, the same boxes.
  a = decode_args();
  a.head_dim = 64;
  a.dtype = DType::fp16;
  Variant h = default_variant(a, Arch::sm90a);
  h.tile.loader = Loader::tma;
  m = decode_kv_map_shape(h, plan_launch(h, a, 132).params);
  CHECK((m.dims[0] == 64 && m.strides[0] == 128 && m.strides[1] == 1024 && m.box[0] == 64));
}

// Varlen packed batches (cu_seqlens): the host sees only the two pointers, never the
// offsets behind them (device memory), so it checks both-or-neither, no paged cache and
// int32 alignment; q_len / kv_len are the longest sequence and must be given (>= 1): they
// size the grid. Monotonic offsets within the tensors are the caller's promise.
TEST_CASE("varlen: what the host validates", "[launch][varlen]") {
  alignas(16) static int cu[8] = {0, 3, 3, 10};
  auto msg = [](auto f) {
    AttentionArgs a = decode_args();
    a.q_len = 1000;
    a.kv_len = 1000;
    a.cu_seqlens_q = cu;
    a.cu_seqlens_k = cu;
    return validation_message(a, f);
  };
  CHECK(msg([](AttentionArgs&) {}).empty());
  CHECK_THAT(msg([](AttentionArgs& a) { a.cu_seqlens_k = nullptr; }),
             Catch::Contains("cu_seqlens_k = ") && Catch::Contains("needs both (or neither)"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.cu_seqlens_q = nullptr; }), Catch::Contains("needs both (or neither)"));
  CHECK(msg([](AttentionArgs& a) { a.cu_seqlens_q = a.cu_seqlens_k = nullptr; }).empty());
  CHECK_THAT(msg([](AttentionArgs& a) { a.cu_seqlens_k = reinterpret_cast<const int*>(g_dummy + 2); }),
             Catch::Contains("cu_seqlens_k = ") && Catch::Contains("4-byte aligned"));
  // Paged caches locate keys per batch row; varlen packs them: not both.
  CHECK_THAT(msg([](AttentionArgs& a) {
               a.block_table = reinterpret_cast<const int*>(g_dummy);
               a.page_size = 64;
               a.max_pages = 16;
             }),
             Catch::Contains("cu_seqlens with a paged cache"));
  // The longest lengths size the grid: they must be given, not derived on the host.
  CHECK_THAT(msg([](AttentionArgs& a) { a.q_len = 0; }), Catch::Contains("q_len = 0"));
  CHECK_THAT(msg([](AttentionArgs& a) { a.kv_len = 0; }), Catch::Contains("kv_len = 0"));
  // Shape-only validation (variant_for) checks the same, without the tensor pointers.
  AttentionArgs a = decode_args();
  a.q = nullptr;
  a.cu_seqlens_q = cu;
  CHECK_THROWS_WITH(validate(a, false), Catch::Contains("needs both"));
  a.cu_seqlens_k = cu;
  CHECK_NOTHROW(validate(a, false));
  a.page_size = 64;  // a paged shape, no table yet
  a.max_pages = 64;
  CHECK_THROWS_WITH(validate(a, false), Catch::Contains("cu_seqlens with a paged cache"));
  a.page_size = a.max_pages = 0;
  // Offsets the host cannot read are not checked: a decreasing pair (here 10 -> 3) is the
  // caller's error; the kernels treat it as an empty sequence (SeqView in mask.cuh).
  static int bad[4] = {0, 10, 3, 12};
  a.cu_seqlens_q = a.cu_seqlens_k = bad;
  CHECK_NOTHROW(validate(a, false));
}

TEST_CASE("varlen: a prefill kernel whatever q_len (never decode), grid over the longest sequence",
          "[launch][varlen]") {
  alignas(16) static int cu_q[4] = {0, 1, 1, 2}, cu_k[4] = {0, 700, 700, 4096};
  for (Family f : {Family::softmax, Family::parallax, Family::parallax_uncentered})
    for (int q_len : {1, 3, 16, 17, 1000})
      for (Arch arch : {Arch::sm80, Arch::sm90a}) {
        AttentionArgs a = decode_args();  // 32 / 8 heads: GQA 4
        a.family = f;
        a.batch = 3;
        a.q_len = q_len;
        a.cu_seqlens_q = cu_q;
        a.cu_seqlens_k = cu_k;
        const Variant v = default_variant(a, arch);
        INFO(v.name());
        CHECK(v.op == Op::prefill);  // decode kernels cannot read a packed batch
        CHECK(is_wgmma(v.tile.mma) == (arch == Arch::sm90a));
        CHECK(!why_illegal(v));
        CHECK_NOTHROW(check_fits(v, a));
        // A decode variant asked for by name is refused, by name.
        AttentionArgs plain = a;
        plain.cu_seqlens_q = plain.cu_seqlens_k = nullptr;
        Variant d = default_variant(plain, arch);
        if (q_len <= 16) {
          REQUIRE(d.op == Op::decode);
          CHECK_NOTHROW(check_fits(d, plain));
          CHECK_THROWS_WITH(check_fits(d, a), Catch::Contains("cannot read a varlen batch") &&
                                                  Catch::Contains(d.name()));
        }
        const LaunchPlan lp = plan_launch(v, a, 132);
        const unsigned rbs = unsigned((q_len + v.tile.block_m - 1) / v.tile.block_m);
        if (lp.params.persistent) {  // wgmma: min(items, SMs) CTAs over rbs x 32 heads x 3 sequences
          CHECK(lp.grid.x == std::min(rbs * 32 * 3, 132u));
          CHECK(lp.grid.y * lp.grid.z == 1);
        } else {
          CHECK(lp.grid.x == rbs);
          CHECK(lp.grid.y == 32);
          CHECK(lp.grid.z == 3);  // one z per sequence
        }
        CHECK(lp.params.cu_seqlens_q == cu_q);
        CHECK(lp.params.cu_seqlens_k == cu_k);
        CHECK(lp.params.q_stride_t == 32 * 128);  // packed rows [total, heads, dim]
        CHECK(lp.params.k_stride_t == 8 * 128);
        CHECK(plan_launch(d, plain, 132).params.cu_seqlens_q == nullptr);
      }
}
