// The sm_90a wgmma prefill (templates/plx/prefill_sm90.cuh).
//
// [nvrtc] (no GPU): every variant these tests use compiles for sm_90a without spills,
//   keeps its setmaxnreg (no C7508) and its wgmma pipeline (no serialisation warning).
// [gpu] each variant against the fp64 CPU oracle on fresh random inputs, simplest shapes
//   first (one tile, then odd lengths, masks, GQA, chunked prefill, fully masked rows,
//   paged K/V). One line per case, ok or FAIL, with the relative error, the first clearly
//   wrong element (batch, token, head, column; got vs want) and, for a failure, the first
//   8 columns of that row, so a single run on the GPU says what is wrong. A line is
//   printed before every launch and a watchdog ends the process if a kernel hangs.
// [.bench] (hidden; run with "[gpu],[bench]"): ms and TFLOP/s on the four issue-5 shapes
//   for the wgmma variants and the engine's current (mma.sync) default, with both
//   counting conventions, and the relative difference between the two kernels' outputs.
// Reproduce a group with the PLX_SEED printed on its header line (case i uses PLX_SEED + i).
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include "generator/legality.hpp"
#include "generator/render.hpp"
#include "gpu_engine.hpp"
#include "gpu_harness.hpp"
#include "gpu_varlen.hpp"
#include "watchdog.hpp"
#include "runtime/compiler.hpp"
#include "runtime/jit.hpp"

using namespace plx;
using namespace plx::testing;

