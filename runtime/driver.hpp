// The CUDA Driver API, loaded with dlopen("libcuda.so.1") on first use. libcuda is never
// linked, so every binary (CLI, tests, libparallax.so) starts on a machine without a
// driver and only the calls that need a GPU fail, with plx::NoGpuError.
//
// cuda.h is included for its types only. It #defines many API names to versioned ones
// (cuMemAlloc -> cuMemAlloc_v2 ...); the Api members are declared through the same
// macros, so `api().cuMemAlloc(...)` names the member `cuMemAlloc_v2`, whose type is the
// _v2 prototype, and the loader resolves exactly that exported symbol.
#pragma once
#include <cuda.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "generator/variant.hpp"

#if defined(CUDA_API_PER_THREAD_DEFAULT_STREAM)
// The member names would differ between translation units (ODR): keep legacy streams.
#error "runtime/driver.hpp must not be compiled with CUDA_API_PER_THREAD_DEFAULT_STREAM"
#endif

namespace plx::cu {

// X-macro of every driver entry point we use; one place to add a call.
#define PLX_CU_API_LIST(X)                                                                 \
  X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString)                    \
  X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute)             \
  X(cuDeviceTotalMem) X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease)             \
  X(cuCtxSetCurrent) X(cuCtxGetCurrent) X(cuCtxPushCurrent) X(cuCtxPopCurrent)             \
  X(cuCtxSynchronize) X(cuCtxGetDevice) X(cuModuleLoadData) X(cuModuleUnload)              \
  X(cuModuleGetFunction) X(cuFuncSetAttribute) X(cuFuncGetAttribute) X(cuLaunchKernel)     \
  X(cuMemAlloc) X(cuMemFree) X(cuMemGetInfo) X(cuMemcpyHtoD) X(cuMemcpyDtoH)               \
  X(cuMemcpyDtoD) X(cuMemsetD8) X(cuMemsetD32) X(cuMemsetD8Async) X(cuMemsetD32Async)      \
  X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuStreamCreate) X(cuStreamDestroy)           \
  X(cuStreamSynchronize) X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord)               \
  X(cuEventSynchronize) X(cuEventElapsedTime) X(cuStreamIsCapturing) X(cuMemcpyDtoDAsync)

// Entry points only some kernels need: resolved when present, null otherwise, so a driver
// without them still runs everything else. Callers check and name what is missing.
//   cuTensorMapEncodeTiled  CUDA 12.0+ drivers; the TMA decode kernels' tensor maps
#define PLX_CU_OPTIONAL_API_LIST(X) X(cuTensorMapEncodeTiled)

struct Api {
#define PLX_CU_MEMBER(name) decltype(&::name) name = nullptr;
  PLX_CU_API_LIST(PLX_CU_MEMBER)
  PLX_CU_OPTIONAL_API_LIST(PLX_CU_MEMBER)
#undef PLX_CU_MEMBER
  int driver_version = 0;  // cuDriverGetVersion, e.g. 12080
};

// Loads libcuda and runs cuInit(0) once per process (thread-safe). Throws NoGpuError;
// a failure is remembered and the same error is thrown on every later call.
const Api& api();

// True when the driver loads and at least one device exists. Never throws.
bool available(std::string* why = nullptr);

// "CUDA_ERROR_OUT_OF_MEMORY"; the number when the driver cannot name it.
std::string result_name(CUresult r);

[[noreturn]] void throw_error(CUresult r, const char* call);

// Throws DriverError("cuXxx failed: NAME (description)"). `call` may be a whole
// expression such as "api().cuMemAlloc(&p, n)": the error names only "cuMemAlloc".
inline void check(CUresult r, const char* call) {
  if (r != CUDA_SUCCESS) [[unlikely]]
    throw_error(r, call);
}

#define PLX_CU(expr) ::plx::cu::check((expr), #expr)

class Device;

// Makes `ctx` current for the scope and restores the previous context after, so a host
// application's thread is never left on another context. Pushes only when needed.
class CurrentContext {
 public:
  explicit CurrentContext(CUcontext ctx);
  explicit CurrentContext(const Device& d);
  ~CurrentContext();
  CurrentContext(const CurrentContext&) = delete;
  CurrentContext& operator=(const CurrentContext&) = delete;

 private:
  bool pushed_ = false;
};

