// Varlen packed batches (AttentionArgs::cu_seqlens_q / cu_seqlens_k) for the [gpu] prefill
// suites (test_gpu_prefill_sm90: the wgmma kernel; test_gpu_attention: mma.sync). One case
// is a prefill variant plus a list of (q_len, kv_len) sequences, packed as
// [total, heads, head_dim]. It checks
//   (a) each sequence's rows against the fp64 oracle on that sequence alone (batch 1),
//       relative error ||out - ref|| / ||ref|| under tolerance(dtype); rows that see no key
//       exactly 0;
//   (b) bitwise equality of the varlen output with one batch-1 call per sequence of the
//       same variant on contiguous slices of the same device tensors;
//   (c) every element of the packed output written and finite (o is NaN-poisoned first),
//       and the guard rows in front of and behind it (NaN too) left untouched: empty
//       sequences, and CTAs past a sequence's end, write nothing out of bounds.
// Use: varlen_launch per case (GPU), varlen_oracles over all runs (CPU threads),
// varlen_judge per case.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "generator/variant.hpp"
#include "gpu_harness.hpp"

namespace plx::testing {

struct VarlenCase {
  Variant v;                         // a prefill variant (its name is launched)
  std::vector<int> q_lens, k_lens;   // per sequence; 0 = empty
  int heads_q = 2, heads_kv = 1;
  int window = -1;                   // used when v.window
  bool engine_choice = false;        // launch the engine's own choice for the varlen call
};

inline std::string describe_varlen(const VarlenCase& c) {
  std::string d = fmt::format("varlen H{}/{}", c.heads_q, c.heads_kv);
  if (c.v.window) d += fmt::format(" win{}", c.window);
  d += " q,k:";
  for (std::size_t i = 0; i < c.q_lens.size(); ++i) d += fmt::format(" {},{}", c.q_lens[i], c.k_lens[i]);
  if (c.engine_choice) d += " (engine's choice)";
  return d;
}

struct VarlenRun {
  std::uint64_t seed = 0;
  std::string variant;  // what ran (the engine's choice when asked)
  AttentionArgs args;   // the varlen call (pointers cleared)
  std::vector<int> cu_q, cu_k;
  Tensor q, r, k, v;
  std::vector<std::uint16_t> out;     // guard rows + packed rows + guard rows
  std::vector<std::uint16_t> single;  // the batch-1 calls, same layout
  std::vector<double> ref;            // packed rows only, per-sequence oracle
  std::string error;
};

inline constexpr int kVarlenGuardRows = 16;

// Poisoned guard rows around the packed output: its row width is a multiple of 16 bytes,
// so o stays 16-byte aligned.
inline void varlen_launch(Engine& e, const VarlenCase& c, VarlenRun& run,
                          const std::function<void(const std::string&, const std::function<void()>&)>& guard = {}) {
  std::mt19937_64 rng(run.seed);
  const int n = int(c.q_lens.size()), D = c.v.head_dim;
  run.cu_q.assign(1, 0);
  run.cu_k.assign(1, 0);
  for (int i = 0; i < n; ++i) {
    run.cu_q.push_back(run.cu_q.back() + c.q_lens[i]);
    run.cu_k.push_back(run.cu_k.back() + c.k_lens[i]);
  }
  const int total_q = run.cu_q.back(), total_k = run.cu_k.back();
  AttentionArgs& a = run.args;
  a.family = c.v.family;
  a.dtype = c.v.dtype;
  a.head_dim = D;
  a.causal = c.v.causal;
  a.window_left = c.v.window ? c.window : -1;
  a.batch = n;
  a.q_len = std::max(1, *std::max_element(c.q_lens.begin(), c.q_lens.end()));
  a.kv_len = std::max(1, *std::max_element(c.k_lens.begin(), c.k_lens.end()));
  a.heads_q = c.heads_q;
  a.heads_kv = c.heads_kv;
  const std::size_t qrow = std::size_t(c.heads_q) * D, krow = std::size_t(c.heads_kv) * D;
  const std::size_t nq = std::size_t(total_q) * qrow, nkv = std::size_t(std::max(total_k, 1)) * krow;
  run.q = random_tensor(rng, std::max<std::size_t>(nq, qrow), D, a.dtype, true);
  run.r = random_tensor(rng, std::max<std::size_t>(nq, qrow), D, a.dtype, true);
  run.k = random_tensor(rng, nkv, D, a.dtype, true);
  run.v = random_tensor(rng, nkv, D, a.dtype, false);
  const std::size_t guard_elems = kVarlenGuardRows * qrow, nout = nq + 2 * guard_elems;
  try {
    cu::Buffer dq(run.q.bits.size() * 2), dr(run.r.bits.size() * 2), dk(nkv * 2), dv(nkv * 2);
    cu::Buffer dout(nout * 2), dsingle(nout * 2), dcu_q((n + 1) * sizeof(int)), dcu_k((n + 1) * sizeof(int));
    dq.upload(run.q.bits.data(), run.q.bits.size() * 2);
    dr.upload(run.r.bits.data(), run.r.bits.size() * 2);
    dk.upload(run.k.bits.data(), nkv * 2);
    dv.upload(run.v.bits.data(), nkv * 2);
    dcu_q.upload(run.cu_q.data(), (n + 1) * sizeof(int));
    dcu_k.upload(run.cu_k.data(), (n + 1) * sizeof(int));
    dout.fill_bytes(0xFF);  // NaN in bf16 and fp16, guard rows included
    dsingle.fill_bytes(0xFF);
    auto elems = [](const cu::Buffer& b, std::size_t i) { return static_cast<std::uint16_t*>(b.data()) + i; };
    a.q = dq.data();
    a.r = dr.data();
    a.k = dk.data();
    a.v = dv.data();
    a.o = elems(dout, guard_elems);
    a.cu_seqlens_q = static_cast<const int*>(dcu_q.data());
    a.cu_seqlens_k = static_cast<const int*>(dcu_k.data());
    run.variant = c.engine_choice ? e.variant_for(a) : c.v.name();
    auto launch = [&](const std::string& what, const std::function<void()>& f) {
      if (guard) guard(what, f);
      else f();
    };
    launch(run.variant + " " + describe_varlen(c), [&] {
      if (c.engine_choice) e.attention(a, nullptr);
      else e.attention(a, run.variant, nullptr);
      PLX_CU(cu::api().cuCtxSynchronize());
    });
    // The same kernel on each sequence alone: contiguous slices of the packed tensors.
    for (int i = 0; i < n; ++i) {
      if (c.q_lens[i] == 0 || c.k_lens[i] == 0) continue;  // nothing to run (k empty: zeros, below)
      AttentionArgs s = a;
      s.cu_seqlens_q = s.cu_seqlens_k = nullptr;
      s.batch = 1;
      s.q_len = c.q_lens[i];
      s.kv_len = c.k_lens[i];
      s.q = elems(dq, run.cu_q[i] * qrow);
      s.r = elems(dr, run.cu_q[i] * qrow);
      s.k = elems(dk, run.cu_k[i] * krow);
      s.v = elems(dv, run.cu_k[i] * krow);
      s.o = elems(dsingle, guard_elems + run.cu_q[i] * qrow);
      launch(fmt::format("{} batch-1 sequence {}", run.variant, i), [&] {
        e.attention(s, run.variant, nullptr);
        PLX_CU(cu::api().cuCtxSynchronize());
      });
    }
    run.out.resize(nout);
    run.single.resize(nout);
    dout.download(run.out.data(), nout * 2);
    dsingle.download(run.single.data(), nout * 2);
    for (int i = 0; i < n; ++i)  // a sequence with queries but no keys: exact zeros
      if (c.q_lens[i] > 0 && c.k_lens[i] == 0)
        std::fill_n(run.single.begin() + guard_elems + run.cu_q[i] * qrow, c.q_lens[i] * qrow, std::uint16_t(0));
  } catch (const std::exception& ex) {
    run.error = ex.what();
  }
  a.q = a.r = a.k = a.v = nullptr;
  a.o = nullptr;
  a.cu_seqlens_q = a.cu_seqlens_k = nullptr;
}

// The fp64 oracle on every sequence alone, in parallel over (run, sequence).
inline void varlen_oracles(std::vector<VarlenRun>& runs) {
  std::vector<std::pair<std::size_t, int>> work;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    VarlenRun& r = runs[i];
    if (!r.error.empty()) continue;
    r.ref.assign(std::size_t(r.cu_q.back()) * r.args.heads_q * r.args.head_dim, 0.0);
    for (int b = 0; b + 1 < int(r.cu_q.size()); ++b)
      if (r.cu_q[b + 1] > r.cu_q[b] && r.cu_k[b + 1] > r.cu_k[b]) work.push_back({i, b});
  }
  // Longest sequences first: they bound the wall time.
  std::sort(work.begin(), work.end(), [&](const auto& x, const auto& y) {
    auto cost = [&](const auto& w) {
      const VarlenRun& r = runs[w.first];
      return double(r.cu_q[w.second + 1] - r.cu_q[w.second]) * (r.cu_k[w.second + 1] - r.cu_k[w.second]);
    };
    return cost(x) > cost(y);
  });
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (std::size_t w; (w = next++) < work.size();) {
        VarlenRun& r = runs[work[w].first];
        const int b = work[w].second;
        AttentionArgs s = r.args;
        s.batch = 1;
        s.q_len = r.cu_q[b + 1] - r.cu_q[b];
        s.kv_len = r.cu_k[b + 1] - r.cu_k[b];
        const std::size_t qo = std::size_t(r.cu_q[b]) * s.heads_q * s.head_dim;
        const std::size_t ko = std::size_t(r.cu_k[b]) * s.heads_kv * s.head_dim;
        oracle::attention(problem_of(s, {}), r.q.exact.data() + qo, r.r.exact.data() + qo, r.k.exact.data() + ko,
                          r.v.exact.data() + ko, r.ref.data() + qo);
      }
    });
  for (auto& t : pool) t.join();
}

