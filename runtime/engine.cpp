// plx::Engine: validation, variant choice, kernel loading (once per variant) and launch.
// The hot path -- a repeated call with a known variant -- is: validate, build the key,
// one map lookup under a mutex, fill AttnParams, cuLaunchKernel. With a tuning database,
// the variant choice adds one hash-map lookup of the call's bucket (a few ints, no string).
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "autotune/bucket_key.hpp"
#include "autotune/choose_variant.hpp"
#include "autotune/sync_tune.hpp"
#include "autotune/tuning_db.hpp"
#include "generator/render.hpp"
#include "parallax/parallax.hpp"
#include "runtime/backward.hpp"
#include "runtime/jit.hpp"
#include "runtime/launch.hpp"
#include "runtime/tma.hpp"

namespace plx {

struct Engine::Impl {
  cu::Device device;
  KernelCache cache;
  std::mutex mu;
  // Kernels by variant name / merge name. unique_ptr: Launchable addresses stay stable.
  std::unordered_map<std::string, std::unique_ptr<LoadedKernel>> kernels;
  // Split-KV partials, one buffer per stream so concurrent streams never share one.
  struct Workspace {
    cu::Buffer buf;
    cu::Buffer counters;  // int32 arrival counters of the fused merge, zero at rest
  };
  std::unordered_map<CUstream, Workspace> workspaces;
  std::vector<cu::Buffer> retired;  // outgrown workspaces, freed with the engine
  // PLX_DECODE_MERGE=kernel: merge split partials in a second launch instead of in the
  // decode kernel's last CTA (kept to measure one against the other).
  const bool fused_merge = [] {
    const char* e = std::getenv("PLX_DECODE_MERGE");
    return !(e && std::string(e) == "kernel");
  }();
  // PLX_PREFILL_ORDER=head: the Hopper prefill goes head by head instead of starting every
  // head's longest row block first (AttnParams::cta_order; kept to measure the two).
  const int prefill_order = [] {
    const char* e = std::getenv("PLX_PREFILL_ORDER");
    return e && std::string(e) == "head" ? 1 : 0;
  }();
  // PLX_PREFILL_GRID=items: the Hopper prefill launches one CTA per work item instead of
  // one persistent CTA per SM (AttnParams::persistent; kept to measure the two).
  const bool prefill_persistent = [] {
    const char* e = std::getenv("PLX_PREFILL_GRID");
    return !(e && std::string(e) == "items");
  }();
  // The backward on sm_90a runs the wgmma kernel (wgmma_backward_variant); elsewhere, or
  // under PLX_BACKWARD_MMA=sync, the mma.sync one (default_backward_variant).
  // PLX_BACKWARD_MMA=wgmma / wgmma-pipe / wgmma-pp / wgmma-red force that consumer loop
  // (measurement switches; wgmma-red fits 3 stages, not 4).
  const std::optional<Mma> backward_mma = []() -> std::optional<Mma> {
    const char* e = std::getenv("PLX_BACKWARD_MMA");
    if (!e) return std::nullopt;
    const std::string m = e;
    if (m == "sync") return Mma::sync;
    if (m == "wgmma") return Mma::wgmma;
    if (m == "wgmma-pipe") return Mma::wgmma_pipe;
    if (m == "wgmma-pp") return Mma::wgmma_pp;
    if (m == "wgmma-red") return Mma::wgmma_red;
    throw UnsupportedError(
        fmt::format("PLX_BACKWARD_MMA='{}': expected sync, wgmma, wgmma-pipe, wgmma-pp or wgmma-red", m));
  }();
  // PLX_BACKWARD_TILE=block_m,block_n,warps,stages: the tile of that choice, for sweeping
  // the backward's tiles through unchanged callers (train_step.py); the variant's legality
  // is checked where it runs, so a bad tile is a clear error, not a wrong kernel.
  const std::optional<std::array<int, 4>> backward_tile = [] () -> std::optional<std::array<int, 4>> {
    const char* e = std::getenv("PLX_BACKWARD_TILE");
    if (!e) return std::nullopt;
    std::array<int, 4> t{};
    char tail = 0;
    if (std::sscanf(e, "%d,%d,%d,%d%c", &t[0], &t[1], &t[2], &t[3], &tail) != 4)
      throw UnsupportedError(fmt::format("PLX_BACKWARD_TILE='{}': expected block_m,block_n,warps,stages (e.g. 128,32,12,3)", e));
    return t;
  }();
  // What attention_backward(a) without a variant name runs: the tuning database's winner
  // for a's backward bucket when there is a usable one (cached per bucket like choose()),
  // else the untuned choice below. PLX_BACKWARD_MMA / PLX_BACKWARD_TILE are measurement
  // switches over the untuned choice, so either one bypasses the database.
  // Varlen batches take the untuned choice: a backward bucket is keyed by q_len / kv_len,
  // which for them are only the longest sequence, not the work the kernels do.
  Variant backward_choice(const AttentionArgs& a) {
    if (!backward_mma && !backward_tile && tuned && !a.cu_seqlens_q) {
      const tune::BucketId b = tune::bucket_of_backward(a);
      std::optional<Variant> v;
      bool known = false;
      {
        std::lock_guard lock(mu);
        if (auto it = choices.find(b); it != choices.end()) {
          v = it->second;
          known = true;
        }
      }
      if (!known) {
        {
          std::lock_guard lock(db_mu);
          v = tuned_backward_variant(*db, a, device.arch());
        }
        std::lock_guard lock(mu);
        choices.emplace(b, v);
      }
      if (v) return *v;
    }
    return untuned_backward_choice(a);
  }
  Variant untuned_backward_choice(const AttentionArgs& a) const {
    const bool hopper = device.arch() == Arch::sm90a && backward_mma != Mma::sync;
    Variant v = hopper ? wgmma_backward_variant(a) : default_backward_variant(a, device.arch());
    if (hopper && backward_mma) v.tile.mma = *backward_mma;
    if (v.tile.mma == Mma::wgmma_red) v.tile.stages = std::min(v.tile.stages, 3);
    if (backward_tile) {
      v.tile.block_m = (*backward_tile)[0];
      v.tile.block_n = (*backward_tile)[1];
      v.tile.warps = (*backward_tile)[2];
      v.tile.stages = (*backward_tile)[3];
    }
    return v;
  }
  // The tuning database of this GPU, read once at construction and written here only under
  // PLX_TUNE=sync; `tuned` is false without a usable one, and the choice is then the
  // model's, unlooked-up.
  std::optional<TuningDb> db;
  std::atomic<bool> tuned{false};
  // PLX_TUNE=sync: a call whose bucket has no winner tunes it first (autotune/sync_tune.hpp)
  // and records the winner; otherwise the model's choice runs at once.
  const bool sync_tune = [] {
    const char* e = std::getenv("PLX_TUNE");
    return e && std::string(e) == "sync";
  }();
  std::mutex tune_mu;  // one synchronous tune at a time
  std::mutex db_mu;    // lookups (first call of a bucket) against a sync tune's record()
  // Per bucket: the database's usable winner, or nullopt for "the model's choice" (which
  // is recomputed: default_variant is a cheap pure function of the exact arguments).
  std::unordered_map<tune::BucketId, std::optional<Variant>, tune::BucketIdHash> choices;