namespace {

// ------------------------------------------------------------------ variants and cases
Variant wgmma_variant(Family f, DType dt, int d, bool causal, bool window, int consumers = 2, int block_n = 128,
                      int stages = 2, Mma mma = Mma::wgmma) {
  Tile t;
  t.block_m = consumers * wgmma_rows_per_warpgroup(f);
  t.block_n = block_n;
  t.warps = 4 * (consumers + 1);
  t.stages = stages;
  t.split_kv = 1;
  t.mma = mma;
  return variant_of(Op::prefill, f, dt, d, causal, window, Arch::sm90a, t);
}

struct Shape {
  int batch = 1, q_len = 64, kv_len = 64, heads_q = 1, heads_kv = 1;
  int window = -1;             // used when the variant compiles the window in
  std::vector<int> seqused;    // empty: none
  int page_size = 0;           // > 0: K/V through a shuffled paged cache
  bool zero_q = false;         // q = 0: uniform softmax weights, isolates the P.V path
};

struct Case {
  Variant v;
  Shape s;
};

std::string describe(const Shape& s) {
  std::string d = fmt::format("B{} q{} kv{} H{}/{}", s.batch, s.q_len, s.kv_len, s.heads_q, s.heads_kv);
  if (s.window >= 0) d += fmt::format(" win{}", s.window);
  if (!s.seqused.empty()) {
    d += " seqused";
    for (int x : s.seqused) d += fmt::format(",{}", x);
  }
  if (s.page_size) d += fmt::format(" page{}", s.page_size);
  if (s.zero_q) d += " q=0";
  return d;
}

constexpr Family kFamilies[] = {Family::softmax, Family::parallax, Family::parallax_uncentered};
constexpr DType kDtypes[] = {DType::bf16, DType::fp16};

constexpr Mma kPipe = Mma::wgmma_pipe;
constexpr Mma kPp = Mma::wgmma_pp, kPipePp = Mma::wgmma_pipe_pp;
// Every consumer loop: alone, and with ping-pong turns between the consumer warpgroups.
constexpr Mma kLoops[] = {Mma::wgmma, kPipe, kPp, kPipePp};

// Group 1: a single K/V tile, no mask; softmax first (plain GEMM plumbing), q = 0 first
// (uniform weights: only the loads and the P.V wgmma matter), then the pipelined loop.
std::vector<Case> smoke_cases() {
  std::vector<Case> c;
  for (int d : {64, 128}) {
    const Variant sm = wgmma_variant(Family::softmax, DType::bf16, d, false, false);
    const Variant px = wgmma_variant(Family::parallax, DType::bf16, d, false, false);
    c.push_back({sm, {1, 64, 64, 1, 1, -1, {}, 0, true}});
    c.push_back({sm, {1, 64, 64, 1, 1}});
    c.push_back({sm, {1, 128, 128, 1, 1}});
    c.push_back({px, {1, 64, 64, 1, 1}});
    c.push_back({px, {1, 128, 128, 1, 1}});
  }
  for (Family f : {Family::softmax, Family::parallax}) {
    const Variant v = wgmma_variant(f, DType::bf16, 128, false, false, 2, 128, 3, kPipe);
    c.push_back({v, {1, 128, 128, 1, 1}});
    c.push_back({v, {1, 128, 512, 1, 1}});  // 4 tiles: prologue, 2 steady iterations, epilogue
  }
  return c;
}

// Group 2: causal self-attention, every family, dtype and head dim, both consumer loops;
// lengths 64, 128, 77, 1000; GQA 1 and 4; q_len < kv_len (chunked prefill); q_len >
// kv_len (the first q_len - kv_len rows see no key: exact zeros, never NaN).
std::vector<Case> causal_cases() {
  std::vector<Case> c;
  for (Mma mma : kLoops)
    for (int d : {64, 128})
      for (DType dt : kDtypes)
        for (Family f : kFamilies) {
          if (is_pingpong(mma) && dt != DType::bf16) continue;  // same scheduling as bf16
          const Variant v = wgmma_variant(f, dt, d, true, false, 2, 128, is_pipelined(mma) ? 3 : 2, mma);
          c.push_back({v, {1, 64, 64, 2, 2}});
          c.push_back({v, {1, 128, 128, 4, 1}});
          c.push_back({v, {2, 77, 77, 2, 1}});
          c.push_back({v, {1, 129, 300, 4, 1}});
          c.push_back({v, {1, 300, 100, 2, 2}});
          if (dt == DType::bf16) c.push_back({v, {1, 1000, 1000, 2, 1}});
        }
  return c;
}

// Group 3: non-causal, sliding windows (widths that do not divide the tiles, a window of
// 1, windows wider than the sequence), seqused_k with an empty sequence, a paged cache.
std::vector<Case> mask_cases() {
  std::vector<Case> c;
  for (Mma mma : kLoops) {
    const int st = is_pipelined(mma) ? 3 : 2;
    for (Family f : kFamilies)
      for (int d : {64, 128}) {
        const Variant full = wgmma_variant(f, DType::bf16, d, false, false, 2, 128, st, mma);
        c.push_back({full, {1, 77, 77, 2, 1}});
        c.push_back({full, {1, 129, 300, 4, 1}});
        c.push_back({full, {1, 700, 700, 1, 1}});
      }
    for (Family f : kFamilies) {
      const Variant cw = wgmma_variant(f, DType::bf16, 128, true, true, 2, 128, st, mma);
      c.push_back({cw, {1, 1000, 1000, 2, 1, 100}});
      c.push_back({cw, {1, 300, 300, 2, 2, 37}});
      c.push_back({cw, {1, 129, 300, 4, 1, 100}});
      c.push_back({cw, {1, 200, 200, 2, 2, 1}});
      c.push_back({cw, {1, 200, 200, 2, 2, 5000}});
    }
    const Variant cw16 = wgmma_variant(Family::parallax, DType::fp16, 64, true, true, 2, 128, st, mma);
    c.push_back({cw16, {2, 500, 500, 4, 2, 100}});
    const Variant fw = wgmma_variant(Family::parallax, DType::bf16, 128, false, true, 2, 128, st, mma);
    c.push_back({fw, {1, 300, 300, 2, 1, 100}});
    c.push_back({fw, {1, 129, 300, 2, 1, 64}});
    for (Family f : {Family::parallax, Family::softmax}) {
      const Variant v = wgmma_variant(f, DType::bf16, 128, true, false, 2, 128, st, mma);
      c.push_back({v, {3, 129, 700, 2, 1, -1, {700, 0, 333}}});
      c.push_back({v, {2, 200, 1000, 4, 2, -1, {}, 64}});
      c.push_back({v, {2, 200, 1000, 4, 2, -1, {1000, 517}, 16}});
    }
    const Variant sw = wgmma_variant(Family::parallax, DType::bf16, 128, true, true, 2, 128, st, mma);
    c.push_back({sw, {2, 200, 1000, 4, 2, 100, {1000, 150}, 256}});
  }
  return c;
}

// Group 4: the other tiles of the axis: 1 and 3 consumer warpgroups, block_n 64, 2 to 4
// stages.
std::vector<Case> tile_cases() {
  std::vector<Case> c;
  const Shape a{1, 1000, 1000, 2, 1}, b{1, 129, 300, 4, 1}, q_gt_kv{1, 300, 100, 2, 2};
  for (Family f : {Family::parallax, Family::softmax}) {
    for (const Variant& v : {wgmma_variant(f, DType::bf16, 128, true, false, 1, 128),
                             wgmma_variant(f, DType::bf16, 128, true, false, 2, 64),
                             wgmma_variant(f, DType::bf16, 128, true, false, 2, 128, 3),
                             wgmma_variant(f, DType::bf16, 64, true, false, 3, 128),
                             wgmma_variant(f, DType::fp16, 64, true, false, 3, 64),
                             wgmma_variant(f, DType::bf16, 128, true, false, 1, 128, 3, kPipe),
                             wgmma_variant(f, DType::bf16, 128, true, false, 2, 64, 4, kPipe),
                             wgmma_variant(f, DType::bf16, 128, true, false, 2, 128, 2, kPipe),
                             wgmma_variant(f, DType::bf16, 64, true, false, 3, 64, 3, kPipe),
                             wgmma_variant(f, DType::bf16, 128, true, false, 2, 64, 3, kPp),
                             wgmma_variant(f, DType::bf16, 64, true, false, 3, 128, 2, kPp),
                             wgmma_variant(f, DType::fp16, 64, true, false, 3, 64, 3, kPipePp)}) {
      c.push_back({v, a});
      c.push_back({v, b});
      c.push_back({v, q_gt_kv});
    }
  }
  return c;
}

// Group 5: varlen packed batches (cu_seqlens): sequences of 1, 7, 0 (empty), 64, 65, 300
// and 1000 queries, against as many keys (self-attention) or more (chunked prefill), one
// sequence with keys but no queries; every family, dtype and head dim, causal, causal +
// window (widths dividing no tile), non-causal, GQA 1/2/4, 1-3 consumers and every
// consumer loop. The variants are the other groups' (compiled once). gpu_varlen.hpp says
// what is checked: per-sequence oracle, bitwise equal to batch-1 calls, guard rows.
const std::vector<int> kVarQ = {1, 7, 0, 64, 65, 300, 1000, 0};
const std::vector<int> kVarKEq = {1, 7, 0, 64, 65, 300, 1000, 50};
const std::vector<int> kVarKLe = {1, 40, 0, 64, 193, 301, 1000, 50};
std::vector<VarlenCase> varlen_cases() {
  std::vector<VarlenCase> c;
  int i = 0;
  const int gqa[][2] = {{2, 2}, {2, 1}, {4, 1}};  // heads_q / heads_kv: GQA 1, 2, 4
  auto add = [&](const Variant& v, const std::vector<int>& k, int window = -1) {
    const int* g = gqa[i++ % 3];
    c.push_back({v, kVarQ, k, g[0], g[1], window});
  };
  for (int d : {64, 128})
    for (DType dt : kDtypes)
      for (Family f : kFamilies) {
        // The consumer loop rotates (ping-pong only in bf16, as in the causal group).
        Mma mma = kLoops[i % 4];
        if (is_pingpong(mma) && dt != DType::bf16) mma = is_pipelined(mma) ? kPipe : Mma::wgmma;
        const Variant v = wgmma_variant(f, dt, d, true, false, 2, 128, is_pipelined(mma) ? 3 : 2, mma);
        add(v, i % 2 ? kVarKLe : kVarKEq);
      }
  for (Family f : kFamilies) {
    const Mma full_mma = kLoops[i % 4];
    add(wgmma_variant(f, DType::bf16, 64 << (i % 2), false, false, 2, 128, is_pipelined(full_mma) ? 3 : 2, full_mma),
        kVarKLe);
    const Mma cw_mma = kLoops[(i + 1) % 4];
    add(wgmma_variant(f, DType::bf16, 128, true, true, 2, 128, is_pipelined(cw_mma) ? 3 : 2, cw_mma), kVarKEq, 37);
    add(wgmma_variant(f, DType::bf16, 128, true, true, 2, 128, 2, Mma::wgmma), kVarKLe, 100);
  }
  add(wgmma_variant(Family::parallax, DType::fp16, 64, true, true, 2, 128, 2, Mma::wgmma), kVarKLe, 100);
  for (Family f : {Family::parallax, Family::softmax}) {
    add(wgmma_variant(f, DType::bf16, 128, true, false, 1, 128), kVarKLe);                      // 1 consumer
    add(wgmma_variant(f, DType::bf16, 128, true, false, 1, 128, 3, kPipe), kVarKEq);             // 1, pipelined
    add(wgmma_variant(f, DType::bf16, 64, true, false, 3, 128), kVarKEq);                        // 3 consumers
    add(wgmma_variant(f, DType::bf16, 64, true, false, 3, 128, 2, kPp), kVarKLe);                // 3, ping-pong
    add(wgmma_variant(f, DType::fp16, 64, true, false, 3, 64, 3, kPipePp), kVarKEq);             // 3, pipe-pp
  }
  // The engine's own choice for a varlen call (a prefill kernel whatever q_len is).
  VarlenCase own{wgmma_variant(Family::parallax, DType::bf16, 128, true, false), {1, 3, 0, 2}, {9, 3, 5, 700}, 4, 1};
  own.engine_choice = true;
  c.push_back(own);
  return c;
}

std::vector<Variant> variants_of(const std::vector<std::vector<Case>>& groups) {
  std::vector<Variant> out;
  std::set<std::string> seen;
  for (const auto& g : groups)
    for (const Case& c : g)
      if (seen.insert(c.v.name()).second) out.push_back(c.v);
  return out;
}

// The bench's variants for one shape: Parallax and softmax, every consumer loop, 2 or 3
// consumer warpgroups, block_n 64 / 128, 2 or 3 stages.
std::vector<Variant> bench_variants(int d) {
  std::vector<Variant> out;
  for (Family f : {Family::parallax, Family::softmax}) {
    const std::vector<Variant> vs = {
        wgmma_variant(f, DType::bf16, d, true, false, 2, 128, 2),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 128, 3),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 64, 2),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 128, 3, kPipe),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 64, 4, kPipe),
        wgmma_variant(f, DType::bf16, d, true, false, 3, 128, 2),
        wgmma_variant(f, DType::bf16, d, true, false, 3, 64, 3, kPipe),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 128, 2, kPp),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 128, 3, kPp),
        wgmma_variant(f, DType::bf16, d, true, false, 2, 128, 3, kPipePp),
        wgmma_variant(f, DType::bf16, d, true, false, 3, 128, 2, kPp),
    };
    for (const Variant& v : vs)
      if (!why_illegal(v)) out.push_back(v);
  }
  return out;
}

