// [gpu] The training path against the fp64 CPU oracle (runtime/oracle_backward.*) on fresh
// random inputs: the forward's statistics (stats, barv), and every gradient of
// attention_backward (dq, dr, dk, dv), with every output poisoned (NaN) before the call.
// Metric: max|got - ref| / max|ref| (the authors' max-norm relative error) < 1e-2, and no
// NaN. A failure names the variants, the seed, and the first element past the tolerance.
// Skipped, with one line saying so, on machines without a GPU. [capi] cases need none.
// Reproduce with PLX_SEED=<seed>. "[shipped]" (hidden) runs every shipped backward variant.
#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "autotune/heuristics.hpp"
#include "generator/expand.hpp"
#include "generator/legality.hpp"
#include "generator/render.hpp"
#include "generator/spec.hpp"
#include "gpu_engine.hpp"
#include "gpu_harness.hpp"
#include "parallax/parallax.h"
#include "runtime/backward.hpp"
#include "runtime/jit.hpp"
#include "runtime/oracle_backward.hpp"
#include "watchdog.hpp"

using namespace plx;
using namespace plx::testing;
namespace fs = std::filesystem;

namespace {

constexpr Family kFamilies[] = {Family::softmax, Family::parallax, Family::parallax_uncentered};
constexpr double kTol = 1e-2;
// Issue 7's bar is the median of the max-norm relative gradient errors under 1e-2 (as the
// authors measure); a single case may exceed it where bf16 rounding meets a near-zero
// gradient (rows with one visible key: measured 0.0135 for parallax_uncentered d 64), so
// each case gets a bug-catching bound and the median is checked at the end.
constexpr double kCaseTol = 3e-2;
std::vector<double>& gradient_errors() {
  static std::vector<double> errs;
  return errs;
}
// d2/d1 (the mean of r.k under the weights) sums bf16/fp16-rounded weights by design
// (docs/DESIGN.md); its error is relative to the spread of r.k, not to its mean, which can
// be near 0 (measured 0.011 at |mean| 0.96 on the H200).
constexpr double kBartTol = 3e-2;

struct BwdCase {
  AttentionArgs args;        // shapes and flags; pointers are filled in
  std::vector<int> seqused;  // empty: none
  std::string variant;       // backward variant; empty: the engine's choice
};

// One gradient (or statistic) against its reference.
struct Cmp {
  double err = 0;        // max|got - ref| / max|ref| (absolute when ref is all zero)
  long nonfinite = 0;
  long first_bad = -1;   // first index past the tolerance or not finite
  double got = 0, want = 0;
};

Cmp compare(const std::vector<double>& got, const std::vector<double>& ref, double tol = kTol) {
  Cmp c;
  double max_ref = 0, max_err = 0;
  for (double x : ref) max_ref = std::max(max_ref, std::abs(x));
  const double denom = max_ref > 0 ? max_ref : 1.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool finite = std::isfinite(got[i]);
    const double e = finite ? std::abs(got[i] - ref[i]) : INFINITY;
    if (!finite) ++c.nonfinite;
    else max_err = std::max(max_err, e);
    if (c.first_bad < 0 && !(e <= tol * denom)) {
      c.first_bad = long(i);
      c.got = got[i];
      c.want = ref[i];
    }
  }
  c.err = max_err / denom;
  return c;
}

std::vector<double> widen(DType dt, const std::vector<std::uint16_t>& bits) {
  std::vector<double> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) out[i] = to_double(dt, bits[i]);
  return out;
}

// "(b, t, h, d)" of a flat index into a [batch, len, heads, D] tensor.
std::string where(long i, int len, int heads, int D) {
  if (i < 0) return "-";
  const long d = i % D, h = (i / D) % heads, t = (i / D / heads) % len, b = i / D / heads / len;
  return fmt::format("(b {}, t {}, h {}, d {})", b, t, h, d);
}

std::string describe(const AttentionArgs& a) {
  return fmt::format("{} {} d{} b{} q_len {} kv_len {} heads {}/{} causal {} window {}", to_string(a.family),
                     to_string(a.dtype), a.head_dim, a.batch, a.q_len, a.kv_len, a.heads_q, a.heads_kv, a.causal,
                     a.window_left);
}

struct Inputs {
  Tensor q, r, k, v, dout;
  cu::Buffer dq_in, dr_in, dk_in, dv_in, ddout, dlen;
};

Inputs make_inputs(const AttentionArgs& a, const std::vector<int>& seqused, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int D = a.head_dim;
  const std::size_t nq = std::size_t(a.batch) * a.q_len * a.heads_q * D;
  const std::size_t nkv = std::size_t(a.batch) * a.kv_len * a.heads_kv * D;
  Inputs in;
  in.q = random_tensor(rng, nq, D, a.dtype, true);
  in.r = random_tensor(rng, nq, D, a.dtype, true);
  in.k = random_tensor(rng, nkv, D, a.dtype, true);
  in.v = random_tensor(rng, nkv, D, a.dtype, false);
  in.dout = random_tensor(rng, nq, D, a.dtype, false);
  auto up = [](const Tensor& t) {
    cu::Buffer b(t.bits.size() * 2);
    b.upload(t.bits.data(), t.bits.size() * 2);
    return b;
  };
  in.dq_in = up(in.q);
  in.dr_in = up(in.r);
  in.dk_in = up(in.k);
  in.dv_in = up(in.v);
  in.ddout = up(in.dout);
  if (!seqused.empty()) {
    in.dlen = cu::Buffer(seqused.size() * sizeof(int));
    in.dlen.upload(seqused.data(), seqused.size() * sizeof(int));
  }
  return in;
}

struct Outputs {
  cu::Buffer o, stats, barv, dq, dr, dk, dv;
};