  Impl(int ordinal, const EngineOptions& o)
      : device(ordinal), cache(o.cache_dir.empty() ? KernelCache::default_root() : o.cache_dir) {
    (void)device.arch();  // throws UnsupportedError for GPUs the templates do not target
    load_tuning_db();
  }

  // The engine works without a database: every failure here means "use the model".
  void load_tuning_db() noexcept {
    try {
      db.emplace(cache.root(), GpuIdentity::of(device));
      const DbStatus st = db->load();
      if (st == DbStatus::identity_mismatch && db->file_identity()) {
        static std::once_flag said;  // once per process, however many engines
        std::call_once(said, [&] {
          const std::string line = fmt::format(
              "parallax-jit: tuning database for {} does not match this GPU/driver/templates; using the model's "
              "choices (run plx tune)\n",
              db->file_identity()->describe());
          (void)!::fwrite(line.data(), 1, line.size(), stderr);
        });
      }
      tuned = st == DbStatus::ok && !db->entries().empty();
    } catch (...) {
      db.reset();
      tuned = false;
    }
  }

  // What attention(a) without a variant name runs. `a` is validated. `call`: a real call on
  // `stream` (which may be null, the legacy stream), so PLX_TUNE=sync may tune it now;
  // false for queries such as variant_for.
  Variant choose(const AttentionArgs& a, bool call = false, void* stream = nullptr) {
    const bool may_tune = call && sync_tune && db && !a.stats && !a.cu_seqlens_q;
    if (!tuned && !may_tune) return default_variant(a, device.arch());
    const tune::BucketId b = tune::bucket_of(a);
    std::optional<Variant> v;
    bool known = false;
    {
      std::lock_guard lock(mu);
      if (auto it = choices.find(b); it != choices.end()) {
        v = it->second;
        known = true;
      }
    }
    if (!known) {  // first call of this bucket: string key, map lookup, legality checks
      {
        std::lock_guard lock(db_mu);
        v = tuned_variant(*db, a, device.arch());
      }
      bool cache_it = true;
      if (!v && may_tune) {
        auto t = tune_now(a, stream, b);
        cache_it = t.has_value();
        if (t) v = *t;
      }
      if (cache_it) {
        std::lock_guard lock(mu);
        choices.emplace(b, v);
      }
    }
    // A training forward (stats set) or a varlen batch needs a prefill kernel.
    if (v && (a.stats || a.cu_seqlens_q) && v->op != Op::prefill) v.reset();
    return v ? *v : default_variant(a, device.arch());
  }

