#include "generator/render.hpp"

#include <fmt/format.h>

#include "generator/embedded.hpp"
#include "generator/legality.hpp"
#include "parallax/errors.hpp"

namespace plx {

namespace {
std::string family_expr(Family f) {
  switch (f) {
    case Family::softmax: return "plx::Family::softmax";
    case Family::parallax: return "plx::Family::parallax";
    case Family::parallax_uncentered: return "plx::Family::parallax_uncentered";
  }
  return "?";
}
std::string dtype_expr(DType d) { return d == DType::bf16 ? "plx::bf16" : "plx::fp16"; }
}  // namespace

std::string merge_name(Family f, DType dt, int head_dim) {
  std::string fam(to_string(f));
  for (auto& c : fam) if (c == '_') c = '-';
  return fmt::format("plx_merge_{}_{}_d{}", fam, to_string(dt), head_dim);
}

RenderedKernel render(const Variant& v) {
  if (auto why = why_illegal(v)) throw UnsupportedError(fmt::format("cannot render {}: {}", v.name(), *why));
  const bool decode = v.op == Op::decode;
  const bool wgmma = is_wgmma(v.tile.mma);  // legality: prefill or backward on sm_90a only
  const char* header = decode ? "plx/decode.cuh" : wgmma ? "plx/prefill_sm90.cuh" : "plx/prefill.cuh";
  const char* config = decode ? "plx::DecodeConfig" : wgmma ? "plx::PrefillSm90Config" : "plx::PrefillConfig";
  const bool tma = v.tile.loader == Loader::tma;  // legality: decode on sm_90a only
  const char* kernel = decode ? (tma ? "plx::decode_tma_kernel" : "plx::decode_kernel")
                              : wgmma ? "plx::prefill_sm90_kernel" : "plx::prefill_kernel";
  if (v.op == Op::backward) {  // the main kernel; render_backward_pre gives its preprocess
    header = wgmma ? "plx/backward_sm90.cuh" : "plx/backward.cuh";
    config = wgmma ? "plx::BackwardSm90Config" : "plx::BackwardConfig";
    kernel = wgmma ? "plx::backward_sm90_kernel" : "plx::backward_kernel";
  }
  // The wgmma configs take (pipelined, ping-pong).
  const bool prefill_wgmma = wgmma && v.op == Op::prefill;
  RenderedKernel r;
  r.display_name = v.name();
  r.threads = block_threads(v);
  r.smem_bytes = static_cast<int>(smem_bytes(v));
  // The static_assert pins the host's smem formula (legality.hpp) to the template's, so
  // a drift between them is a compile error, not an out-of-bounds write on the GPU.
  r.source = fmt::format(
      "// {name}\n"
      "// Rendered by {gen}; the kernel lives in {header}.\n"
      "#include \"{header}\"\n"
      "namespace plx_gen {{\n"
      "using Cfg = {config}<{fam}, {dt}, {d}, {bm}, {bn}, {w}, {s}, {causal}, {window}{extra}>;\n"
      "static_assert(Cfg::kSmemBytes == {smem}, \"host smem_bytes() and the template disagree\");\n"
      "static_assert(Cfg::kThreads == {threads}, \"host and template disagree on the block size\");\n"
      "}}  // namespace plx_gen\n",
      fmt::arg("name", v.name()), fmt::arg("gen", kGeneratorVersion), fmt::arg("header", header),
      fmt::arg("config", config), fmt::arg("fam", family_expr(v.family)), fmt::arg("dt", dtype_expr(v.dtype)),
      fmt::arg("d", v.head_dim), fmt::arg("bm", v.tile.block_m), fmt::arg("bn", v.tile.block_n),
      fmt::arg("w", v.tile.warps), fmt::arg("s", v.tile.stages), fmt::arg("causal", v.causal ? "true" : "false"),
      fmt::arg("window", v.window ? "true" : "false"),
      fmt::arg("extra", prefill_wgmma ? fmt::format(", {}, {}", is_pipelined(v.tile.mma), is_pingpong(v.tile.mma))
                        : wgmma       ? fmt::format(", {}, {}, {}", is_pipelined(v.tile.mma), is_pingpong(v.tile.mma),
                                                    v.tile.mma == Mma::wgmma_red)
                        : tma         ? std::string(", true")  // DecodeConfig's TMA flag
                                      : std::string()),
      fmt::arg("smem", r.smem_bytes),
      fmt::arg("threads", r.threads));
  r.name_expression = fmt::format("{}<plx_gen::Cfg>", kernel);
  return r;
}

RenderedKernel render_merge(Family f, DType dt, int head_dim) {
  if (head_dim != 64 && head_dim != 128)
    throw UnsupportedError(fmt::format("merge kernel: head_dim {} not in {{64, 128}}", head_dim));
  RenderedKernel r;
  r.display_name = merge_name(f, dt, head_dim);
  r.threads = head_dim / 2;
  r.smem_bytes = 0;
  r.source = fmt::format(
      "// {name}\n"
      "// Rendered by {gen}; the kernel lives in plx/merge.cuh.\n"
      "#include \"plx/merge.cuh\"\n"
      "namespace plx_gen {{\n"
      "using Cfg = plx::MergeConfig<{fam}, {dt}, {d}>;\n"
      "}}  // namespace plx_gen\n",
      fmt::arg("name", r.display_name), fmt::arg("gen", kGeneratorVersion), fmt::arg("fam", family_expr(f)),
      fmt::arg("dt", dtype_expr(dt)), fmt::arg("d", head_dim));
  r.name_expression = "plx::merge_kernel<plx_gen::Cfg>";
  return r;
}

namespace {
std::string row_kernel_name(const char* what, Family f, DType dt, int head_dim) {
  std::string fam(to_string(f));
  for (auto& c : fam) if (c == '_') c = '-';
  return fmt::format("plx_{}_{}_{}_d{}", what, fam, to_string(dt), head_dim);
}

// The backward's per-row kernels (plx/backward_pre.cuh): 128 threads, D / 8 per row.
RenderedKernel render_row_kernel(const char* what, const char* entry, Family f, DType dt, int head_dim) {
  if (head_dim != 64 && head_dim != 128)
    throw UnsupportedError(fmt::format("backward {} kernel: head_dim {} not in {{64, 128}}", what, head_dim));
  RenderedKernel r;
  r.display_name = row_kernel_name(what, f, dt, head_dim);
  r.threads = 128;
  r.smem_bytes = 0;
  r.source = fmt::format(
      "// {name}\n"
      "// Rendered by {gen}; the kernel lives in plx/backward_pre.cuh.\n"
      "#include \"plx/backward_pre.cuh\"\n"
      "namespace plx_gen {{\n"
      "using Cfg = plx::BwdPreConfig<{fam}, {dt}, {d}>;\n"
      "static_assert(Cfg::kThreads == {threads}, \"host and template disagree on the block size\");\n"
      "}}  // namespace plx_gen\n",
      fmt::arg("name", r.display_name), fmt::arg("gen", kGeneratorVersion), fmt::arg("fam", family_expr(f)),
      fmt::arg("dt", dtype_expr(dt)), fmt::arg("d", head_dim), fmt::arg("threads", r.threads));
  r.name_expression = fmt::format("plx::{}<plx_gen::Cfg>", entry);
  return r;
}
}  // namespace

std::string backward_pre_name(Family f, DType dt, int head_dim) { return row_kernel_name("bwdpre", f, dt, head_dim); }
RenderedKernel render_backward_pre(Family f, DType dt, int head_dim) {
  return render_row_kernel("bwdpre", "bwd_pre_kernel", f, dt, head_dim);
}
std::string backward_post_name(Family f, DType dt, int head_dim) { return row_kernel_name("bwdpost", f, dt, head_dim); }
RenderedKernel render_backward_post(Family f, DType dt, int head_dim) {
  return render_row_kernel("bwdpost", "bwd_post_kernel", f, dt, head_dim);
}

const std::vector<std::pair<std::string, std::string>>& template_headers() {
  static const auto headers = [] {
    std::vector<std::pair<std::string, std::string>> h;
    for (const auto& e : embedded_headers()) h.emplace_back(std::string(e.name), std::string(e.content));
    return h;
  }();
  return headers;
}

}  // namespace plx