Outputs make_outputs(const AttentionArgs& a) {
  const std::size_t nq = std::size_t(a.batch) * a.q_len * a.heads_q * a.head_dim;
  const std::size_t nkv = std::size_t(a.batch) * a.kv_len * a.heads_kv * a.head_dim;
  const std::size_t rows = std::size_t(a.batch) * a.heads_q * a.q_len;
  Outputs o{cu::Buffer(nq * 2), cu::Buffer(rows * 16), cu::Buffer(nq * 2), cu::Buffer(nq * 2), cu::Buffer(nq * 2),
            cu::Buffer(nkv * 2),  cu::Buffer(nkv * 2)};
  // 0xFF bytes are NaN in bf16, fp16 and fp32: an element the kernels skip shows up.
  for (cu::Buffer* b : {&o.o, &o.stats, &o.barv, &o.dq, &o.dr, &o.dk, &o.dv}) b->fill_bytes(0xFF);
  return o;
}

AttentionArgs bind(AttentionArgs a, const Inputs& in, Outputs& out) {
  a.q = in.dq_in.data();
  a.r = in.dr_in.data();
  a.k = in.dk_in.data();
  a.v = in.dv_in.data();
  a.o = out.o.data();
  a.stats = static_cast<float*>(out.stats.data());
  a.barv = out.barv.data();
  if (in.dlen.size()) a.seqused_k = static_cast<const int*>(in.dlen.data());
  return a;
}

BackwardArgs grads_of(const Inputs& in, Outputs& out) {
  BackwardArgs g;
  g.dout = in.ddout.data();
  g.o = out.o.data();
  g.stats = static_cast<const float*>(out.stats.data());
  g.barv = out.barv.data();
  g.dq = out.dq.data();
  g.dr = out.dr.data();
  g.dk = out.dk.data();
  g.dv = out.dv.data();
  return g;
}

std::vector<std::uint16_t> download16(const cu::Buffer& b) {
  std::vector<std::uint16_t> v(b.size() / 2);
  b.download(v.data(), b.size());
  return v;
}

// Forward with statistics, backward, and the four gradients against the oracle.
void check_backward(Engine& e, const BwdCase& c, const std::string& what) {
  const std::uint64_t seed = fresh_seed();
  const AttentionArgs shape = c.args;
  Inputs in = make_inputs(shape, c.seqused, seed);
  Outputs out = make_outputs(shape);
  const AttentionArgs a = bind(shape, in, out);
  const std::string fwd_variant = e.variant_for(a);
  const std::string bwd_variant = c.variant.empty() ? e.backward_variant_for(a) : c.variant;
  e.attention(a, nullptr);
  if (c.variant.empty()) e.attention_backward(a, grads_of(in, out), nullptr);
  else e.attention_backward(a, grads_of(in, out), c.variant, nullptr);
  PLX_CU(cu::api().cuCtxSynchronize());

  const oracle::Problem p = problem_of(shape, c.seqused);
  const oracle::Gradients ref =
      oracle::backward(p, in.q.exact.data(), in.r.exact.data(), in.k.exact.data(), in.v.exact.data(),
                       in.dout.exact.data());
  struct Item {
    const char* name;
    const cu::Buffer& buf;
    const std::vector<double>& ref;
    bool kv;
  } items[] = {{"dq", out.dq, ref.dq, false}, {"dr", out.dr, ref.dr, false}, {"dk", out.dk, ref.dk, true},
               {"dv", out.dv, ref.dv, true}};
  for (const Item& it : items) {
    if (std::string(it.name) == "dr" && !has_probe(shape.family)) continue;  // softmax has no dr
    const Cmp cmp = compare(widen(shape.dtype, download16(it.buf)), it.ref);
    const int len = it.kv ? shape.kv_len : shape.q_len, heads = it.kv ? shape.heads_kv : shape.heads_q;
    INFO(fmt::format("{} | {} | {} | backward {} | forward {} | seed {} | max-norm rel err {:.3g} | nonfinite {} | "
                     "first bad {} {} got {} want {}",
                     what, it.name, describe(shape), bwd_variant, fwd_variant, seed, cmp.err, cmp.nonfinite,
                     cmp.first_bad, where(cmp.first_bad, len, heads, shape.head_dim), cmp.got, cmp.want));
    CHECK(cmp.nonfinite == 0);
    CHECK(cmp.err < kCaseTol);
    gradient_errors().push_back(cmp.err);
  }
}

AttentionArgs shape_of(Family f, DType dt, int d, int group, int q_len, int kv_len, bool causal, int window) {
  AttentionArgs a;
  a.family = f;
  a.dtype = dt;
  a.head_dim = d;
  a.batch = 1;
  a.heads_kv = group >= 4 ? 1 : 2;
  a.heads_q = a.heads_kv * group;
  a.q_len = q_len;
  a.kv_len = kv_len;
  a.causal = causal;
  a.window_left = window;
  return a;
}

fs::path source_dir() {
  const char* env = std::getenv("PLX_SOURCE_DIR");
  return env ? fs::path(env) : fs::path(PLX_SOURCE_DIR);
}

// Compiles (into the engine's disk cache) every kernel the cases will run, on all cores,
// so the cases load instead of compiling one at a time.
void warm(Engine& e, const std::vector<BwdCase>& cases) {
  std::set<std::string> names;
  std::vector<RenderedKernel> jobs;
  auto add = [&](const Variant& v) {
    if (names.insert(v.name()).second) jobs.push_back(render(v));
    if (v.op == Op::backward && names.insert(backward_pre_name(v.family, v.dtype, v.head_dim)).second)
      jobs.push_back(render_backward_pre(v.family, v.dtype, v.head_dim));
  };
  for (const BwdCase& c : cases) {
    AttentionArgs a = c.args;
    a.stats = reinterpret_cast<float*>(std::uintptr_t(16));  // a training forward
    add(*parse_variant_name(e.variant_for(a)));
    add(*parse_variant_name(c.variant.empty() ? e.backward_variant_for(a) : c.variant));
  }
  KernelCache cache(KernelCache::default_root());
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < jobs.size();) compile_kernel(cache, jobs[i], e.arch());
    });
  for (auto& t : pool) t.join();
}

}  // namespace