std::vector<std::vector<Case>> all_groups() {
  std::vector<Case> varlen;  // their variants, so that [nvrtc] and warm_cache cover them
  for (const VarlenCase& v : varlen_cases()) varlen.push_back({v.v, {}});
  return {smoke_cases(), causal_cases(), mask_cases(), tile_cases(), varlen};
}

// ------------------------------------------------------------------ GPU plumbing
Engine* sm90_engine_or_skip() {
  Engine* engine = plx::testing::engine_or_skip();
  if (engine && engine->arch() != "sm_90a") {
    WARN("skipping: the wgmma prefill needs sm_90a, this GPU is " << engine->arch());
    return nullptr;
  }
  return engine;
}

void warm_cache(const std::vector<Variant>& vs) {
  static std::set<std::string> done;
  std::vector<Variant> todo;
  for (const Variant& v : vs)
    if (done.insert(v.name()).second) todo.push_back(v);
  if (todo.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  KernelCache cache(KernelCache::default_root());
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < todo.size();) {
        try {
          compile_kernel(cache, render(todo[i]), "sm_90a");
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          errors.push_back(todo[i].name() + ": " + e.what());
        }
      }
    });
  for (auto& t : pool) t.join();
  std::printf("compiled %zu wgmma variants in %.1f s\n", todo.size(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  for (const auto& e : errors) std::printf("COMPILE ERROR %s\n", e.c_str());
  std::fflush(stdout);
}

struct Run {
  AttentionArgs args;
  std::vector<int> seqused;
  Tensor q, r, k, v;
  std::vector<std::uint16_t> out;
  std::vector<double> ref;
  std::string error;  // launch or driver failure
  std::uint64_t seed = 0;
};

bool g_context_dead = false;  // a sticky launch error poisons every later call

// Inputs, launch (with a watchdog), download. The oracle runs later, in parallel.
void launch(Engine& e, const Case& c, Run& run) {
  std::mt19937_64 rng(run.seed);
  AttentionArgs& a = run.args;
  a.family = c.v.family;
  a.dtype = c.v.dtype;
  a.head_dim = c.v.head_dim;
  a.causal = c.v.causal;
  a.window_left = c.v.window ? c.s.window : -1;
  a.batch = c.s.batch;
  a.q_len = c.s.q_len;
  a.kv_len = c.s.kv_len;
  a.heads_q = c.s.heads_q;
  a.heads_kv = c.s.heads_kv;
  run.seqused = c.s.seqused;
  const int D = a.head_dim;
  const std::size_t nq = std::size_t(a.batch) * a.q_len * a.heads_q * D;
  const std::size_t nkv = std::size_t(a.batch) * a.kv_len * a.heads_kv * D;
  run.q = random_tensor(rng, nq, D, a.dtype, true);
  run.r = random_tensor(rng, nq, D, a.dtype, true);
  run.k = random_tensor(rng, nkv, D, a.dtype, true);
  run.v = random_tensor(rng, nkv, D, a.dtype, false);
  if (c.s.zero_q) {
    std::fill(run.q.bits.begin(), run.q.bits.end(), 0);
    std::fill(run.q.exact.begin(), run.q.exact.end(), 0.0);
  }
  if (g_context_dead) {
    run.error = "skipped: an earlier launch left the context unusable";
    return;
  }
  try {
    cu::Buffer dq(nq * 2), dr(nq * 2), dk, dv, dout(nq * 2), dlen, dtable;
    dq.upload(run.q.bits.data(), nq * 2);
    dr.upload(run.r.bits.data(), nq * 2);
    if (c.s.page_size > 0) {
      const Paged pg = make_paged(rng, a, c.s.page_size, run.k, run.v);
      dk = cu::Buffer(pg.k.size() * 2);
      dv = cu::Buffer(pg.v.size() * 2);
      dk.upload(pg.k.data(), pg.k.size() * 2);
      dv.upload(pg.v.data(), pg.v.size() * 2);
      dtable = cu::Buffer(pg.table.size() * sizeof(int));
      dtable.upload(pg.table.data(), pg.table.size() * sizeof(int));
      a.block_table = static_cast<const int*>(dtable.data());
      a.page_size = c.s.page_size;
      a.max_pages = pg.max_pages;
    } else {
      dk = cu::Buffer(nkv * 2);
      dv = cu::Buffer(nkv * 2);
      dk.upload(run.k.bits.data(), nkv * 2);
      dv.upload(run.v.bits.data(), nkv * 2);
    }
    dout.fill_bytes(0xFF);  // NaN in bf16 and fp16: an unwritten element shows up
    a.q = dq.data();
    a.r = dr.data();
    a.k = dk.data();
    a.v = dv.data();
    a.o = dout.data();
    if (!run.seqused.empty()) {
      dlen = cu::Buffer(run.seqused.size() * sizeof(int));
      dlen.upload(run.seqused.data(), run.seqused.size() * sizeof(int));
      a.seqused_k = static_cast<const int*>(dlen.data());
    }
    {
      Watchdog w(30, c.v.name() + " " + describe(c.s));
      e.attention(a, c.v.name(), nullptr);
      PLX_CU(cu::api().cuCtxSynchronize());
    }
    run.out.resize(nq);
    dout.download(run.out.data(), nq * 2);
  } catch (const DriverError& ex) {
    run.error = ex.what();
    // A fault inside a kernel (illegal address, misaligned access) is sticky: every later
    // call fails the same way. A refused launch (e.g. too much shared memory) is not.
    g_context_dead = cu::api().cuCtxSynchronize() != CUDA_SUCCESS;
    if (g_context_dead) run.error += " [the context is now unusable: later cases are skipped]";
  } catch (const std::exception& ex) {
    run.error = ex.what();
  }
  a.q = a.r = a.k = a.v = nullptr;
  a.o = nullptr;
  a.seqused_k = nullptr;
  a.block_table = nullptr;
}

void compute_oracles(std::vector<Run>& runs) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < runs.size();) {
        Run& r = runs[i];
        if (!r.error.empty()) continue;
        r.ref.resize(r.out.size());
        oracle::attention(problem_of(r.args, r.seqused), r.q.exact.data(), r.r.exact.data(), r.k.exact.data(),
                          r.v.exact.data(), r.ref.data());
      }
    });
  for (auto& t : pool) t.join();
}

