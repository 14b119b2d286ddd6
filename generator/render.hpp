// Variant -> the CUDA C++ translation unit NVRTC compiles. The TU is tiny: it includes the
// template headers (handed to NVRTC in memory) and names one instantiation; everything
// else lives in templates/plx/*.cuh, readable on its own.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "generator/variant.hpp"

namespace plx {

inline constexpr const char* kGeneratorVersion = "parallax-jit-gen/1";

struct RenderedKernel {
  std::string display_name;     // variant name, or plx_merge_<family>_<dtype>_d<D>
  std::string source;           // the translation unit
  std::string name_expression;  // for nvrtcAddNameExpression / nvrtcGetLoweredName
  int threads = 0;              // block size the kernel is built for
  int smem_bytes = 0;           // dynamic shared memory per CTA
};

// Throws UnsupportedError (with why_illegal's reason) for an illegal variant.
RenderedKernel render(const Variant& v);
// The split-KV merge kernel for decode variants of this family, dtype and head dim.
RenderedKernel render_merge(Family f, DType dt, int head_dim);
std::string merge_name(Family f, DType dt, int head_dim);
// The backward's per-row preprocess kernel (backward_pre.cuh) for this family, dtype and
// head dim; render(v) of an Op::backward variant is the main kernel that runs after it.
RenderedKernel render_backward_pre(Family f, DType dt, int head_dim);
std::string backward_pre_name(Family f, DType dt, int head_dim);
// mma wgmma-red's third kernel: the fp32 dQ/dR accumulators into dq and dr.
RenderedKernel render_backward_post(Family f, DType dt, int head_dim);
std::string backward_post_name(Family f, DType dt, int head_dim);

// The device headers, include name -> content (embedded at build time).
const std::vector<std::pair<std::string, std::string>>& template_headers();

}  // namespace plx
