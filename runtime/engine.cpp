// plx::Engine: validation, variant choice, kernel loading (once per variant) and launch.
// The hot path -- a repeated call with a known variant -- is: validate, build the key,
// one map lookup under a mutex, fill AttnParams, cuLaunchKernel. With a tuning database,
// the variant choice adds one hash-map lookup of the call's bucket (a few ints, no string).
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "autotune/bucket_key.hpp"
#include "autotune/choose_variant.hpp"
#include "autotune/tuning_db.hpp"
#include "generator/render.hpp"
#include "parallax/parallax.hpp"
#include "runtime/jit.hpp"
#include "runtime/launch.hpp"

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
  // The tuning database of this GPU, read once at construction and never written here;
  // `tuned` is false without a usable one, and the choice is then the model's, unlooked-up.
  std::optional<TuningDb> db;
  bool tuned = false;
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

  // What attention(a) without a variant name runs. `a` is validated.
  Variant choose(const AttentionArgs& a) {
    if (!tuned) return default_variant(a, device.arch());
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
      v = tuned_variant(*db, a, device.arch());
      std::lock_guard lock(mu);
      choices.emplace(b, v);
    }
    return v ? *v : default_variant(a, device.arch());
  }

  LoadedKernel& kernel(const std::string& name, const std::function<RenderedKernel()>& render_fn) {
    std::lock_guard lock(mu);
    auto it = kernels.find(name);
    if (it != kernels.end()) return *it->second;
    cu::CurrentContext ctx(device);
    auto k = load_kernel(cache, render_fn(), device.arch_string());
    return *kernels.emplace(name, std::move(k)).first->second;
  }

  // Grows (never shrinks) the stream's workspace. The old buffer may still be read by
  // kernels queued on the stream, so it is retired, not freed, until the engine goes: no
  // synchronisation, ever. Growth allocates, which a CUDA graph capture forbids, so during
  // a capture a too-small workspace is an error that says what to do.
  float* workspace(CUstream s, std::size_t floats) {
    std::lock_guard lock(mu);
    Workspace& w = workspaces[s];
    const std::size_t bytes = floats * sizeof(float);
    if (w.buf.size() < bytes) {
      refuse_growth_in_capture(s, bytes, "split-KV workspace");
      if (w.buf.size() > 0) retired.push_back(std::move(w.buf));
      w.buf = cu::Buffer(bytes + bytes / 2);  // headroom: growth is rare
    }
    return static_cast<float*>(w.buf.data());
  }

  // The stream's merge counters (merge.cuh): zeroed once when allocated, and every launch
  // leaves them at zero, so a larger grid later only ever needs a larger zeroed buffer.
  int* counters(CUstream s, std::size_t n) {
    std::lock_guard lock(mu);
    Workspace& w = workspaces[s];
    const std::size_t bytes = n * sizeof(int);
    if (w.counters.size() < bytes) {
      refuse_growth_in_capture(s, bytes, "split-KV merge counters");
      if (w.counters.size() > 0) retired.push_back(std::move(w.counters));
      w.counters = cu::Buffer(bytes + bytes / 2);
      PLX_CU(cu::api().cuMemsetD8Async(w.counters.ptr(), 0, w.counters.size(), s));
    }
    return static_cast<int*>(w.counters.data());
  }

  static void refuse_growth_in_capture(CUstream s, std::size_t bytes, const char* what) {
    CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
    PLX_CU(cu::api().cuStreamIsCapturing(s, &capturing));
    if (capturing != CU_STREAM_CAPTURE_STATUS_NONE)
      throw UnsupportedError(fmt::format(
          "attention: the {} must grow to {} bytes, which cannot happen during CUDA graph capture; run the "
          "same call once on this stream before capturing",
          what, bytes));
  }

  void run(const Variant& v, const AttentionArgs& a, void* stream) {
    check_fits(v, a);
    if (v.arch != device.arch())
      throw UnsupportedError(fmt::format("variant {} targets {} but device {} is {}", v.name(), to_string(v.arch),
                                         device.name(), device.arch_string()));
    const std::string name = v.name();
    LoadedKernel& main = kernel(name, [&] { return render(v); });
    LaunchPlan lp = plan_launch(v, a, device.sm_count());
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
    void* args[] = {&lp.params};
    cu::launch(main.fn, lp.grid, lp.block, lp.smem_bytes, s, args);
    if (merge) {
      const unsigned rows = unsigned(a.batch) * a.heads_q * a.q_len;
      cu::launch(merge->fn, {rows, 1, 1}, {unsigned(merge->meta.threads), 1, 1}, 0, s, args);
    }
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
  impl_->run(impl_->choose(a), a, stream);
}

void Engine::attention(const AttentionArgs& a, const std::string& variant_name, void* stream) {
  validate(a);
  impl_->run(impl_->parse(variant_name), a, stream);
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
}

std::string Engine::device_name() const { return impl_->device.name(); }
std::string Engine::arch() const { return impl_->device.arch_string(); }
int Engine::sm_count() const { return impl_->device.sm_count(); }

}  // namespace plx
