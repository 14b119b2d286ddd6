// What NVRTC produced for one variant: the thing the kernel cache stores and loads.
#pragma once
#include <string>

namespace plx {

struct CompiledKernel {
  std::string cubin;          // machine code for one arch (binary)
  std::string lowered_name;   // mangled symbol of the instantiated __global__ template
  std::string log;            // NVRTC + ptxas log (--ptxas-options=-v)
  // Resource usage parsed from the ptxas log; -1 when unknown.
  int registers = -1;
  int spill_bytes = -1;       // spill stores + spill loads
  int stack_bytes = -1;
  int static_smem = -1;
  bool operator==(const CompiledKernel&) const = default;
};

}  // namespace plx
