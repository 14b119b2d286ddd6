#include "autotune/ceilings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "autotune/measure.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"

namespace plx {

json::Value ceilings_to_json(const Ceilings& c) {
  json::Value o = json::Value::object();
  o.set("copy_GBps", c.copy_GBps);
  o.set("tc_tflops", c.tc_tflops);
  o.set("mma_sync_tflops", c.mma_sync_tflops);
  o.set("wgmma_tflops", c.wgmma_tflops);
  o.set("tc_kernel", c.tc_kernel);
  o.set("measured_at", c.measured_at);
  return o;
}

GpuProfile with_ceilings(GpuProfile base, const Ceilings& c) {
  if (!c.valid()) return base;
  base.name += " (measured)";
  base.hbm_GBps = c.copy_GBps;
  base.tc_tflops_bf16 = c.tc_tflops;
  return base;
}

namespace ceilings_detail {

// Work per launch. mma.sync: 8 warps x kChains independent m16n8k16 chains (2*16*8*16 =
// 4096 FLOPs each) per iteration, enough independent MMAs in flight per SM sub-partition
// to cover the instruction's latency. wgmma: 2 warpgroups x kWgmmaPerGroup m64n128k16
// (2*64*128*16 = 262144 FLOPs each) per iteration, committed and waited as one group; two
// CTAs per SM keep the tensor cores busy while one warpgroup waits.
constexpr int kWarps = 8, kChains = 8, kWgmmaPerGroup = 4;
double mma_sync_flops(long ctas, long iters) { return double(ctas) * iters * kWarps * kChains * 4096.0; }
double wgmma_flops(long ctas, long iters) { return double(ctas) * iters * 2 * kWgmmaPerGroup * 262144.0; }

std::string mma_source(const std::string& arch) {
  // Operand values of magnitude ~1/32 that differ per thread: the tensor cores' power (and
  // so their clock) depends on the data, and zeros would flatter the rate.
  std::string s = fmt::format(R"(
extern "C" __global__ void __launch_bounds__(256) plx_mma_sync(float* out, int iters, int flag) {{
  const unsigned t = threadIdx.x & 0x7fu;
  const unsigned a0 = 0x3d003d00u | t | t << 16, a1 = a0 ^ 0x00050003u, a2 = a0 ^ 0x00110007u, a3 = a0 ^ 0x0021000bu;
  const unsigned b0 = a0 ^ 0x00420013u, b1 = a0 ^ 0x00030041u;
  float c[{0}][4];
  #pragma unroll
  for (int j = 0; j < {0}; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.f;
  for (int it = 0; it < iters; ++it) {{
    #pragma unroll
    for (int j = 0; j < {0}; ++j)
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{%0,%1,%2,%3}}, {{%4,%5,%6,%7}}, {{%8,%9}}, {{%0,%1,%2,%3}};\n"
                   : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }}
  if (flag) {{  // never taken; keeps the accumulators (and so the MMAs) alive
    float s = 0.f;
    #pragma unroll
    for (int j = 0; j < {0}; ++j) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
  }}
}}
)",
                              kChains);
  if (arch != "sm_90a") return s;

  // wgmma with both operands in shared memory, no swizzle, K-major core matrices (8 rows x
  // 16 B): LBO 128 B to the next core matrix along K, SBO 256 B to the next 8 rows. A is
  // 64 x 16 at byte 0 (ends at 2 KiB), B 128 x 16 at 4 KiB (ends at 8 KiB), inside 16 KiB.
  std::string regs, outs;
  for (int i = 0; i < 64; ++i) {
    regs += fmt::format("{}%{}", i ? "," : "", i);
    outs += fmt::format("{}\"+f\"(d[{}])", i ? ", " : "", i);
  }
  s += fmt::format(R"(
__device__ __forceinline__ unsigned long long plx_desc(unsigned addr) {{
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | (unsigned long long)(128u >> 4) << 16 |
         (unsigned long long)(256u >> 4) << 32;
}}
extern "C" __global__ void __launch_bounds__(256) plx_wgmma(float* out, int iters, int flag) {{
  __shared__ __align__(1024) unsigned short smem[8192];
  for (int i = threadIdx.x; i < 8192; i += blockDim.x) smem[i] = (unsigned short)(0x3d00u | (i & 0x7fu));
  __syncthreads();
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // generic writes -> async proxy
  const unsigned base = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned long long da = plx_desc(base), db = plx_desc(base + 4096u);
  const int one = iters > 0;  // scale-d: accumulate (a register, not an immediate, for setp)
  float d[64];
  #pragma unroll
  for (int i = 0; i < 64; ++i) d[i] = 0.f;
  for (int it = 0; it < iters; ++it) {{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    #pragma unroll
    for (int k = 0; k < {2}; ++k)
      asm volatile("{{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                   "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{{0}}}, %64, %65, p, 1, 1, 0, 0;\n}}\n"
                   : {1}
                   : "l"(da), "l"(db), "r"(one));
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  }}
  if (flag) {{
    float s = 0.f;
    #pragma unroll
    for (int i = 0; i < 64; ++i) s += d[i];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
  }}
}}
)",
                   regs, outs, kWgmmaPerGroup);
  return s;
}

}  // namespace ceilings_detail