TEST_CASE("backward: every family, dtype, head dim and mask against the fp64 oracle", "[gpu][backward]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  std::vector<BwdCase> cases;
  int i = 0;
  for (Family f : kFamilies)
    for (DType dt : {DType::bf16, DType::fp16})
      for (int d : {64, 128})
        for (int mask = 0; mask < 3; ++mask) {  // causal, causal + window, full
          ++i;
          const int group = 1 << (i % 4);
          // Self-attention and chunked prefill (q_len < kv_len), lengths no tile divides.
          const int kv_len = 150 + 37 * (i % 5);
          const int q_len = i % 2 ? kv_len : kv_len - 61;
          const int window = mask == 1 ? 23 + 19 * (i % 4) : -1;
          cases.push_back({shape_of(f, dt, d, group, q_len, kv_len, mask != 2, window), {}, ""});
        }
  warm(*e, cases);
  for (const BwdCase& c : cases) check_backward(*e, c, "matrix");
}

TEST_CASE("backward: GQA 1, 2, 4, 8 with windows that divide no tile", "[gpu][backward]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  std::vector<BwdCase> cases;
  for (int group : {1, 2, 4, 8})
    for (int window : {37, 100}) {
      AttentionArgs a = shape_of(Family::parallax, DType::bf16, 128, group, 333, 333, true, window);
      a.heads_kv = 2;
      a.heads_q = 2 * group;
      cases.push_back({a, {}, ""});
    }
  // Non-causal window (both sides of the diagonal masked), GQA 8, fp16.
  cases.push_back({shape_of(Family::parallax, DType::fp16, 64, 8, 211, 300, false, 45), {}, ""});
  warm(*e, cases);
  for (const BwdCase& c : cases) check_backward(*e, c, "gqa/window");
}

TEST_CASE("backward: rows that see no key and keys past seqused_k get zero gradients", "[gpu][backward]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  std::vector<BwdCase> cases;
  for (Family f : kFamilies) {
    // Causal q_len 300 > kv_len 100: the first 200 rows see nothing (lse = +inf).
    cases.push_back({shape_of(f, DType::bf16, 64, 2, 300, 100, true, -1), {}, ""});
    // Live lengths, one sequence empty: keys past them get dk = dv = 0, rows of the empty
    // sequence dq = dr = 0.
    AttentionArgs a = shape_of(f, DType::bf16, 128, 2, 140, 257, true, -1);
    a.batch = 3;
    cases.push_back({a, {257, 0, 190}, ""});
  }
  warm(*e, cases);
  for (const BwdCase& c : cases) check_backward(*e, c, "empty rows / seqused_k");
}

TEST_CASE("backward: W_R = 0 gives the softmax gradients (Parallax kernels vs softmax kernels)", "[gpu][backward]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  const std::uint64_t seed = fresh_seed();
  AttentionArgs shape = shape_of(Family::parallax, DType::bf16, 128, 2, 200, 200, true, -1);
  Inputs in = make_inputs(shape, {}, seed);
  std::vector<std::uint16_t> zeros(in.r.bits.size(), 0);
  in.dr_in.upload(zeros.data(), zeros.size() * 2);
  std::vector<std::vector<double>> got[2];
  for (int k = 0; k < 2; ++k) {
    shape.family = k ? Family::softmax : Family::parallax;
    Outputs out = make_outputs(shape);
    const AttentionArgs a = bind(shape, in, out);
    e->attention(a, nullptr);
    e->attention_backward(a, grads_of(in, out), nullptr);
    PLX_CU(cu::api().cuCtxSynchronize());
    for (const cu::Buffer* b : {&out.dq, &out.dk, &out.dv}) got[k].push_back(widen(shape.dtype, download16(*b)));
  }
  const char* names[] = {"dq", "dk", "dv"};
  for (int j = 0; j < 3; ++j) {
    const Cmp cmp = compare(got[0][j], got[1][j], 1e-2);
    INFO(fmt::format("{}: parallax (r = 0) vs softmax, seed {}, rel err {:.3g}, first bad {} ({} vs {})", names[j],
                     seed, cmp.err, cmp.first_bad, cmp.got, cmp.want));
    CHECK(cmp.nonfinite == 0);
    CHECK(cmp.err < 1e-2);
  }
}

TEST_CASE("forward statistics (m, d1, d2/d1, lse, barv) against the oracle", "[gpu][backward]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  int i = 0;
  for (Family f : kFamilies)
    for (int d : {64, 128})
      for (int q_len : {5, 190, 300}) {  // 5: a decode-sized call still runs a prefill kernel
        ++i;
        const bool window = i % 3 == 0;
        const AttentionArgs shape =
            shape_of(f, i % 2 ? DType::bf16 : DType::fp16, d, 1 << (i % 4), q_len, 250, true, window ? 41 : -1);
        const std::uint64_t seed = fresh_seed();
        Inputs in = make_inputs(shape, {}, seed);
        Outputs out = make_outputs(shape);
        const AttentionArgs a = bind(shape, in, out);
        const oracle::Problem p = problem_of(shape, {});
        const std::size_t rows = std::size_t(shape.batch) * shape.heads_q * shape.q_len;
        std::vector<double> ref(rows * 4), ref_barv(in.q.exact.size());
        oracle::forward_stats(p, in.q.exact.data(), in.r.exact.data(), in.k.exact.data(), in.v.exact.data(),
                              ref.data(), ref_barv.data());
        // The engine's choice (on sm_90a the wgmma kernel) and the mma.sync kernel.
        const std::string chosen = e->variant_for(a);
        CHECK(chosen.rfind("plx_prefill_", 0) == 0);
        Variant sync = *parse_variant_name(chosen);
        sync.tile = heuristics::default_tile(Op::prefill, f, 0, /*wgmma_prefill=*/false);
        for (const std::string& variant : {chosen, sync.name()}) {
          out.stats.fill_bytes(0xFF);  // poisoned again: the second kernel must write them too
          out.barv.fill_bytes(0xFF);
          e->attention(a, variant, nullptr);
          PLX_CU(cu::api().cuCtxSynchronize());
          std::vector<float> st(rows * 4);
          out.stats.download(st.data(), st.size() * 4);
          long bad = -1, nonfinite = 0;
          double worst = 0;
          for (std::size_t r = 0; r < rows && bad < 0; ++r) {
            const float* s = &st[r * 4];
            const double* w = &ref[r * 4];
            if (std::isinf(w[3])) {  // a row that sees no key: the safe values, exactly
              if (!(s[0] == 0 && s[1] == 0 && s[2] == 0 && std::isinf(s[3]) && s[3] > 0)) bad = long(r);
              continue;
            }
            for (int j = 0; j < 4; ++j) nonfinite += !std::isfinite(s[j]);
            // m and lse: fp32 scores of the same inputs; d1 sums bf16/fp16-rounded weights.
            const double e_m = std::abs(s[0] - w[0]) / std::max(1.0, std::abs(w[0]));
            const double e_d1 = std::abs(s[1] - w[1]) / w[1];
            const double e_bart = std::abs(s[2] - w[2]) / std::max(1.0, std::abs(w[2]));
            const double e_lse = std::abs(s[3] - w[3]) / std::max(1.0, std::abs(w[3]));
            const double e = std::max({e_m * 100, e_d1, e_bart * kTol / kBartTol, e_lse});  // m to 1e-4
            worst = std::max(worst, e);
            if (!(e < kTol)) bad = long(r);
          }
          INFO(fmt::format("{} | {} | seed {} | worst {:.3g} | first bad row {}{}", describe(shape), variant, seed,
                           worst, bad,
                           bad < 0 ? std::string()
                                   : fmt::format(" got ({}, {}, {}, {}) want ({}, {}, {}, {})", st[bad * 4],
                                                 st[bad * 4 + 1], st[bad * 4 + 2], st[bad * 4 + 3], ref[bad * 4],
                                                 ref[bad * 4 + 1], ref[bad * 4 + 2], ref[bad * 4 + 3])));
          CHECK(bad < 0);
          CHECK(nonfinite == 0);
          if (f == Family::parallax) {
            const Cmp cmp = compare(widen(shape.dtype, download16(out.barv)), ref_barv);
            INFO(fmt::format("barv rel err {:.3g}, first bad {} {}", cmp.err, cmp.first_bad,
                             where(cmp.first_bad, shape.q_len, shape.heads_q, d)));
            CHECK(cmp.nonfinite == 0);
            CHECK(cmp.err < kTol);
          }
        }
      }
}