  // PLX_TUNE=sync for bucket b: the winner (nullopt inside: keep the model's choice), or
  // nullopt when the call must not tune now (graph capture: retried on a later call).
  std::optional<std::optional<Variant>> tune_now(const AttentionArgs& a, void* stream, const tune::BucketId& b) {
    CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
    PLX_CU(cu::api().cuStreamIsCapturing(static_cast<CUstream>(stream), &capturing));
    if (capturing != CU_STREAM_CAPTURE_STATUS_NONE) return std::nullopt;  // no allocation, no sync
    std::lock_guard tl(tune_mu);
    {
      std::lock_guard lock(mu);  // another thread may have tuned this bucket meanwhile
      if (auto it = choices.find(b); it != choices.end()) return it->second;
    }
    auto say = [](const std::string& line) {
      const std::string s = "parallax-jit: " + line + "\n";
      (void)!::fwrite(s.data(), 1, s.size(), stderr);
    };
    cu::CurrentContext ctx(device);
    GpuProfile g = profile(device.arch() == Arch::sm80 ? "a100" : "h200");
    g.sm_count = device.sm_count();
    {
      std::lock_guard lock(db_mu);
      if (db->ceilings()) g = with_ceilings(g, *db->ceilings());
    }
    tune::SyncHooks hooks;
    hooks.launch = [&](const std::string& name, const AttentionArgs& x, void* s) { run(parse(name), x, s); };
    hooks.load = [&](const std::string& name) {
      const Variant v = parse(name);
      const LoadedKernel& k = kernel(name, [&] { return render(v); });
      return std::pair<int, int>{k.compiled.registers, k.compiled.spill_bytes};
    };
    try {
      tune::SyncResult r = tune::tune_call(device, a, g, hooks);
      if (r.entry) {
        try {
          std::lock_guard lock(db_mu);
          db->record({*r.entry});
          tuned = true;
        } catch (const std::exception& e) {
          r.line += fmt::format(" (not recorded in the tuning database: {})", e.what());
        }
      }
      say(r.line);
      return r.winner;
    } catch (const DriverError& e) {
      if (tune::is_sticky(e)) throw;  // the context is unusable: the call must fail
      say(fmt::format("PLX_TUNE=sync: not tuned ({}); using the model's choice", e.what()));
    } catch (const std::exception& e) {
      say(fmt::format("PLX_TUNE=sync: not tuned ({}); using the model's choice", e.what()));
    }
    return std::optional<Variant>{};
  }