struct Verdict {
  bool ok = false;
  double rel_err = 0;
  std::string line, detail;
};

Verdict judge(const Case& c, const Run& run) {
  Verdict v;
  const std::string head = fmt::format("{} | {} | seed {}", c.v.name(), describe(c.s), run.seed);
  if (!run.error.empty()) {
    v.line = fmt::format("FAIL {} | error: {}", head, run.error);
    return v;
  }
  const AttentionArgs& a = run.args;
  const int D = a.head_dim;
  double num = 0, den = 0, max_abs = 0;
  long nonfinite = 0, masked_nonzero = 0;
  for (std::size_t i = 0; i < run.ref.size(); ++i) den += run.ref[i] * run.ref[i];
  const double rms = std::sqrt(den / std::max<std::size_t>(run.ref.size(), 1));
  const double bad_at = 10 * tolerance(a.dtype) * std::max(rms, 1e-3);
  std::size_t first_bad = run.ref.size();
  for (std::size_t row = 0; row * D < run.ref.size(); ++row) {
    bool ref_zero = true;
    for (int j = 0; j < D; ++j) ref_zero = ref_zero && run.ref[row * D + j] == 0.0;
    for (int j = 0; j < D; ++j) {
      const std::size_t i = row * D + j;
      const double o = to_double(a.dtype, run.out[i]);
      if (!std::isfinite(o)) {
        ++nonfinite;
        if (first_bad == run.ref.size()) first_bad = i;
        continue;
      }
      if (ref_zero && o != 0.0) ++masked_nonzero;
      const double e = std::abs(o - run.ref[i]);
      num += e * e;
      max_abs = std::max(max_abs, e);
      if (e > bad_at && first_bad == run.ref.size()) first_bad = i;
    }
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  v.rel_err = rel;
  v.ok = nonfinite == 0 && masked_nonzero == 0 && rel < tolerance(a.dtype);
  std::string where = "none";
  if (first_bad < run.ref.size()) {
    // Row order of o: [batch, q_len, heads_q, D].
    const std::size_t row = first_bad / D;
    const int h = int(row % a.heads_q), t = int(row / a.heads_q % a.q_len), b = int(row / a.heads_q / a.q_len);
    where = fmt::format("b {} t {} h {} col {}: got {:.5g} want {:.5g}", b, t, h, first_bad % D,
                        to_double(a.dtype, run.out[first_bad]), run.ref[first_bad]);
    if (!v.ok) {
      std::string got, want;
      for (int j = 0; j < 8; ++j) {
        got += fmt::format(" {:8.4f}", to_double(a.dtype, run.out[row * D + j]));
        want += fmt::format(" {:8.4f}", run.ref[row * D + j]);
      }
      v.detail = fmt::format("      row (b {}, t {}, h {}) cols 0..7\n        got {}\n        want{}", b, t, h, got,
                             want);
    }
  }
  v.line = fmt::format("{} {} | rel_err {:.2e} (tol {:.0e}) max_abs {:.2e} nonfinite {} masked_rows_nonzero {} | "
                       "first bad: {}",
                       v.ok ? "ok  " : "FAIL", head, rel, tolerance(a.dtype), max_abs, nonfinite, masked_nonzero, where);
  return v;
}

bool verbose() {
  static const bool v = std::getenv("PLX_VERBOSE") != nullptr;
  return v;
}

// What every group runner starts with: the engine (null: no sm_90a GPU, skipped), every
// group's variants compiled, a fresh seed and the group's header line.
Engine* begin_group(const char* title, std::size_t n_cases, std::uint64_t& base_seed) {
  Engine* e = sm90_engine_or_skip();
  if (!e) return nullptr;
  warm_cache(variants_of(all_groups()));
  base_seed = fresh_seed();
  std::printf("\n== %s: %zu cases, PLX_SEED=%llu (case i uses seed PLX_SEED + i)\n", title, n_cases,
              static_cast<unsigned long long>(base_seed));
  std::fflush(stdout);
  return e;
}

// Output kept short for a log read from its tail: per group, the first failures in full
// (with the row dump), one line per variant that failed, and a summary line.
// PLX_VERBOSE=1 adds a line before every launch and one per passing case.
void run_group(const char* title, const std::vector<Case>& cases) {
  std::uint64_t base_seed = 0;
  Engine* e = begin_group(title, cases.size(), base_seed);
  if (!e) return;
  std::vector<Run> runs(cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    runs[i].seed = base_seed + i;
    if (verbose()) {
      std::printf("   launch %zu: %s | %s\n", i, cases[i].v.name().c_str(), describe(cases[i].s).c_str());
      std::fflush(stdout);
    }
    launch(*e, cases[i], runs[i]);
  }
  compute_oracles(runs);
  constexpr int kShown = 8;
  int failed = 0;
  double worst_ok = 0;
  std::string worst_ok_line;
  struct PerVariant {
    int cases = 0, failed = 0;
  };
  std::vector<std::pair<std::string, PerVariant>> per;  // in first-seen order
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Verdict v = judge(cases[i], runs[i]);
    const std::string name = cases[i].v.name();
    auto it = std::find_if(per.begin(), per.end(), [&](const auto& x) { return x.first == name; });
    if (it == per.end()) it = per.insert(per.end(), {name, {}});
    ++it->second.cases;
    if (!v.ok) {
      ++it->second.failed;
      if (failed < kShown || verbose()) {
        std::printf("%s\n", v.line.c_str());
        if (!v.detail.empty()) std::printf("%s\n", v.detail.c_str());
      }
      ++failed;
    } else {
      if (verbose()) std::printf("%s\n", v.line.c_str());
      if (v.rel_err >= worst_ok) {
        worst_ok = v.rel_err;
        worst_ok_line = v.line;
      }
    }
  }
  if (failed > kShown && !verbose()) std::printf("   ... %d more failures (PLX_VERBOSE=1 prints all)\n", failed - kShown);
  for (const auto& [name, pv] : per)
    if (pv.failed) std::printf("   variant %s: %d of %d cases failed\n", name.c_str(), pv.failed, pv.cases);
  if (!worst_ok_line.empty()) std::printf("   largest error among passing cases: %s\n", worst_ok_line.c_str());
  std::printf("== %s: %d of %zu failed\n", title, failed, cases.size());
  std::fflush(stdout);
  INFO(title << ": " << failed << " of " << cases.size() << " cases failed (lines above)");
  CHECK(failed == 0);
}