TEST_CASE("backward: bad arguments are refused before any launch", "[gpu][backward]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  alignas(16) static char dummy[64];
  AttentionArgs a = shape_of(Family::parallax, DType::bf16, 128, 1, 64, 64, true, -1);
  a.q = a.r = a.k = a.v = dummy;
  a.o = dummy;
  BackwardArgs g;
  g.dout = g.o = g.dq = g.dr = g.dk = g.dv = dummy;
  g.stats = reinterpret_cast<const float*>(dummy);
  CHECK_THROWS_WITH(e->attention_backward(a, g, nullptr), Catch::Contains("barv"));
  g.barv = dummy;
  a.block_table = reinterpret_cast<const int*>(dummy);
  a.page_size = 16;
  a.max_pages = 4;
  CHECK_THROWS_WITH(e->attention_backward(a, g, nullptr), Catch::Contains("paged"));
  a.block_table = nullptr;
  a.page_size = a.max_pages = 0;
  g.dk = dummy + 8;
  CHECK_THROWS_WITH(e->attention_backward(a, g, nullptr), Catch::Contains("dk"));
  g.dk = dummy;
  const std::string arch = e->arch() == "sm_80" ? "sm80" : "sm90a";
  // A forward variant is not a backward one, and the other way round.
  CHECK_THROWS_WITH(
      e->attention_backward(a, g, "plx_prefill_parallax_bf16_d128_causal_m64_n64_w8_s2_k1_" + arch, nullptr),
      Catch::Contains("not a backward"));
  CHECK_THROWS_WITH(e->attention(a, "plx_backward_parallax_bf16_d128_causal_m64_n32_w4_s2_k1_" + arch, nullptr),
                    Catch::Contains("attention_backward"));
  // A training forward never runs a decode kernel.
  a.q_len = 1;
  a.stats = reinterpret_cast<float*>(dummy);
  a.barv = dummy;
  CHECK(e->variant_for(a).rfind("plx_prefill_", 0) == 0);
}

