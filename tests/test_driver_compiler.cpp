// NVRTC compiles, error reporting and ptxas parsing run everywhere. Tests tagged [gpu]
// need a driver and a device; without one they WARN and return, and the driver tests
// instead check that the missing driver is reported (not crashed on) the same way twice.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "parallax/errors.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"

namespace {

// Line numbers matter to the error tests below: the raw string starts with a newline.
const char* kTiny = R"(
template <int N>
__global__ void scale(float* p, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = p[i] * N + 1.0f;
}
extern "C" __global__ void bigsmem(float* p) {
  extern __shared__ float s[];
  s[threadIdx.x] = p[threadIdx.x];
  __syncthreads();
  p[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x] + 1.0f;
}
)";

plx::CompileRequest tiny(const std::string& arch, int n = 3) {
  plx::CompileRequest r;
  r.source = kTiny;
  r.arch = arch;
  r.name_expression = "scale<" + std::to_string(n) + ">";
  r.display_name = "tiny_scale" + std::to_string(n);
  return r;
}

// The excerpt line carrying the '>' marker.
std::string marked_line(const std::string& excerpt) {
  std::size_t start = 0;
  while (start < excerpt.size()) {
    std::size_t end = excerpt.find('\n', start);
    if (end == std::string::npos) end = excerpt.size();
    if (excerpt[start] == '>') return excerpt.substr(start, end - start);
    start = end + 1;
  }
  return {};
}

bool gpu_or_skip() {
  std::string why;
  if (plx::cu::available(&why)) return true;
  WARN("skipping GPU test: " << why);
  return false;
}

}  // namespace

TEST_CASE("compile a tiny templated kernel for sm_80 and sm_90a", "[nvrtc]") {
  for (const char* arch : {"sm_80", "sm_90a"}) {
    INFO(arch);
    plx::CompiledKernel k = plx::compile(tiny(arch));
    REQUIRE(k.cubin.size() > 4);
    CHECK(k.cubin.compare(0, 4, "\x7f" "ELF") == 0);
    CHECK(k.lowered_name.rfind("_Z", 0) == 0);
    CHECK(k.registers >= 1);
    CHECK(k.spill_bytes == 0);
    CHECK(k.stack_bytes == 0);
    CHECK(k.static_smem == 0);
    CHECK(k.log.find("ptxas") != std::string::npos);
  }
  // A repeat must still report resources: NVRTC 13's driver-side cache would skip ptxas.
  plx::CompiledKernel again = plx::compile(tiny("sm_90a"));
  CHECK(again.registers >= 1);
  CHECK(again.cubin == plx::compile(tiny("sm_90a")).cubin);
  CHECK(!plx::nvrtc_version().empty());
  CHECK(plx::nvrtc_version().find('.') != std::string::npos);
}

TEST_CASE("syntax error in the source: CompileError with line and excerpt", "[nvrtc]") {
  plx::CompileRequest r = tiny("sm_90a");
  // Line 5 of the source ("if (i < n) ...") becomes a syntax error.
  r.source = std::string(kTiny).replace(std::string(kTiny).find("if (i < n)"), 10, "int x = ;");
  try {
    plx::compile(r);
    FAIL("expected CompileError");
  } catch (const plx::CompileError& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.rfind("NVRTC failed to compile tiny_scale3 (sm_90a)", 0) == 0);
    CHECK(what.find("kernel.cu(5): error") != std::string::npos);
    std::string marked = marked_line(e.excerpt);
    CHECK(marked.find(" 5 | ") != std::string::npos);
    CHECK(marked.find("int x = ;") != std::string::npos);
    CHECK(what.find(e.excerpt.substr(0, e.excerpt.size() - 1)) != std::string::npos);
    CHECK(e.log.find("error") != std::string::npos);
    CHECK(e.options.find("--gpu-architecture=sm_90a") != std::string::npos);
  }
}