struct VarlenVerdict {
  bool ok = false;
  double worst_rel = 0;  // the largest per-sequence relative error
  std::string line;      // one line: ok / FAIL, the variant, the case, what failed
};

inline VarlenVerdict varlen_judge(const VarlenCase& c, const VarlenRun& run) {
  VarlenVerdict vd;
  const std::string head = fmt::format("{} | {} | seed {}", run.variant.empty() ? c.v.name() : run.variant,
                                       describe_varlen(c), run.seed);
  if (!run.error.empty()) {
    vd.line = fmt::format("FAIL {} | error: {}", head, run.error);
    return vd;
  }
  const AttentionArgs& a = run.args;
  const std::size_t qrow = std::size_t(a.heads_q) * a.head_dim;
  const std::size_t guard = kVarlenGuardRows * qrow, nq = std::size_t(run.cu_q.back()) * qrow;
  long guard_written = 0, nonfinite = 0, differ = 0, masked_nonzero = 0;
  for (std::size_t i = 0; i < guard; ++i) {
    guard_written += run.out[i] != 0xFFFF;
    guard_written += run.out[guard + nq + i] != 0xFFFF;
  }
  std::string first_differ;
  for (std::size_t i = 0; i < nq; ++i) {
    const std::uint16_t x = run.out[guard + i];
    if (!std::isfinite(to_double(a.dtype, x))) ++nonfinite;
    if (x != run.single[guard + i]) {
      if (!differ)
        first_differ = fmt::format("row {} col {}: varlen {:#06x} batch-1 {:#06x}", i / a.head_dim,
                                   i % a.head_dim, x, run.single[guard + i]);
      ++differ;
    }
  }
  std::string seq_errors, worst_seq;
  bool rel_ok = true;
  for (int b = 0; b + 1 < int(run.cu_q.size()); ++b) {
    const std::size_t lo = std::size_t(run.cu_q[b]) * qrow, hi = std::size_t(run.cu_q[b + 1]) * qrow;
    if (hi <= lo) continue;
    double num = 0, den = 0;
    for (std::size_t row = lo; row < hi; row += a.head_dim) {
      bool ref_zero = true;
      for (int j = 0; j < a.head_dim; ++j) ref_zero = ref_zero && run.ref[row + j] == 0.0;
      for (int j = 0; j < a.head_dim; ++j) {
        const double o = to_double(a.dtype, run.out[guard + row + j]);
        if (!std::isfinite(o)) continue;
        if (ref_zero && o != 0.0) ++masked_nonzero;
        num += (o - run.ref[row + j]) * (o - run.ref[row + j]);
        den += run.ref[row + j] * run.ref[row + j];
      }
    }
    const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    if (rel >= vd.worst_rel) {
      vd.worst_rel = rel;
      worst_seq = fmt::format("seq {} ({},{})", b, run.cu_q[b + 1] - run.cu_q[b], run.cu_k[b + 1] - run.cu_k[b]);
    }
    if (!(rel < tolerance(a.dtype))) {
      rel_ok = false;
      seq_errors += fmt::format(" seq {} ({},{}) rel_err {:.2e};", b, run.cu_q[b + 1] - run.cu_q[b],
                                run.cu_k[b + 1] - run.cu_k[b], rel);
    }
  }
  vd.ok = rel_ok && guard_written == 0 && nonfinite == 0 && differ == 0 && masked_nonzero == 0;
  vd.line = fmt::format("{} {} | worst rel_err {:.2e} at {} (tol {:.0e}) | nonfinite {} masked_rows_nonzero {} "
                        "guard_elems_written {} differ_from_batch1 {}{}{}",
                        vd.ok ? "ok  " : "FAIL", head, vd.worst_rel, worst_seq, tolerance(a.dtype), nonfinite,
                        masked_nonzero, guard_written, differ, differ ? " first: " + first_differ : "",
                        seq_errors.empty() ? "" : " |" + seq_errors);
  return vd;
}

}  // namespace plx::testing
