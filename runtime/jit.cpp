#include "runtime/jit.hpp"

#include <fmt/format.h>

#include "runtime/compiler.hpp"

namespace plx {

namespace {
CompileRequest request_for(const RenderedKernel& r, const std::string& arch) {
  CompileRequest req;
  req.source = r.source;
  req.headers = template_headers();
  req.arch = arch;
  req.name_expression = r.name_expression;
  req.display_name = r.display_name;
  return req;
}
}  // namespace

Manifest manifest_for(const RenderedKernel& r, const std::string& arch) {
  const CompileRequest req = request_for(r, arch);
  Manifest m;
  m.variant_name = r.display_name;
  m.source = r.source;
  for (const auto& [name, content] : req.headers) m.headers[name] = content;
  m.nvrtc_version = nvrtc_version();
  m.options = canonical_options(req);
  m.options.push_back("name-expression=" + r.name_expression);  // decides the symbol we look up
  m.arch = arch;
  m.generator_version = kGeneratorVersion;
  return m;
}

CompiledKernel compile_kernel(const RenderedKernel& r, const std::string& arch) {
  return compile(request_for(r, arch));
}

CompiledKernel compile_kernel(KernelCache& cache, const RenderedKernel& r, const std::string& arch) {
  return cache.get_or_build(manifest_for(r, arch), [&] { return compile_kernel(r, arch); });
}

std::unique_ptr<LoadedKernel> load_kernel(KernelCache& cache, const RenderedKernel& r, const std::string& arch) {
  const Manifest m = manifest_for(r, arch);
  for (int attempt = 0;; ++attempt) {
    CompiledKernel ck = cache.get_or_build(m, [&] { return compile_kernel(r, arch); });
    try {
      cu::Module mod(ck.cubin);
      CUfunction f = mod.function(ck.lowered_name);
      return std::unique_ptr<LoadedKernel>(
          new LoadedKernel{r, std::move(ck), std::move(mod), cu::Launchable(f)});
    } catch (const DriverError& e) {
      if (attempt > 0 || e.code == CUDA_ERROR_OUT_OF_MEMORY) throw;
      cache.quarantine(m.key(), fmt::format("the driver refused the cubin: {}", e.what()));
    }
  }
}

}  // namespace plx
