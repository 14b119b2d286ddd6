// Parallax decode through plx::Engine, built against the installed package: allocates a
// KV cache, then runs one decode step per generated token and prints the time per step.
//
//   plx-decode [batch] [kv_capacity] [steps] [--dump FILE]     (defaults: 8 8192 20)
//
// --dump FILE writes the last step's output o, [batch, 1, 32, 128] bf16, as raw bytes.
// The inputs are the same every run (decode_inputs.hpp), so the file can be compared
// byte for byte with another caller's output (tests/test_install.cpp does so with
// plx::Engine in-process).
//
// Exit status: 0 done; 2 no usable GPU or driver (one line on stderr); 1 any other error.
// The CUDA runtime is used here only to allocate buffers and time with events; the
// engine shares the device's primary context with it.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode_inputs.hpp"
#include "parallax/parallax.hpp"

namespace {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw CudaError(std::string(call) + " failed: " + cudaGetErrorString(e));
}

// Owns one device allocation (exceptions must not leak device memory in a server).
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(std::size_t bytes) { check(cudaMalloc(&ptr, bytes), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

using namespace decode_example;

int run(int batch, int capacity, int steps, const std::string& dump) {
  plx::Engine engine(0);  // throws plx::NoGpuError without a driver or GPU
  std::printf("device 0: %s (%s, %d SMs)\n", engine.device_name().c_str(), engine.arch().c_str(),
              engine.sm_count());
  check(cudaSetDevice(0), "cudaSetDevice");

  // The KV cache [batch, capacity, heads_kv, head_dim] is filled up front; step s makes
  // one more position live through seqused_k, as if that token's K/V had been appended.
  const std::size_t kv_elems = elements(Input::k, batch, capacity), q_elems = elements(Input::q, batch, capacity);
  DeviceBuffer k(kv_elems * 2), v(kv_elems * 2), q(q_elems * 2), r(q_elems * 2), o(q_elems * 2);
  DeviceBuffer live(batch * sizeof(int));
  const DeviceBuffer* inputs[] = {&k, &v, &q, &r};  // indexed by Input
  make_inputs(batch, capacity, [&](Input in, const std::vector<std::uint16_t>& bits) {
    check(cudaMemcpy(inputs[int(in)]->ptr, bits.data(), bits.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  });

  plx::AttentionArgs a;
  a.family = plx::Family::parallax;
  a.dtype = plx::DType::bf16;
  a.batch = batch, a.q_len = 1, a.kv_len = capacity;
  a.heads_q = heads_q, a.heads_kv = heads_kv, a.head_dim = head_dim;
  a.causal = true;
  a.q = q.ptr, a.r = r.ptr, a.k = k.ptr, a.v = v.ptr, a.o = o.ptr;
  a.seqused_k = static_cast<const int*>(live.ptr);

  const std::string variant = engine.variant_for(a);  // tuned choice when the database has one
  std::printf("variant: %s (%d KV splits)\n", variant.c_str(), engine.splits_for(a, variant));

  cudaStream_t stream;
  cudaEvent_t start, stop;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<int> lens(batch);
  auto set_live = [&](int n) {
    lens.assign(batch, n);
    check(cudaMemcpyAsync(live.ptr, lens.data(), batch * sizeof(int), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync");
  };

  // The first call compiles the kernel (or loads it from the disk cache) and sizes the
  // split-KV workspace: time it apart from the steps.
  const auto t0 = std::chrono::steady_clock::now();
  set_live(capacity - steps);
  engine.attention(a, stream);
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  std::printf("first call (compile or cache load): %.1f ms\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());

  double total_us = 0;
  for (int s = 1; s <= steps; ++s) {
    set_live(capacity - steps + s);
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    engine.attention(a, stream);
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    total_us += ms * 1e3;
    std::printf("step %2d: kv_len %d  %.1f us\n", s, capacity - steps + s, ms * 1e3);
  }
  std::printf("mean: %.1f us per step (batch %d, %d steps)\n", total_us / steps, batch, steps);

  // A checksum of the last output, to compare runs and callers (C API, PyTorch).
  std::vector<std::uint16_t> out(q_elems);
  check(cudaMemcpy(out.data(), o.ptr, q_elems * 2, cudaMemcpyDeviceToHost), "cudaMemcpy");
  double sum = 0;
  for (auto x : out) sum += from_bf16(x);
  std::printf("output checksum: %.6f\n", sum);
  if (!dump.empty()) {
    std::ofstream f(dump, std::ios::binary);
    f.write(reinterpret_cast<const char*>(out.data()), std::streamsize(out.size() * 2));
    if (!f.flush()) throw std::runtime_error("cannot write " + dump);
    std::printf("wrote o [%d, 1, %d, %d] bf16 (%zu bytes, kv_len %d) to %s\n", batch, heads_q, head_dim,
                out.size() * 2, capacity, dump.c_str());
  }

  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> pos{8, 8192, 20};  // batch, kv_capacity, steps
  std::string dump;
  bool ok = true;
  for (int i = 1, n = 0; i < argc && ok; ++i) {
    const std::string s = argv[i];
    if (s == "--dump" && i + 1 < argc) dump = argv[++i];
    else if (s[0] != '-' && n < 3) pos[n++] = std::atoi(s.c_str());
    else ok = false;
  }
  const int batch = pos[0], capacity = pos[1], steps = pos[2];
  if (!ok || batch < 1 || steps < 1 || capacity <= steps) {
    std::fprintf(stderr, "usage: plx-decode [batch>=1] [kv_capacity>steps] [steps>=1] [--dump FILE]\n");
    return 1;
  }
  try {
    return run(batch, capacity, steps, dump);
  } catch (const plx::NoGpuError& e) {
    std::fprintf(stderr, "plx-decode: no usable GPU: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // plx::Error (unsupported shape, compile...) or CudaError
    std::fprintf(stderr, "plx-decode: %s\n", e.what());
    return 1;
  }
}