  LoadedKernel& kernel(const std::string& name, const std::function<RenderedKernel()>& render_fn) {
    std::lock_guard lock(mu);
    auto it = kernels.find(name);
    if (it != kernels.end()) return *it->second;
    cu::CurrentContext ctx(device);
    auto k = load_kernel(cache, render_fn(), device.arch_string());
    return *kernels.emplace(name, std::move(k)).first->second;
  }

  // The stream's split-KV partials (fp32).
  float* workspace(CUstream s, std::size_t floats) {
    std::lock_guard lock(mu);
    return static_cast<float*>(grown(s, workspaces[s].buf, floats * sizeof(float), "split-KV workspace", false));
  }

  // The stream's merge counters (merge.cuh): zeroed once when allocated, and every launch
  // leaves them at zero, so a larger grid later only ever needs a larger zeroed buffer.
  int* counters(CUstream s, std::size_t n) {
    std::lock_guard lock(mu);
    return static_cast<int*>(grown(s, workspaces[s].counters, n * sizeof(int), "split-KV merge counters", true));
  }

  // Grows (never shrinks) one of a stream's buffers to `bytes`, with headroom, and zeroes a
  // new one on the stream when asked. The old buffer may still be read by kernels queued on
  // the stream, so it is retired, not freed, until the engine goes: no synchronisation,
  // ever. Growth allocates, which a CUDA graph capture forbids, so during a capture a
  // too-small buffer is an error that says what to do. Call with `mu` held.
  void* grown(CUstream s, cu::Buffer& buf, std::size_t bytes, const char* what, bool zero) {
    if (buf.size() >= bytes) return buf.data();
    CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
    PLX_CU(cu::api().cuStreamIsCapturing(s, &capturing));
    if (capturing != CU_STREAM_CAPTURE_STATUS_NONE)
      throw UnsupportedError(fmt::format(
          "attention: the {} must grow to {} bytes, which cannot happen during CUDA graph capture; run the "
          "same call once on this stream before capturing",
          what, bytes));
    if (buf.size() > 0) retired.push_back(std::move(buf));
    buf = cu::Buffer(bytes + bytes / 2);  // headroom: growth is rare
    if (zero) PLX_CU(cu::api().cuMemsetD8Async(buf.ptr(), 0, buf.size(), s));
    return buf.data();
  }

  void run(const Variant& v, const AttentionArgs& a, void* stream) {
    check_fits(v, a);
    if (v.arch != device.arch())
      throw UnsupportedError(fmt::format("variant {} targets {} but device {} is {}", v.name(), to_string(v.arch),
                                         device.name(), device.arch_string()));
    const std::string name = v.name();
    LoadedKernel& main = kernel(name, [&] { return render(v); });
    LaunchPlan lp = plan_launch(v, a, device.sm_count(), prefill_persistent);
    const CUstream s = static_cast<CUstream>(stream);
    LoadedKernel* merge = nullptr;
    if (lp.splits > 1 && !fused_merge) {
      merge = &kernel(merge_name(v.family, v.dtype, v.head_dim),
                      [&] { return render_merge(v.family, v.dtype, v.head_dim); });
    }
    cu::CurrentContext ctx(device);
    if (lp.splits > 1) {
      float* ws = workspace(s, lp.ws_o_floats + lp.ws_stats_floats);
      lp.params.ws_o = ws;
      lp.params.ws_stats = ws + lp.ws_o_floats;
      if (fused_merge) lp.params.ws_counter = counters(s, std::size_t(lp.grid.y) * lp.grid.z);
    }
    lp.params.cta_order = prefill_order;
    ForwardLaunchArgs args(v, lp.params);  // a TMA decode kernel also takes its K/V tensor maps
    cu::launch(main.fn, lp.grid, lp.block, lp.smem_bytes, s, args.ptrs);
    if (merge) {
      const unsigned rows = unsigned(a.batch) * a.heads_q * a.q_len;
      cu::launch(merge->fn, {rows, 1, 1}, {unsigned(merge->meta.threads), 1, 1}, 0, s, args.ptrs);  // reads p only
    }
  }