// Group 5's runner: launches one by one (watchdog), oracles in parallel, one line per
// failure as run_group.
void run_varlen_group(const char* title, const std::vector<VarlenCase>& cases) {
  std::uint64_t base_seed = 0;
  Engine* e = begin_group(title, cases.size(), base_seed);
  if (!e) return;
  std::vector<VarlenRun> runs(cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    runs[i].seed = base_seed + i;
    if (verbose()) {
      std::printf("   launch %zu: %s | %s\n", i, cases[i].v.name().c_str(), describe_varlen(cases[i]).c_str());
      std::fflush(stdout);
    }
    if (g_context_dead) {
      runs[i].error = "skipped: an earlier launch left the context unusable";
      continue;
    }
    varlen_launch(*e, cases[i], runs[i], [](const std::string& what, const std::function<void()>& f) {
      Watchdog w(30, what);
      f();
    });
    if (!runs[i].error.empty()) g_context_dead = cu::api().cuCtxSynchronize() != CUDA_SUCCESS;
  }
  varlen_oracles(runs);
  int failed = 0;
  double worst = 0;
  std::string worst_line;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const VarlenVerdict v = varlen_judge(cases[i], runs[i]);
    if (!v.ok) {
      ++failed;
      std::printf("%s\n", v.line.c_str());
    } else {
      if (verbose()) std::printf("%s\n", v.line.c_str());
      if (v.worst_rel >= worst) {
        worst = v.worst_rel;
        worst_line = v.line;
      }
    }
  }
  if (!worst_line.empty()) std::printf("   largest error among passing cases: %s\n", worst_line.c_str());
  std::printf("== %s: %d of %zu failed\n", title, failed, cases.size());
  std::fflush(stdout);
  INFO(title << ": " << failed << " of " << cases.size() << " cases failed (lines above)");
  CHECK(failed == 0);
}

}  // namespace