// One GPU through its primary context: the context the CUDA runtime and PyTorch use,
// so our kernels share allocations and streams with the host application.
class Device {
 public:
  static int count();
  explicit Device(int ordinal);  // retains the primary context; reads the attributes
  ~Device();                     // releases it
  Device(Device&& o) noexcept;
  Device& operator=(Device&& o) noexcept;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  int ordinal() const { return ordinal_; }
  CUdevice handle() const { return dev_; }
  CUcontext context() const { return ctx_; }
  const std::string& name() const { return name_; }
  int cc_major() const { return cc_major_; }
  int cc_minor() const { return cc_minor_; }
  int sm_count() const { return sm_count_; }
  int max_smem_optin() const { return max_smem_optin_; }  // per block, opt-in limit
  int l2_bytes() const { return l2_bytes_; }
  std::size_t total_mem() const { return total_mem_; }
  int clock_khz() const { return clock_khz_; }
  int mem_clock_khz() const { return mem_clock_khz_; }
  int mem_bus_bits() const { return mem_bus_bits_; }
  // {free, total} bytes right now (makes the context current for the query).
  std::pair<std::size_t, std::size_t> mem_info() const;

  // cc 8.x -> sm80, 9.0 -> sm90a; anything else throws UnsupportedError.
  Arch arch() const;
  std::string arch_string() const;  // "sm_90a"

  // Sets the primary context current on this thread and leaves it there; prefer
  // CurrentContext, which restores what was current before.
  void make_current() const;

 private:
  void release() noexcept;
  int ordinal_ = -1;
  CUdevice dev_ = 0;
  CUcontext ctx_ = nullptr;
  std::string name_;
  int cc_major_ = 0, cc_minor_ = 0, sm_count_ = 0, max_smem_optin_ = 0, l2_bytes_ = 0;
  int clock_khz_ = 0, mem_clock_khz_ = 0, mem_bus_bits_ = 0;
  std::size_t total_mem_ = 0;
};

// The resources below are created in the context current at construction (the caller's
// job, e.g. with CurrentContext) and remember it, so destruction works from any thread.
// Destructors ignore driver errors (e.g. at process exit, after the driver shut down).

class Module {
 public:
  explicit Module(const std::string& cubin);  // cuModuleLoadData; throws DriverError
  ~Module();
  Module(Module&& o) noexcept;
  Module& operator=(Module&& o) noexcept;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CUfunction function(const std::string& lowered_name) const;
  CUmodule handle() const { return mod_; }

 private:
  CUmodule mod_ = nullptr;
  CUcontext ctx_ = nullptr;
};

// Device memory for tests and benchmarks. Zero bytes allocates nothing (ptr() == 0).
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::size_t size() const { return size_; }
  CUdeviceptr ptr() const { return ptr_; }
  void* data() const { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(ptr_)); }
  // Synchronous copies; bytes must not exceed size() (throws plx::Error).
  void upload(const void* src, std::size_t bytes);
  void download(void* dst, std::size_t bytes) const;
  void fill_bytes(std::uint8_t value);

 private:
  void reset() noexcept;
  CUdeviceptr ptr_ = 0;
  std::size_t size_ = 0;
  CUcontext ctx_ = nullptr;
};

class Stream {
 public:
  Stream();  // CU_STREAM_NON_BLOCKING
  ~Stream();
  Stream(Stream&& o) noexcept;
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  CUstream handle() const { return s_; }
  void synchronize() const;

 private:
  CUstream s_ = nullptr;
  CUcontext ctx_ = nullptr;
};

class Event {
 public:
  explicit Event(unsigned flags = CU_EVENT_DEFAULT);
  ~Event();
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  CUevent handle() const { return e_; }
  void record(CUstream stream = nullptr) const;
  void synchronize() const;

 private:
  CUevent e_ = nullptr;
  CUcontext ctx_ = nullptr;
};

float elapsed_ms(const Event& start, const Event& stop);  // waits for `stop`

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Dynamic shared memory beyond the function's current limit (48 KiB minus its static
// smem by default) needs an opt-in (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES). A
// Launchable remembers the limit it has seen in force, so a repeated launch costs one
// atomic load on top of cuLaunchKernel. The rare opt-in reads the attribute and only ever
// raises it, under a process-wide mutex, so concurrent launches of the same function
// (even through different Launchables) stay valid.
// Keep one Launchable per CUfunction (e.g. next to the Module) and share it by reference.
struct Launchable {
  explicit Launchable(CUfunction fn = nullptr) : f(fn) {}
  Launchable(const Launchable& o) : f(o.f), smem_opted_in(o.smem_opted_in.load()) {}
  Launchable& operator=(const Launchable& o) {
    f = o.f;
    smem_opted_in.store(o.smem_opted_in.load());
    return *this;
  }
  CUfunction f;
  std::atomic<unsigned> smem_opted_in{0};  // dynamic smem bytes known to be allowed
};

// Does not touch the current context: the caller has made the function's context
// current (CurrentContext), as for any launch on the host application's stream.
void launch(Launchable& k, Dim3 grid, Dim3 block, unsigned smem_bytes, CUstream stream,
            void** args);
// Uncached, for one-off launches: above 48 KiB it checks and raises the opt-in every call.
void launch(CUfunction f, Dim3 grid, Dim3 block, unsigned smem_bytes, CUstream stream,
            void** args);

}  // namespace plx::cu