TEST_CASE("error inside an in-memory header: the excerpt comes from the header", "[nvrtc]") {
  plx::CompileRequest r = tiny("sm_80");
  r.headers = {{"plx/ok.cuh", "inline int ok() { return 1; }\n"},
               {"plx/bad.cuh", "// bad header\n\ninline int f() { return undefined_name; }\n"}};
  r.source = "#include \"plx/ok.cuh\"\n#include \"plx/bad.cuh\"\n" + r.source;
  try {
    plx::compile(r);
    FAIL("expected CompileError");
  } catch (const plx::CompileError& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.find("tiny_scale3") != std::string::npos);
    CHECK(what.find("plx/bad.cuh(3)") != std::string::npos);
    CHECK(e.excerpt.rfind("plx/bad.cuh:3:", 0) == 0);
    std::string marked = marked_line(e.excerpt);
    CHECK(marked.find(" 3 | ") != std::string::npos);
    CHECK(marked.find("undefined_name") != std::string::npos);
  }
}

TEST_CASE("a name expression that names nothing is a CompileError", "[nvrtc]") {
  plx::CompileRequest r = tiny("sm_90a");
  r.name_expression = "no_such_kernel<3>";
  try {
    plx::compile(r);
    FAIL("expected CompileError");
  } catch (const plx::CompileError& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.find("no_such_kernel<3>") != std::string::npos);
  }
  r.name_expression.clear();
  CHECK_THROWS_AS(plx::compile(r), plx::CompileError);
  r = tiny("compute_90a");
  CHECK_THROWS_AS(plx::compile(r), plx::CompileError);
}

TEST_CASE("canonical_options is deterministic and carries the arch", "[nvrtc]") {
  plx::CompileRequest r = tiny("sm_90a");
  r.options = {"-lineinfo", "-DPLX_X=1"};
  auto a = plx::canonical_options(r);
  CHECK(a == plx::canonical_options(r));
  CHECK(a.front() == "--gpu-architecture=sm_90a");
  CHECK(std::find(a.begin(), a.end(), "--ptxas-options=-v") != a.end());
  CHECK(a[a.size() - 2] == "-lineinfo");
  CHECK(a.back() == "-DPLX_X=1");
  for (const auto& o : a) CHECK(o.find("fast") == std::string::npos);
  r.arch = "sm_80";
  CHECK(plx::canonical_options(r).front() == "--gpu-architecture=sm_80");
}

TEST_CASE("ptxas -v parsing picks the lines of the requested kernel", "[nvrtc]") {
  const std::string log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function '_Z1kILi3EEvPf' for 'sm_90a'\n"
      "ptxas info    : Function properties for _Z1kILi3EEvPf\n"
      "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
      "ptxas info    : Used 8 registers, used 0 barriers\n"
      "ptxas info    : Compile time = 3.526 ms\n"
      "ptxas info    : Function properties for _Z6helperv\n"
      "ptxas         .     64 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Compiling entry function '_Z5otherPf' for 'sm_90a'\n"
      "ptxas info    : Function properties for _Z5otherPf\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 1 barriers, 400 bytes smem, 360 bytes cmem[0]\n";
  plx::CompiledKernel a;
  plx::detail::parse_ptxas_info(log, "_Z1kILi3EEvPf", a);
  CHECK(a.registers == 8);
  CHECK(a.spill_bytes == 16);
  CHECK(a.stack_bytes == 8);
  CHECK(a.static_smem == 0);
  plx::CompiledKernel b;
  plx::detail::parse_ptxas_info(log, "_Z5otherPf", b);
  CHECK(b.registers == 40);
  CHECK(b.spill_bytes == 0);
  CHECK(b.stack_bytes == 0);
  CHECK(b.static_smem == 400);
  plx::CompiledKernel c;
  plx::detail::parse_ptxas_info(log, "_Z7missingv", c);
  CHECK(c == plx::CompiledKernel{});
}