// ------------------------------------------------------------------ tests

TEST_CASE("wgmma prefill variants compile for sm_90a without spills or serialised wgmma", "[nvrtc]") {
  std::vector<Variant> vs = variants_of(all_groups());
  for (int d : {64, 128})
    for (const Variant& v : bench_variants(d)) vs.push_back(v);
  std::set<std::string> seen;
  std::vector<Variant> todo;
  for (const Variant& v : vs)
    if (seen.insert(v.name()).second) todo.push_back(v);
  std::vector<CompiledKernel> out(todo.size());
  std::vector<std::string> err(todo.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < todo.size();) {
        try {
          out[i] = compile_kernel(render(todo[i]), "sm_90a");
        } catch (const std::exception& e) {
          err[i] = e.what();
        }
      }
    });
  for (auto& t : pool) t.join();
  for (size_t i = 0; i < todo.size(); ++i) {
    INFO(todo[i].name() << ": " << err[i]);
    REQUIRE(err[i].empty());
    std::printf("%-76s regs %3d spill %d stack %d smem %d\n", todo[i].name().c_str(), out[i].registers,
                out[i].spill_bytes, out[i].stack_bytes, static_cast<int>(smem_bytes(todo[i])));
    CHECK(out[i].spill_bytes == 0);
    CHECK(out[i].stack_bytes == 0);
    CHECK(out[i].registers <= 255);
    // C7508: setmaxnreg ignored; performance_warnings: e.g. ptxas could not keep the
    // wgmma pipeline asynchronous and inserted waits (correct, half as fast).
    INFO(out[i].log);
    CHECK(out[i].log.find("C7508") == std::string::npos);
    CHECK(performance_warnings(out[i]).empty());
  }
}