TEST_CASE("backward through the C API (plx_attention_backward)", "[gpu][backward][capi]") {
  void* lib = dlopen(PLX_BINARY_DIR "/libparallax.so", RTLD_NOW | RTLD_LOCAL);
  REQUIRE(lib);
  using Create = int (*)(plx_engine**, int);
  using Destroy = void (*)(plx_engine*);
  using Fwd = int (*)(plx_engine*, const plx_attention_args*, void*);
  using Bwd = int (*)(plx_engine*, const plx_attention_args*, const plx_backward_args*, void*);
  using LastError = const char* (*)();
  auto create = reinterpret_cast<Create>(dlsym(lib, "plx_engine_create"));
  auto destroy = reinterpret_cast<Destroy>(dlsym(lib, "plx_engine_destroy"));
  auto fwd = reinterpret_cast<Fwd>(dlsym(lib, "plx_attention"));
  auto bwd = reinterpret_cast<Bwd>(dlsym(lib, "plx_attention_backward"));
  auto last_error = reinterpret_cast<LastError>(dlsym(lib, "plx_last_error"));
  auto abi = reinterpret_cast<int (*)()>(dlsym(lib, "plx_abi_version"));
  REQUIRE(bwd);
  REQUIRE(abi);
  CHECK(abi() >= 3);
  plx_attention_args ca{};
  ca.struct_size = sizeof ca;
  plx_backward_args cg{};
  cg.struct_size = sizeof cg;
  CHECK(bwd(nullptr, &ca, &cg, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(last_error()).find("engine is NULL") != std::string::npos);

  Engine* e = engine_or_skip();  // the rest launches
  if (!e) return;
  plx_engine* eng = nullptr;
  REQUIRE(create(&eng, 0) == PLX_OK);
  cg.struct_size = 8;
  CHECK(bwd(eng, &ca, &cg, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(last_error()).find("struct_size") != std::string::npos);
  cg.struct_size = sizeof cg;

  const AttentionArgs shape = shape_of(Family::parallax, DType::bf16, 128, 4, 160, 200, true, 70);
  const std::uint64_t seed = fresh_seed();
  Inputs in = make_inputs(shape, {}, seed);
  Outputs out = make_outputs(shape);
  const AttentionArgs a = bind(shape, in, out);
  ca.variant = PLX_PARALLAX;
  ca.dtype = PLX_BF16;
  ca.batch = a.batch;
  ca.q_len = a.q_len;
  ca.kv_len = a.kv_len;
  ca.heads_q = a.heads_q;
  ca.heads_kv = a.heads_kv;
  ca.head_dim = a.head_dim;
  ca.causal = 1;
  ca.window_left = a.window_left;
  ca.q = a.q;
  ca.r = a.r;
  ca.k = a.k;
  ca.v = a.v;
  ca.o = a.o;
  ca.stats = a.stats;
  ca.barv = a.barv;
  const BackwardArgs g = grads_of(in, out);
  cg.dout = g.dout;
  cg.o = g.o;
  cg.stats = g.stats;
  cg.barv = g.barv;
  cg.dq = g.dq;
  cg.dr = g.dr;
  cg.dk = g.dk;
  cg.dv = g.dv;
  REQUIRE(fwd(eng, &ca, nullptr) == PLX_OK);
  const int rc = bwd(eng, &ca, &cg, nullptr);
  INFO(last_error());
  REQUIRE(rc == PLX_OK);
  PLX_CU(cu::api().cuCtxSynchronize());
  const oracle::Gradients ref = oracle::backward(problem_of(shape, {}), in.q.exact.data(), in.r.exact.data(),
                                                 in.k.exact.data(), in.v.exact.data(), in.dout.exact.data());
  const Cmp dk = compare(widen(shape.dtype, download16(out.dk)), ref.dk);
  const Cmp dq = compare(widen(shape.dtype, download16(out.dq)), ref.dq);
  INFO(fmt::format("seed {} dk err {:.3g} (first bad {}) dq err {:.3g} (first bad {})", seed, dk.err, dk.first_bad,
                   dq.err, dq.first_bad));
  CHECK(dk.nonfinite + dq.nonfinite == 0);
  CHECK(dk.err < kTol);
  CHECK(dq.err < kTol);
  // The ABI 4 varlen fields reach the backward: one offset array alone is refused by name
  // (before any launch; the [varlen] cases below run packed batches).
  alignas(16) static int cu[2] = {0, 160};
  ca.cu_seqlens_q = cu;
  CHECK(bwd(eng, &ca, &cg, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(last_error()).find("needs both") != std::string::npos);
  ca.cu_seqlens_q = nullptr;
  destroy(eng);
}

// Runs after the cases above (Catch keeps declaration order): the median bar.
// The sm_90a wgmma draft (templates/plx/backward_sm90.cuh, specs/backward_sm90_wgmma.yaml):
// every family at d 128 and d 64, self-attention and chunked prefill, GQA, windows, and a
// length that wraps the ring several times. Skipped on GPUs other than sm_90a. The engine's
// default backward stays mma.sync, so the variant is named explicitly.
TEST_CASE("backward: the wgmma kernel (backward_sm90.cuh) against the oracle", "[gpu][backward][wgmma]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  if (e->arch() != std::string("sm_90a")) {
    WARN("the wgmma backward needs sm_90a; this device is " << e->arch());
    return;
  }
  // Not the default tile: stages 2 and block_n 32 wrap the ring more often on these shapes.
  auto wgmma_variant = [](const AttentionArgs& a, Mma mma) {
    Variant v = wgmma_backward_variant(a);
    v.tile = Tile{128, 32, 12, 2, 1, mma};
    return v;
  };
  std::vector<BwdCase> cases;
  for (Family f : kFamilies) {
    std::vector<AttentionArgs> shapes = {
        shape_of(f, DType::bf16, 128, 2, 333, 333, true, -1),   // self-attention, GQA 2
        shape_of(f, DType::fp16, 64, 4, 211, 300, true, 45),    // chunked prefill, window, GQA 4
        shape_of(f, DType::bf16, 128, 8, 700, 777, true, 100),  // window, GQA 8
        shape_of(f, DType::bf16, 64, 1, 1029, 1029, true, -1),  // many tiles: the ring wraps
    };
    for (const AttentionArgs& a : shapes) {
      REQUIRE(!why_illegal(wgmma_variant(a, Mma::wgmma)));
      cases.push_back({a, {}, wgmma_variant(a, Mma::wgmma).name()});
      // The pipelined loop wherever it is legal (not the probe families at d 128), and the
      // ping-pong turns.
      for (Mma m : {Mma::wgmma_pipe, Mma::wgmma_pp})
        if (!why_illegal(wgmma_variant(a, m))) cases.push_back({a, {}, wgmma_variant(a, m).name()});
    }
  }
  // The reduced dQ/dR form (wgmma-red: the probe families at d 128): chunked prefill with a
  // window and GQA 4, fp16, and a length that wraps its two Ds tiles and the ring many times.
  for (Family f : {Family::parallax, Family::parallax_uncentered}) {
    for (const AttentionArgs& a : {shape_of(f, DType::bf16, 128, 2, 333, 333, true, -1),
                                   shape_of(f, DType::bf16, 128, 4, 211, 300, true, 45),
                                   shape_of(f, DType::fp16, 128, 8, 700, 777, true, 100),
                                   shape_of(f, DType::bf16, 128, 1, 1029, 1029, true, -1)}) {
      REQUIRE(!why_illegal(wgmma_variant(a, Mma::wgmma_red)));
      cases.push_back({a, {}, wgmma_variant(a, Mma::wgmma_red).name()});
    }
  }
  warm(*e, cases);
  for (const BwdCase& c : cases) check_backward(*e, c, "wgmma");
}

// wgmma-red runs in 2-CTA clusters (key tiles 2k, 2k + 1 share their query tiles and one
// dQ/dR reduction): odd and even key-tile counts (a padding CTA per kv head when odd), a
// second tile of one key (129), chunked prefill, no mask, windows, GQA 1, 2, 4, 8.
TEST_CASE("backward: wgmma-red cluster pairs against the oracle", "[gpu][backward][wgmma][wgmma_red]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  if (e->arch() != std::string("sm_90a")) {
    WARN("the wgmma backward needs sm_90a; this device is " << e->arch());
    return;
  }
  std::vector<BwdCase> cases;
  for (Family f : {Family::parallax, Family::parallax_uncentered}) {
    for (AttentionArgs a : {shape_of(f, DType::bf16, 128, 1, 129, 129, true, -1),    // 2 tiles, the 2nd of 1 key
                            shape_of(f, DType::bf16, 128, 2, 129, 129, false, -1),   // no mask
                            shape_of(f, DType::fp16, 128, 4, 333, 333, true, -1),    // 3 tiles: padding CTA
                            shape_of(f, DType::bf16, 128, 8, 1029, 1029, true, -1),  // 9 tiles
                            shape_of(f, DType::bf16, 128, 1, 512, 512, true, 100),   // 4 tiles, window
                            shape_of(f, DType::bf16, 128, 2, 100, 1029, true, -1),   // chunked prefill
                            shape_of(f, DType::bf16, 128, 4, 640, 700, false, 77),   // window, 6 tiles
                            shape_of(f, DType::fp16, 128, 8, 1, 257, true, -1)}) {   // one query row
      Variant v = wgmma_backward_variant(a);
      v.tile = Tile{128, 32, 12, 2, 1, Mma::wgmma_red};
      REQUIRE(!why_illegal(v));
      cases.push_back({a, {}, v.name()});
    }
  }
  warm(*e, cases);
  for (const BwdCase& c : cases) check_backward(*e, c, "wgmma-red pairs");
}

TEST_CASE("backward: median max-norm gradient error under 1e-2", "[gpu][backward]") {
  std::vector<double> e = gradient_errors();
  if (e.empty()) return;  // the gradient cases were filtered out or skipped (no GPU)
  std::sort(e.begin(), e.end());
  const double median = e[e.size() / 2];
  INFO(fmt::format("{} gradients: median {:.3g}, max {:.3g}", e.size(), median, e.back()));
  WARN(fmt::format("backward gradient errors over {} tensors: median {:.3g}, max {:.3g}", e.size(), median,
                   e.back()));
  CHECK(median < kTol);
}

TEST_CASE("every shipped backward variant matches the oracle", "[.][gpu][backward][shipped]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  std::vector<BwdCase> cases;
  int i = 0;
  for (const auto& f : fs::directory_iterator(source_dir() / "specs")) {
    if (f.path().extension() != ".yaml") continue;
    for (const Variant& v : expand(load_spec(f.path())).variants) {
      if (v.op != Op::backward || std::string(to_string(v.arch)) != e->arch()) continue;
      ++i;
      AttentionArgs a = shape_of(v.family, v.dtype, v.head_dim, 1 << (i % 4), 0, 0, v.causal,
                                 v.window ? 50 + i % 29 : -1);
      a.kv_len = 190 + i % 7;
      a.q_len = i % 2 ? a.kv_len : 129;
      cases.push_back({a, {}, v.name()});
    }
  }
  REQUIRE(!cases.empty());
  warm(*e, cases);
  for (const BwdCase& c : cases) check_backward(*e, c, "shipped");
}

// ---- Varlen packed batches (cu_seqlens) ---------------------------------------------
// One packed batch per case: the training forward (the engine's prefill choice writes o,
// stats, barv), then the named backward variant. Every gradient is checked against the
// fp64 oracle run on each sequence alone (batch 1, as tests/gpu_varlen.hpp does for the
// forward), the per-sequence references packed like the gradient; the metric is the
// padded tests' (max-norm over the packed tensor, kCaseTol). dq, dr, dk, dv are NaN-
// poisoned, with kBwdGuardRows poisoned rows in front of and behind each: every element
// must be written and finite (zeros for rows that see no key and keys no query sees) and
// the guard rows untouched (CTAs past a sequence's end, empty sequences). The stats rows
// past a sequence's end stay NaN: a kernel reading them would show. A watchdog ends the
// process if a launch hangs (an mbarrier ring whose roles disagree).
namespace {

constexpr int kBwdGuardRows = 16;

struct VarlenBwdCase {
  AttentionArgs shape;             // family, dtype, head_dim, heads, mask; lengths below
  std::vector<int> q_lens, k_lens;  // per sequence; 0 = empty
};

std::string describe_varlen(const VarlenBwdCase& c) {
  std::string d = fmt::format("{} {} d{} heads {}/{} causal {} window {} q,k:", to_string(c.shape.family),
                              to_string(c.shape.dtype), c.shape.head_dim, c.shape.heads_q, c.shape.heads_kv,
                              c.shape.causal, c.shape.window_left);
  for (std::size_t i = 0; i < c.q_lens.size(); ++i) d += fmt::format(" {},{}", c.q_lens[i], c.k_lens[i]);
  return d;
}

VarlenBwdCase varlen_case(Family f, DType dt, int d, int heads_q, int heads_kv, bool causal, int window,
                          std::vector<int> q_lens, std::vector<int> k_lens) {
  VarlenBwdCase c;
  c.shape = shape_of(f, dt, d, 1, 1, 1, causal, window);
  c.shape.heads_q = heads_q;
  c.shape.heads_kv = heads_kv;
  c.shape.batch = int(q_lens.size());
  c.shape.q_len = std::max(1, *std::max_element(q_lens.begin(), q_lens.end()));
  c.shape.kv_len = std::max(1, *std::max_element(k_lens.begin(), k_lens.end()));
  c.q_lens = std::move(q_lens);
  c.k_lens = std::move(k_lens);
  return c;
}

// The shapes every varlen variant runs: both families with probes and softmax, GQA 1-4,
// causal, windows that divide no tile (causal and two-sided), self-attention lengths
// {0 or 1, 17, 130, 257} and one chunked batch (q_len < kv_len per sequence) with a
// sequence of queries but no keys (dq = dr = 0) and one of keys but no queries (dk = dv = 0).
std::vector<VarlenBwdCase> varlen_bwd_cases() {
  const std::vector<int> self0 = {0, 17, 130, 257}, self1 = {1, 17, 130, 257};
  return {
      varlen_case(Family::parallax, DType::bf16, 128, 4, 2, true, -1, self0, self0),
      varlen_case(Family::softmax, DType::bf16, 64, 8, 2, true, 37, self1, self1),
      varlen_case(Family::parallax_uncentered, DType::fp16, 64, 2, 2, false, 45, self0, self0),
      varlen_case(Family::parallax, DType::bf16, 64, 4, 1, true, 29, self1, self1),
      varlen_case(Family::parallax, DType::bf16, 128, 4, 1, true, -1, {5, 64, 0, 100, 20}, {40, 64, 30, 300, 0}),
      varlen_case(Family::softmax, DType::fp16, 128, 4, 2, false, -1, {33, 0, 129}, {70, 45, 200}),
  };
}

// Device buffer of n elements of `elem` bytes behind `guard` poisoned (0xFF) elements and
// followed by as many; data() is the first element after the front guard.
struct Guarded {
  cu::Buffer buf;
  std::size_t n = 0, guard = 0, elem = 2;
  Guarded(std::size_t n_, std::size_t guard_, std::size_t elem_ = 2)
      : buf((std::max<std::size_t>(n_, 1) + 2 * guard_) * elem_), n(n_), guard(guard_), elem(elem_) {
    buf.fill_bytes(0xFF);
  }
  void* data() const { return static_cast<char*>(buf.data()) + guard * elem; }
};

// "(seq s, t, h, d)" of a flat index into a packed [total, heads, D] tensor.
std::string where_packed(long i, const std::vector<int>& cu, int heads, int D) {
  if (i < 0) return "-";
  const long row = i / D / heads;
  int s = 0;
  while (s + 1 < int(cu.size()) - 1 && cu[s + 1] <= row) ++s;
  return fmt::format("(seq {}, t {}, h {}, d {})", s, row - cu[s], (i / D) % heads, i % D);
}

// bwd: the backward variant to run by name; nullopt: attention_backward without a name
// (the engine's choice).
void check_varlen_backward(Engine& e, const VarlenBwdCase& c, const std::optional<Variant>& bwd,
                           const std::string& what) {
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  AttentionArgs a = c.shape;
  const int n = a.batch, D = a.head_dim;
  std::vector<int> cu_q{0}, cu_k{0};
  for (int i = 0; i < n; ++i) {
    cu_q.push_back(cu_q.back() + c.q_lens[i]);
    cu_k.push_back(cu_k.back() + c.k_lens[i]);
  }
  const std::size_t qrow = std::size_t(a.heads_q) * D, krow = std::size_t(a.heads_kv) * D;
  const std::size_t nq = std::size_t(cu_q.back()) * qrow, nkv = std::size_t(cu_k.back()) * krow;
  // One row at least, so that every pointer is valid even for an all-empty side.
  const std::size_t aq = std::max(nq, qrow), akv = std::max(nkv, krow);
  const Tensor q = random_tensor(rng, aq, D, a.dtype, true), r = random_tensor(rng, aq, D, a.dtype, true);
  const Tensor k = random_tensor(rng, akv, D, a.dtype, true), v = random_tensor(rng, akv, D, a.dtype, false);
  const Tensor dout = random_tensor(rng, aq, D, a.dtype, false);
  auto up = [](const Tensor& t) {
    cu::Buffer b(t.bits.size() * 2);
    b.upload(t.bits.data(), t.bits.size() * 2);
    return b;
  };
  cu::Buffer dq_in = up(q), dr_in = up(r), dk_in = up(k), dv_in = up(v), ddout = up(dout);
  cu::Buffer dcu_q((n + 1) * sizeof(int)), dcu_k((n + 1) * sizeof(int));
  dcu_q.upload(cu_q.data(), (n + 1) * sizeof(int));
  dcu_k.upload(cu_k.data(), (n + 1) * sizeof(int));
  const std::size_t stat_rows = std::size_t(n) * a.heads_q * a.q_len;
  Guarded o(aq, 0), barv(aq, 0), stats(stat_rows * 4, 0, 4);
  Guarded dq(nq, kBwdGuardRows * qrow), dr(nq, kBwdGuardRows * qrow);
  Guarded dk(nkv, kBwdGuardRows * krow), dv(nkv, kBwdGuardRows * krow);
  a.q = dq_in.data();
  a.r = dr_in.data();
  a.k = dk_in.data();
  a.v = dv_in.data();
  a.o = o.data();
  a.stats = static_cast<float*>(stats.data());
  a.barv = barv.data();
  a.cu_seqlens_q = static_cast<const int*>(dcu_q.data());
  a.cu_seqlens_k = static_cast<const int*>(dcu_k.data());
  BackwardArgs g;
  g.dout = ddout.data();
  g.o = o.data();
  g.stats = static_cast<const float*>(stats.data());
  g.barv = barv.data();
  g.dq = dq.data();
  g.dr = dr.data();
  g.dk = dk.data();
  g.dv = dv.data();
  const std::string fwd_variant = e.variant_for(a);
  const std::string bwd_variant = bwd ? bwd->name() : e.backward_variant_for(a);
  {
    Watchdog w(60, fmt::format("{} | forward {} + backward {} | {}", what, fwd_variant, bwd_variant, describe_varlen(c)));
    e.attention(a, nullptr);
    if (bwd) e.attention_backward(a, g, bwd->name(), nullptr);
    else e.attention_backward(a, g, nullptr);
    PLX_CU(cu::api().cuCtxSynchronize());
  }

  // The oracle on each sequence alone, packed like the gradients; zeros where a sequence
  // has no queries or no keys.
  std::vector<double> ref_dq(nq, 0.0), ref_dr(nq, 0.0), ref_dk(nkv, 0.0), ref_dv(nkv, 0.0);
  for (int b = 0; b < n; ++b) {
    if (c.q_lens[b] == 0 || c.k_lens[b] == 0) continue;
    AttentionArgs s = c.shape;
    s.batch = 1;
    s.q_len = c.q_lens[b];
    s.kv_len = c.k_lens[b];
    const std::size_t qo = std::size_t(cu_q[b]) * qrow, ko = std::size_t(cu_k[b]) * krow;
    const oracle::Gradients gr = oracle::backward(problem_of(s, {}), q.exact.data() + qo, r.exact.data() + qo,
                                                  k.exact.data() + ko, v.exact.data() + ko, dout.exact.data() + qo);
    std::copy(gr.dq.begin(), gr.dq.end(), ref_dq.begin() + qo);
    std::copy(gr.dr.begin(), gr.dr.end(), ref_dr.begin() + qo);
    std::copy(gr.dk.begin(), gr.dk.end(), ref_dk.begin() + ko);
    std::copy(gr.dv.begin(), gr.dv.end(), ref_dv.begin() + ko);
  }
  struct Item {
    const char* name;
    const Guarded& out;
    const std::vector<double>& ref;
    bool kv;
  } items[] = {{"dq", dq, ref_dq, false}, {"dr", dr, ref_dr, false}, {"dk", dk, ref_dk, true}, {"dv", dv, ref_dv, true}};
  for (const Item& it : items) {
    if (std::string(it.name) == "dr" && !has_probe(a.family)) continue;  // softmax has no dr
    const std::vector<std::uint16_t> bits = download16(it.out.buf);
    long guard_written = 0;
    for (std::size_t i = 0; i < it.out.guard; ++i)
      guard_written += (bits[i] != 0xFFFF) + (bits[it.out.guard + std::max<std::size_t>(it.out.n, 1) + i] != 0xFFFF);
    const std::vector<std::uint16_t> packed(bits.begin() + it.out.guard, bits.begin() + it.out.guard + it.out.n);
    const Cmp cmp = compare(widen(a.dtype, packed), it.ref);
    INFO(fmt::format("{} | {} | {} | backward {} | forward {} | seed {} | max-norm rel err {:.3g} | nonfinite {} | "
                     "guard elements written {} | first bad {} {} got {} want {}",
                     what, it.name, describe_varlen(c), bwd_variant, fwd_variant, seed, cmp.err, cmp.nonfinite,
                     guard_written, cmp.first_bad,
                     where_packed(cmp.first_bad, it.kv ? cu_k : cu_q, it.kv ? a.heads_kv : a.heads_q, D), cmp.got,
                     cmp.want));
    CHECK(guard_written == 0);
    CHECK(cmp.nonfinite == 0);
    CHECK(cmp.err < kCaseTol);
  }
}

// Compiles every kernel the varlen cases run (the training forward's choice, the backward
// variants and their preprocess) on all cores before the first launch.
using VarlenRuns = std::vector<std::pair<VarlenBwdCase, std::optional<Variant>>>;

AttentionArgs varlen_shape(const VarlenBwdCase& c) {
  AttentionArgs a = c.shape;
  a.cu_seqlens_q = a.cu_seqlens_k = reinterpret_cast<const int*>(std::uintptr_t(16));  // unread: choices only
  return a;
}

void warm_varlen(Engine& e, const VarlenRuns& runs) {
  std::vector<BwdCase> named;
  for (const auto& [c, v] : runs) named.push_back({varlen_shape(c), {}, v ? v->name() : ""});
  warm(e, named);
}

Arch engine_arch(Engine& e) { return e.arch() == std::string("sm_90a") ? Arch::sm90a : Arch::sm80; }

// The wgmma variant of a case under consumer loop `mma`, on the engine's default tile or
// (small) the tests' tile: stages 2, block_n 32, which wraps the ring more often.
Variant wgmma_for(const AttentionArgs& a, Mma mma, bool small) {
  Variant v = wgmma_backward_variant(a);
  if (small) v.tile = Tile{128, 32, 12, 2, 1, mma};
  v.tile.mma = mma;
  return v;
}

void run_varlen(Engine& e, const VarlenRuns& runs, const std::string& what) {
  for (const auto& [c, v] : runs) REQUIRE((!v || !why_illegal(*v)));
  warm_varlen(e, runs);
  for (const auto& [c, v] : runs) check_varlen_backward(e, c, v, what);
}

}  // namespace

TEST_CASE("backward varlen: the mma.sync kernel (backward.cuh)", "[gpu][backward][varlen][varlen_sync]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  VarlenRuns runs;
  for (const VarlenBwdCase& c : varlen_bwd_cases()) runs.push_back({c, default_backward_variant(c.shape, engine_arch(*e))});
  run_varlen(*e, runs, "varlen mma.sync");
}

TEST_CASE("backward varlen: the wgmma kernel (backward_sm90.cuh), plain loop", "[gpu][backward][varlen][varlen_wgmma]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  if (e->arch() != std::string("sm_90a")) {
    WARN("the wgmma backward needs sm_90a; this device is " << e->arch());
    return;
  }
  VarlenRuns runs;
  for (const VarlenBwdCase& c : varlen_bwd_cases()) {
    runs.push_back({c, wgmma_for(c.shape, Mma::wgmma, false)});  // the engine's untuned choice
    runs.push_back({c, wgmma_for(c.shape, Mma::wgmma, true)});
  }
  run_varlen(*e, runs, "varlen wgmma");
}

