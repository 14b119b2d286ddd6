// NVRTC: one rendered translation unit in, one cubin for one real arch out. Headers are
// handed over in memory, so nothing on disk (no CUDA include dir) is needed at runtime.
// compile() may run in several threads at once (one nvrtcProgram each).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "runtime/compiled.hpp"

namespace plx {

std::string nvrtc_version();  // "13.0"

struct CompileRequest {
  std::string source;
  std::string source_name = "kernel.cu";
  // include name -> content, e.g. {"plx/decode.cuh", "..."}; matched by #include "name"
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> options;  // extra options, appended in order (e.g. -lineinfo)
  std::string arch;                  // real arch, NVRTC spelling: "sm_90a", "sm_80"
  std::string name_expression;       // e.g. "plx::decode_kernel<Cfg>"; required
  std::string display_name;          // variant name, for messages
};

// Exactly what NVRTC receives, in order; the cache key is built from it:
//   --gpu-architecture=<arch>  real arch, so the result is a cubin (not PTX)
//   -std=c++17                 pinned, so a new NVRTC default cannot change the code
//   -default-device            the templates need no __device__ on every helper
//   --ptxas-options=-v         resource usage in the log (registers, spills, smem)
//   --no-cache                 (NVRTC 13+) bypass the driver's compute cache, whose hits
//                              skip ptxas and so drop the -v lines; we cache cubins ourselves
// followed by req.options. No fast math, no -DNDEBUG: the templates decide.
std::vector<std::string> canonical_options(const CompileRequest& req);

// Throws plx::CompileError: what() = "NVRTC failed to compile <display_name> (<arch>)",
// the first error lines, and a +-3 line excerpt of the failing file with '>' on the line.
// Resource fields of the result are parsed from the ptxas lines of the kernel named by
// the lowered name (static_smem is 0 when ptxas reports none; -1 when the kernel's lines
// are missing).
CompiledKernel compile(const CompileRequest& req);

namespace detail {
// Exposed for tests: parse ptxas -v output for one mangled kernel into `k`.
void parse_ptxas_info(const std::string& log, const std::string& mangled, CompiledKernel& k);
}  // namespace detail

// ptxas's "Potential Performance Loss" notes in a kernel's log, one string each (e.g.
// C7515/C7518: every wgmma of the kernel serialised, which halves a wgmma kernel's speed
// while it still compiles and runs correctly). Empty for a clean kernel.
std::vector<std::string> performance_warnings(const CompiledKernel& k);
namespace detail {
}  // namespace detail

}  // namespace plx