TEST_CASE("wgmma prefill: one tile, no mask (GEMM plumbing)", "[gpu]") { run_group("smoke", smoke_cases()); }
TEST_CASE("wgmma prefill: causal, every family, dtype and head dim", "[gpu]") { run_group("causal", causal_cases()); }
TEST_CASE("wgmma prefill: non-causal, windows, seqused_k, paged K/V", "[gpu]") { run_group("masks", mask_cases()); }
TEST_CASE("wgmma prefill: other tiles (1 and 3 consumers, block_n 64, 3 stages)", "[gpu]") {
  run_group("tiles", tile_cases());
}
TEST_CASE("wgmma prefill: varlen packed batches (cu_seqlens)", "[gpu][varlen]") {
  run_varlen_group("varlen", varlen_cases());
}

// ------------------------------------------------------------------ bench
namespace {

// Cheap random 16-bit inputs for the large shapes: uniform in [-1.7, 1.7] (RMS about 1),
// converted like the harness does. xorshift: the bench needs hundreds of millions.
std::vector<std::uint16_t> bench_tensor(std::size_t n, std::uint64_t seed) {
  std::vector<std::uint16_t> out(n);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const float u = float((x >> 40) & 0xFFFFFF) / float(1 << 24) * 3.4f - 1.7f;
    b = half::float_to_bf16(u);
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

TEST_CASE("wgmma prefill: TFLOP/s on the issue-5 shapes", "[.bench]") {
  Engine* e = sm90_engine_or_skip();
  if (!e) return;
  struct BenchShape {
    int batch, len, hq, hkv, d;
  };
  const BenchShape shapes[] = {{1, 4096, 16, 8, 128}, {1, 16384, 16, 8, 128}, {8, 4096, 16, 8, 128}, {2, 8192, 32, 8, 64}};
  std::vector<Variant> all;
  for (int d : {64, 128})
    for (const Variant& v : bench_variants(d)) all.push_back(v);
  warm_cache(all);
  std::printf("\n== bench: causal, q_len = kv_len, bf16; median of 10 launches after 2 warm-ups\n"
              "   TFLOP/s: Parallax-counted 8 D per visible pair for the Parallax families, 4 D for softmax\n");
  for (const BenchShape& sh : shapes) {
    AttentionArgs a;
    a.dtype = DType::bf16;
    a.head_dim = sh.d;
    a.batch = sh.batch;
    a.q_len = a.kv_len = sh.len;
    a.heads_q = sh.hq;
    a.heads_kv = sh.hkv;
    a.causal = true;
    const std::size_t nq = std::size_t(sh.batch) * sh.len * sh.hq * sh.d;
    const std::size_t nkv = std::size_t(sh.batch) * sh.len * sh.hkv * sh.d;
    cu::Buffer dq(nq * 2), dr(nq * 2), dk(nkv * 2), dv(nkv * 2), dout(nq * 2), dref(nq * 2);
    dq.upload(bench_tensor(nq, 1).data(), nq * 2);
    dr.upload(bench_tensor(nq, 2).data(), nq * 2);
    dk.upload(bench_tensor(nkv, 3).data(), nkv * 2);
    dv.upload(bench_tensor(nkv, 4).data(), nkv * 2);
    a.q = dq.data();
    a.r = dr.data();
    a.k = dk.data();
    a.v = dv.data();
    const double pairs = double(sh.batch) * sh.hq * (double(sh.len) * (sh.len + 1) / 2);
    std::printf("\n-- (B %d, L %d, Hq %d, Hkv %d, D %d): %.3g visible pairs\n", sh.batch, sh.len, sh.hq, sh.hkv, sh.d,
                pairs);

    auto time_variant = [&](const std::string& name, void* out) -> double {
      a.o = out;
      std::vector<double> ms;
      Watchdog w(60, name);
      for (int i = 0; i < 12; ++i) {
        cu::Event start, stop;
        start.record();
        e->attention(a, name, nullptr);
        stop.record();
        const double t = cu::elapsed_ms(start, stop);
        if (i >= 2) ms.push_back(t);
      }
      return median(ms);
    };
    auto compare = [&](std::size_t n) {
      std::vector<std::uint16_t> x(n), y(n);
      dout.download(x.data(), n * 2);
      dref.download(y.data(), n * 2);
      double num = 0, den = 0;
      long nonfinite = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double p = half::bf16_to_float(x[i]), q = half::bf16_to_float(y[i]);
        if (!std::isfinite(p)) {
          ++nonfinite;
          continue;
        }
        num += (p - q) * (p - q);
        den += q * q;
      }
      return std::make_pair(den > 0 ? std::sqrt(num / den) : std::sqrt(num), nonfinite);
    };

    double best_ms[2] = {0, 0};  // best wgmma time: Parallax, softmax
    std::string best_name[2];
    for (Family f : {Family::parallax, Family::softmax}) {
      a.family = f;
      const int fi = f == Family::softmax;
      const double flops = pairs * (has_probe(f) ? 8.0 : 4.0) * sh.d;
      const std::string sync = e->variant_for(a);
      try {
        const double t = time_variant(sync, dref.data());
        std::printf("   %-72s %8.3f ms %6.1f TFLOP/s (engine default)\n", sync.c_str(), t, flops / t / 1e9);
      } catch (const std::exception& ex) {
        std::printf("   %-72s ERROR %s\n", sync.c_str(), ex.what());
        continue;
      }
      for (const Variant& v : bench_variants(sh.d)) {
        if (v.family != f) continue;
        try {
          dout.fill_bytes(0xFF);
          const double t = time_variant(v.name(), dout.data());
          const auto [rel, nonfinite] = compare(nq);
          std::printf("   %-72s %8.3f ms %6.1f TFLOP/s  vs default: rel diff %.2e, nonfinite %ld\n",
                      v.name().c_str(), t, flops / t / 1e9, rel, nonfinite);
          if (best_ms[fi] == 0 || t < best_ms[fi]) {
            best_ms[fi] = t;
            best_name[fi] = v.name();
          }
          CHECK(nonfinite == 0);
          CHECK(rel < 2e-2);
        } catch (const std::exception& ex) {
          std::printf("   %-72s ERROR %s\n", v.name().c_str(), ex.what());
          CHECK(false);
        }
        std::fflush(stdout);
      }
    }
    if (best_ms[0] > 0 && best_ms[1] > 0)
      std::printf("   best wgmma: Parallax %.3f ms (%s), softmax %.3f ms (%s): Parallax / softmax time %.2f\n",
                  best_ms[0], best_name[0].c_str(), best_ms[1], best_name[1].c_str(), best_ms[0] / best_ms[1]);
  }
}