  // Two launches: the per-row terms into the stream's workspace, then the gradients.
  void run_backward(const Variant& v, const AttentionArgs& a, const BackwardArgs& g, void* stream) {
    check_fits_backward(v, a);
    if (v.arch != device.arch())
      throw UnsupportedError(fmt::format("variant {} targets {} but device {} is {}", v.name(), to_string(v.arch),
                                         device.name(), device.arch_string()));
    LoadedKernel& main = kernel(v.name(), [&] { return render(v); });
    LoadedKernel& pre = kernel(backward_pre_name(v.family, v.dtype, v.head_dim),
                               [&] { return render_backward_pre(v.family, v.dtype, v.head_dim); });
    BackwardPlan bp = plan_backward(v, a, g);
    const CUstream s = static_cast<CUstream>(stream);
    cu::CurrentContext ctx(device);
    // One workspace: the row terms, then (mma wgmma-red) the fp32 dQ/dR accumulators, which
    // the preprocess zeroes and the post kernel converts into dq and dr.
    bp.params.rows = workspace(s, bp.rows_floats + bp.accum_floats);
    bp.params.accum = bp.accum_floats ? bp.params.rows + bp.rows_floats : nullptr;
    LoadedKernel* post = nullptr;
    if (bp.accum_floats)
      post = &kernel(backward_post_name(v.family, v.dtype, v.head_dim),
                     [&] { return render_backward_post(v.family, v.dtype, v.head_dim); });
    void* args[] = {&bp.params};
    cu::launch(pre.fn, bp.pre_grid, bp.pre_block, 0, s, args);
    cu::launch(main.fn, bp.grid, bp.block, bp.smem_bytes, s, args);
    if (post) cu::launch(post->fn, bp.post_grid, bp.pre_block, 0, s, args);
  }

  Variant parse(const std::string& name) const {
    auto v = parse_variant_name(name);
    if (!v) throw UnsupportedError(fmt::format("'{}' is not a variant name (see `plx gen`)", name));
    return *v;
  }
};

Engine::Engine(int device_ordinal, EngineOptions options)
    : impl_(std::make_unique<Impl>(device_ordinal, options)) {}
Engine::~Engine() = default;

void Engine::attention(const AttentionArgs& a, void* stream) {
  validate(a);
  impl_->run(impl_->choose(a, /*call=*/true, stream), a, stream);
}

void Engine::attention(const AttentionArgs& a, const std::string& variant_name, void* stream) {
  validate(a);
  impl_->run(impl_->parse(variant_name), a, stream);
}

void Engine::attention_backward(const AttentionArgs& a, const BackwardArgs& g, void* stream) {
  validate_backward(a, g);
  impl_->run_backward(impl_->backward_choice(a), a, g, stream);
}

void Engine::attention_backward(const AttentionArgs& a, const BackwardArgs& g, const std::string& variant_name,
                                void* stream) {
  validate_backward(a, g);
  impl_->run_backward(impl_->parse(variant_name), a, g, stream);
}

std::string Engine::backward_variant_for(const AttentionArgs& a) const {
  validate_backward(a, BackwardArgs{}, /*pointers=*/false);
  return impl_->backward_choice(a).name();
}

std::string Engine::variant_for(const AttentionArgs& a) const {
  validate(a, /*pointers=*/false);
  return impl_->choose(a).name();
}

int Engine::splits_for(const AttentionArgs& a, const std::string& variant_name) const {
  validate(a, /*pointers=*/false);
  return decode_splits_for(impl_->parse(variant_name), a, impl_->device.sm_count());
}

void Engine::prepare(const std::string& variant_name) {
  const Variant v = impl_->parse(variant_name);
  impl_->kernel(variant_name, [&] { return render(v); });
  if (v.op == Op::backward)
    impl_->kernel(backward_pre_name(v.family, v.dtype, v.head_dim),
                  [&] { return render_backward_pre(v.family, v.dtype, v.head_dim); });
}

std::string Engine::device_name() const { return impl_->device.name(); }
std::string Engine::arch() const { return impl_->device.arch_string(); }
int Engine::sm_count() const { return impl_->device.sm_count(); }

}  // namespace plx
