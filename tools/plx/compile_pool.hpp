// NVRTC compiles of many kernels on N threads (each nvrtcProgram is independent), through
// the disk cache when one is given. Used by `plx gen --compile` and `plx tune`.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "generator/render.hpp"
#include "runtime/compiled.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

struct CompileJob {
  RenderedKernel kernel;
  std::string arch;  // "sm_90a"
};

struct CompileOutcome {
  bool ok = false;
  CompiledKernel compiled;  // when ok
  std::string error;        // CompileError (or other plx::Error) message, when not
};

// Outcomes in the order of `jobs`. `progress(done, total)` is called after each job, from
// the worker threads but never concurrently. cache may be null (no caching).
std::vector<CompileOutcome> compile_all(const std::vector<CompileJob>& jobs, KernelCache* cache, int threads,
                                        const std::function<void(std::size_t, std::size_t)>& progress = {});

// std::thread::hardware_concurrency(), at least 1.
int default_jobs();

// A progress callback that redraws one "label done/total" line on stderr when stderr is a
// terminal, and prints nothing otherwise (logs stay clean).
std::function<void(std::size_t, std::size_t)> progress_line(std::string label);

}  // namespace plx::cli
