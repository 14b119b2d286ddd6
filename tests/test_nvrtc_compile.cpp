// Every variant of every shipped spec, rendered and compiled by NVRTC for its arch, plus
// the split-KV merge kernels and the backward's preprocess kernels. NVRTC needs no GPU,
// so CI proves all of them build, name their symbol, and fit the register file without
// spilling.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "generator/expand.hpp"
#include "generator/render.hpp"
#include "generator/spec.hpp"
#include "runtime/compiler.hpp"
#include "runtime/jit.hpp"

using namespace plx;
namespace fs = std::filesystem;

namespace {
struct Job {
  RenderedKernel r;
  std::string arch;
};
struct Result {
  std::string name, arch, error;
  CompiledKernel k;
};

std::vector<Result> compile_all(const std::vector<Job>& jobs) {
  std::vector<Result> out(jobs.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < jobs.size();) {
        out[i].name = jobs[i].r.display_name;
        out[i].arch = jobs[i].arch;
        try {
          out[i].k = compile_kernel(jobs[i].r, jobs[i].arch);
        } catch (const std::exception& e) {
          out[i].error = e.what();
        }
      }
    });
  for (auto& t : pool) t.join();
  return out;
}
}  // namespace

TEST_CASE("every shipped variant and merge kernel compiles with NVRTC, without spills", "[nvrtc]") {
  std::vector<Job> jobs;
  std::set<std::string> merges;
  for (const auto& e : fs::directory_iterator(fs::path(PLX_SOURCE_DIR) / "specs")) {
    if (e.path().extension() != ".yaml") continue;
    for (const Variant& v : expand(load_spec(e.path())).variants) {
      const std::string arch(to_string(v.arch));
      jobs.push_back({render(v), arch});
      if (v.op == Op::decode && merges.insert(merge_name(v.family, v.dtype, v.head_dim) + arch).second)
        jobs.push_back({render_merge(v.family, v.dtype, v.head_dim), arch});
      // A backward variant runs after its per-row preprocess kernel: compile that too.
      if (v.op == Op::backward && merges.insert(backward_pre_name(v.family, v.dtype, v.head_dim) + arch).second)
        jobs.push_back({render_backward_pre(v.family, v.dtype, v.head_dim), arch});
    }
  }
  REQUIRE(jobs.size() >= 200);
  const auto results = compile_all(jobs);
  for (const auto& r : results) {
    INFO(r.name << " (" << r.arch << "): " << r.error);
    CHECK(r.error.empty());
    if (!r.error.empty()) continue;
    CHECK(r.k.cubin.substr(0, 4) == std::string("\x7f" "ELF"));
    CHECK(r.k.lowered_name.rfind("_Z", 0) == 0);
    CHECK(r.k.registers > 0);
    CHECK(r.k.registers <= 255);
    CHECK(r.k.spill_bytes == 0);
    // e.g. wgmma serialised by ptxas (C7514-C7518): correct, and half as fast.
    CHECK(plx::performance_warnings(r.k).empty());
  }
  // One line per kernel in the test log: a resource table for whoever tunes the templates.
  for (const auto& r : results)
    if (r.error.empty())
      std::printf("%-72s %-6s regs %3d spill %4d smem-static %d\n", r.name.c_str(), r.arch.c_str(), r.k.registers,
                  r.k.spill_bytes, r.k.static_smem);
}
