// plx::Engine: validation, variant choice, kernel loading (once per variant) and launch.
// The hot path -- a repeated call with a known variant -- is: validate, build the key,
// one map lookup under a mutex, fill AttnParams, cuLaunchKernel.
#include <fmt/format.h>

#include <mutex>
#include <unordered_map>
#include <vector>

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
  };
  std::unordered_map<CUstream, Workspace> workspaces;
  std::vector<cu::Buffer> retired;  // outgrown workspaces, freed with the engine

  Impl(int ordinal, const EngineOptions& o)
      : device(ordinal), cache(o.cache_dir.empty() ? KernelCache::default_root() : o.cache_dir) {
    (void)device.arch();  // throws UnsupportedError for GPUs the templates do not target
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
      CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
      PLX_CU(cu::api().cuStreamIsCapturing(s, &capturing));
      if (capturing != CU_STREAM_CAPTURE_STATUS_NONE)
        throw UnsupportedError(fmt::format(
            "attention: the split-KV workspace must grow to {} bytes, which cannot happen during CUDA graph "
            "capture; run the same call once on this stream before capturing",
            bytes));
      if (w.buf.size() > 0) retired.push_back(std::move(w.buf));
      w.buf = cu::Buffer(bytes + bytes / 2);  // headroom: growth is rare
    }
    return static_cast<float*>(w.buf.data());
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
    if (lp.splits > 1) {
      merge = &kernel(merge_name(v.family, v.dtype, v.head_dim),
                      [&] { return render_merge(v.family, v.dtype, v.head_dim); });
    }
    cu::CurrentContext ctx(device);
    if (lp.splits > 1) {
      float* ws = workspace(s, lp.ws_o_floats + lp.ws_stats_floats);
      lp.params.ws_o = ws;
      lp.params.ws_stats = ws + lp.ws_o_floats;
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
  impl_->run(default_variant(a, impl_->device.arch()), a, stream);
}

void Engine::attention(const AttentionArgs& a, const std::string& variant_name, void* stream) {
  validate(a);
  impl_->run(impl_->parse(variant_name), a, stream);
}

std::string Engine::variant_for(const AttentionArgs& a) const {
  validate(a, /*pointers=*/false);
  return default_variant(a, impl_->device.arch()).name();
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