// A wgmma issued in one divergent region and waited for in another: ptxas then serialises
// every wgmma of the kernel (C7514-C7518) and says so only as an "info" note. The clean
// twin issues and waits in the same region.
const char* kWgmmaSerialised = R"(
#define WG(d) asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\nwgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n" : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "l"(da), "l"(db))
template <bool kSplit>
__global__ void wg(unsigned long long da, unsigned long long db, float* out, int flag) {
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  if (flag) {
    WG(d);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    if (!kSplit) asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  }
  if (kSplit && flag > 1) asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}
)";

TEST_CASE("performance_warnings reports a kernel whose wgmmas ptxas serialised", "[nvrtc]") {
  auto build = [](bool split) {
    plx::CompileRequest r;
    r.source = kWgmmaSerialised;
    r.arch = "sm_90a";
    r.name_expression = split ? "wg<true>" : "wg<false>";
    r.display_name = split ? "wgmma_split" : "wgmma_clean";
    return plx::compile(r);
  };
  const auto bad = plx::performance_warnings(build(true));
  REQUIRE(bad.size() >= 1);
  CHECK(bad[0].find("serialized") != std::string::npos);
  CHECK(plx::performance_warnings(build(false)).empty());
}

TEST_CASE("four compiles in four threads", "[nvrtc]") {
  std::vector<plx::CompiledKernel> out(4);
  std::vector<std::exception_ptr> errors(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      try {
        out[i] = plx::compile(tiny(i % 2 ? "sm_80" : "sm_90a", i + 1));
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    INFO(i);
    if (errors[i]) {
      try {
        std::rethrow_exception(errors[i]);
      } catch (const std::exception& e) {
        FAIL(e.what());
      }
    }
    CHECK(out[i].cubin.compare(0, 4, "\x7f" "ELF") == 0);
    CHECK(out[i].lowered_name.find("Li" + std::to_string(i + 1) + "E") != std::string::npos);
  }
}

TEST_CASE("driver: missing GPU is reported, not crashed on", "[driver]") {
  std::string why;
  bool ok = plx::cu::available(&why);
  CHECK(plx::cu::available() == ok);
  if (ok) {
    CHECK_NOTHROW(plx::cu::api());
    CHECK(plx::cu::api().driver_version > 0);
    CHECK(plx::cu::result_name(CUDA_ERROR_OUT_OF_MEMORY) == "CUDA_ERROR_OUT_OF_MEMORY");
    return;
  }
  CHECK(!why.empty());
  std::string first, second;
  try {
    plx::cu::api();
    FAIL("expected NoGpuError");
  } catch (const plx::NoGpuError& e) {
    first = e.what();
    CHECK(!e.call.empty());
  }
  try {
    plx::cu::api();
    FAIL("expected NoGpuError");
  } catch (const plx::NoGpuError& e) {
    second = e.what();
  }
  CHECK(first == second);
  CHECK(first.find('\n') == std::string::npos);
  CHECK(first.rfind("no ", 0) == 0);
  CHECK_THROWS_AS(plx::cu::Device::count(), plx::NoGpuError);
  CHECK_THROWS_AS(plx::cu::Device(0), plx::NoGpuError);
}

TEST_CASE("driver: check() names the plain CUDA call", "[driver]") {
  // A stand-in with the same member spelling as plx::cu::Api, so no driver is needed.
  struct {
    CUresult (*cuMemAlloc)(CUdeviceptr*, std::size_t);
  } fake{[](CUdeviceptr*, std::size_t) { return CUDA_ERROR_OUT_OF_MEMORY; }};
  CUdeviceptr p = 0;
  try {
    PLX_CU(fake.cuMemAlloc(&p, 16));
    FAIL("expected DriverError");
  } catch (const plx::DriverError& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(e.call == "cuMemAlloc");
    CHECK(e.code == static_cast<int>(CUDA_ERROR_OUT_OF_MEMORY));
    CHECK(what.rfind("cuMemAlloc failed: ", 0) == 0);
    if (plx::cu::available())
      CHECK(what == "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
  }
  CHECK_NOTHROW(plx::cu::check(CUDA_SUCCESS, "cuInit"));
  CHECK_THROWS_WITH(plx::cu::check(CUDA_ERROR_INVALID_VALUE, "cuInit"),
                    Catch::Matchers::StartsWith("cuInit failed: "));
}

TEST_CASE("gpu: Device reports itself and its arch", "[gpu]") {
  if (!gpu_or_skip()) return;
  REQUIRE(plx::cu::Device::count() >= 1);
  plx::cu::Device d(0);
  INFO(d.name() << " cc " << d.cc_major() << "." << d.cc_minor());
  CHECK(d.ordinal() == 0);
  CHECK(d.context() != nullptr);
  CHECK(d.sm_count() > 0);
  CHECK(d.max_smem_optin() >= 48 * 1024);
  CHECK(d.l2_bytes() > 0);
  CHECK(d.total_mem() > 0);
  auto [free, total] = d.mem_info();
  CHECK(free > 0);
  CHECK(total >= free);
  if (d.name().find("H200") != std::string::npos || d.name().find("H100") != std::string::npos) {
    CHECK(d.arch() == plx::Arch::sm90a);
    CHECK(d.arch_string() == "sm_90a");
  }
  plx::cu::Device moved(std::move(d));
  CHECK(moved.context() != nullptr);
  CHECK(d.context() == nullptr);
}

TEST_CASE("gpu: load, launch and read back the tiny kernel", "[gpu]") {
  if (!gpu_or_skip()) return;
  plx::cu::Device d(0);
  CUcontext before = nullptr;
  PLX_CU(plx::cu::api().cuCtxGetCurrent(&before));
  {
    plx::cu::CurrentContext scope(d);
    plx::CompiledKernel k = plx::compile(tiny(d.arch_string(), 3));
    plx::cu::Module m(k.cubin);
    plx::cu::Launchable scale(m.function(k.lowered_name));

    const int n = 1000;
    std::vector<float> host(n);
    for (int i = 0; i < n; ++i) host[i] = static_cast<float>(i);
    plx::cu::Buffer buf(n * sizeof(float));
    buf.upload(host.data(), buf.size());
    CUdeviceptr ptr = buf.ptr();
    int count = n;
    void* args[] = {&ptr, &count};
    plx::cu::Stream stream;
    plx::cu::Event start, stop;
    start.record(stream.handle());
    plx::cu::launch(scale, {(n + 127) / 128}, {128}, 0, stream.handle(), args);
    stop.record(stream.handle());
    CHECK(plx::cu::elapsed_ms(start, stop) >= 0.0f);
    std::vector<float> back(n);
    buf.download(back.data(), buf.size());
    for (int i = 0; i < n; ++i) REQUIRE(back[i] == static_cast<float>(i) * 3 + 1);

    // Dynamic shared memory above 48 KiB goes through the opt-in, twice through the cache.
    plx::cu::Launchable big(m.function("bigsmem"));
    plx::cu::Buffer small(256 * sizeof(float));
    small.fill_bytes(0);
    CUdeviceptr sp = small.ptr();
    void* bargs[] = {&sp};
    for (int rep = 0; rep < 2; ++rep)
      plx::cu::launch(big, {1}, {256}, 64 * 1024, stream.handle(), bargs);
    CHECK(big.smem_opted_in.load() >= 64u * 1024u);
    stream.synchronize();
    std::vector<float> sb(256);
    small.download(sb.data(), small.size());
    CHECK(sb[0] == 2.0f);  // two launches, each adds 1 to a rotated copy of zeros
    CHECK_THROWS_AS(m.function("_Z9not_therev"), plx::DriverError);
    CHECK_THROWS_AS(buf.upload(host.data(), buf.size() + 1), plx::Error);
  }
  CUcontext after = nullptr;
  PLX_CU(plx::cu::api().cuCtxGetCurrent(&after));
  CHECK(after == before);
}