namespace {

double median_us(measure::Harness& h, const measure::Call& call) {
  measure::TimingOptions o;
  o.warmup_s = 0.05;  // clocks ramp up under load
  o.warmup_min = 2;
  o.budget_s = 0.15;
  o.min_reps = 5;
  o.max_reps = 20;
  o.spin_ns = 0;  // milliseconds per launch: the enqueue is negligible
  return measure::summarize(h.time(call, o)).median;
}

}  // namespace

Ceilings measure_ceilings(const cu::Device& dev, std::string* wgmma_error) {
  cu::CurrentContext ctx(dev);
  measure::Harness h(dev);
  Ceilings c;

  // Copy: the largest of 1 GiB or a quarter of free memory, per buffer.
  const auto [free_b, total_b] = dev.mem_info();
  (void)total_b;
  const std::size_t bytes = std::max<std::size_t>(std::min<std::size_t>(std::size_t(1) << 30, free_b / 4) / 256 * 256,
                                                  std::size_t(64) << 20);
  {
    cu::Buffer src(bytes), dst(bytes);
    h.fill_random(src.data(), bytes, DType::bf16, 1);
    const double us = median_us(h, [&](int, void* s) {
      PLX_CU(cu::api().cuMemcpyDtoDAsync(dst.ptr(), src.ptr(), bytes, static_cast<CUstream>(s)));
    });
    c.copy_GBps = 2.0 * double(bytes) / (us * 1e3);
  }

  // Tensor cores.
  const std::string arch = dev.arch_string();
  CompileRequest req;
  req.source = ceilings_detail::mma_source(arch);
  req.source_name = "plx_ceilings.cu";
  req.arch = arch;
  req.name_expression = "plx_mma_sync";
  req.display_name = "plx_ceilings";
  const CompiledKernel k = compile(req);
  cu::Module mod(k.cubin);
  const long ctas = 2L * dev.sm_count();
  cu::Buffer out(std::size_t(ctas) * 256 * sizeof(float));
  auto rate = [&](const char* fn, int iters, double flops) {
    cu::Launchable f(mod.function(fn));
    CUdeviceptr p = out.ptr();
    int it = iters, flag = 0;
    void* args[] = {&p, &it, &flag};
    const double us = median_us(h, [&](int, void* s) {
      cu::launch(f, {unsigned(ctas), 1, 1}, {256, 1, 1}, 0, static_cast<CUstream>(s), args);
    });
    return flops / (us * 1e6);
  };
  constexpr int kSyncIters = 16384, kWgmmaIters = 8192;
  c.mma_sync_tflops = rate("plx_mma_sync", kSyncIters, ceilings_detail::mma_sync_flops(ctas, kSyncIters));
  c.tc_tflops = c.mma_sync_tflops;
  c.tc_kernel = "mma.sync m16n8k16 bf16";
  if (arch == "sm_90a") {
    try {
      c.wgmma_tflops = rate("plx_wgmma", kWgmmaIters, ceilings_detail::wgmma_flops(ctas, kWgmmaIters));
      if (c.wgmma_tflops > c.tc_tflops) {
        c.tc_tflops = c.wgmma_tflops;
        c.tc_kernel = "wgmma m64n128k16 bf16 (smem operands)";
      }
    } catch (const Error& e) {
      if (wgmma_error) *wgmma_error = e.what();
      c.wgmma_tflops = 0;
    }
  }
  c.measured_at = std::int64_t(std::time(nullptr));
  return c;
}

}  // namespace plx