TEST_CASE("backward varlen: the wgmma kernel's pipelined and ping-pong loops",
          "[gpu][backward][varlen][varlen_wgmma_loops]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  if (e->arch() != std::string("sm_90a")) {
    WARN("the wgmma backward needs sm_90a; this device is " << e->arch());
    return;
  }
  VarlenRuns runs;
  for (const VarlenBwdCase& c : varlen_bwd_cases())
    for (Mma m : {Mma::wgmma_pipe, Mma::wgmma_pp, Mma::wgmma_red})
      if (!why_illegal(wgmma_for(c.shape, m, true))) runs.push_back({c, wgmma_for(c.shape, m, true)});
  run_varlen(*e, runs, "varlen wgmma loops");
}

TEST_CASE("backward varlen: the engine's choice (attention_backward without a variant name)",
          "[gpu][backward][varlen][varlen_engine]") {
  Engine* e = engine_or_skip();
  if (!e) return;
  // A varlen call takes the untuned choice, never a tuning database's winner.
  const VarlenBwdCase c = varlen_bwd_cases().front();
  const AttentionArgs a = varlen_shape(c);
  if (!std::getenv("PLX_BACKWARD_MMA") && !std::getenv("PLX_BACKWARD_TILE"))
    CHECK(e->backward_variant_for(a) == (engine_arch(*e) == Arch::sm90a ? wgmma_backward_variant(a)
                                                                          : default_backward_variant(a, Arch::sm80))
                                            .name());
  run_varlen(*e, {{c, std::nullopt}}, "varlen engine choice");
}
