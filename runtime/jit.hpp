// Rendered kernel -> compiled cubin (through the cache) -> loaded, launchable function.
// The staged types follow jitify2: RenderedKernel (generator) -> CompiledKernel (bytes,
// no GPU needed) -> LoadedKernel (a module in the current context).
#pragma once
#include <memory>
#include <string>

#include "generator/render.hpp"
#include "runtime/compiled.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx {

// Everything that decides the cubin of `r` for `arch` ("sm_90a"): the cache key.
Manifest manifest_for(const RenderedKernel& r, const std::string& arch);

// NVRTC compile, no cache. Throws CompileError.
CompiledKernel compile_kernel(const RenderedKernel& r, const std::string& arch);
// Through the cache (memory, disk, else compile and publish).
CompiledKernel compile_kernel(KernelCache& cache, const RenderedKernel& r, const std::string& arch);

struct LoadedKernel {
  RenderedKernel meta;
  CompiledKernel compiled;
  cu::Module module;
  cu::Launchable fn;
};

// Loads through the cache into the current context. A cubin the driver refuses (corrupt
// in a way the checksum cannot see, e.g. built for another arch by a foreign tool) is
// quarantined and rebuilt once.
std::unique_ptr<LoadedKernel> load_kernel(KernelCache& cache, const RenderedKernel& r, const std::string& arch);

}  // namespace plx
