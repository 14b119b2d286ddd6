#include "runtime/driver.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cctype>
#include <mutex>
#include <string_view>

#include "parallax/errors.hpp"

namespace plx::cu {
namespace {

#define PLX_CU_STR2(x) #x
#define PLX_CU_STR(x) PLX_CU_STR2(x)

struct LoadState {
  Api api;
  void* lib = nullptr;  // never dlclose'd: static destructors may still free resources
  bool ok = false;
  std::string message, call;
  int code = -1;
};

LoadState& state() {
  static LoadState s;
  return s;
}
std::once_flag g_once;

// Resolves the versioned symbol cuda.h's prototype refers to; falls back to the plain
// name (same prototype) so drivers older than the header still load, e.g. a pre-12.8
// driver has cuEventElapsedTime but not cuEventElapsedTime_v2.
void* resolve(void* lib, const char* versioned, const char* plain) {
  if (void* p = dlsym(lib, versioned)) return p;
  return dlsym(lib, plain);
}

// Never throws: std::call_once would retry a throwing initializer on every call.
void load(LoadState& s) noexcept {
  try {
    s.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!s.lib) {
      const char* e = dlerror();
      s.call = "dlopen(libcuda.so.1)";
      s.message = fmt::format("no CUDA driver: dlopen(libcuda.so.1) failed: {}",
                              e ? e : "unknown error");
      return;
    }
#define PLX_CU_LOAD(name)                                                               \
  s.api.name = reinterpret_cast<decltype(s.api.name)>(                                  \
      resolve(s.lib, PLX_CU_STR(name), #name));                                         \
  if (!s.api.name) {                                                                    \
    s.call = "dlsym(" #name ")";                                                        \
    s.message = "no usable CUDA driver: libcuda.so.1 lacks " PLX_CU_STR(name)           \
                " (driver too old)";                                                    \
    return;                                                                             \
  }
    PLX_CU_API_LIST(PLX_CU_LOAD)
#undef PLX_CU_LOAD
#define PLX_CU_LOAD_OPTIONAL(name) \
  s.api.name = reinterpret_cast<decltype(s.api.name)>(resolve(s.lib, PLX_CU_STR(name), #name));
    PLX_CU_OPTIONAL_API_LIST(PLX_CU_LOAD_OPTIONAL)
#undef PLX_CU_LOAD_OPTIONAL
    CUresult r = s.api.cuInit(0);
    if (r != CUDA_SUCCESS) {
      s.call = "cuInit";
      s.code = static_cast<int>(r);
      // Not result_name(): it goes through loaded(), and we are inside its call_once.
      const char* name = nullptr;
      const char* str = nullptr;
      s.api.cuGetErrorName(r, &name);
      s.api.cuGetErrorString(r, &str);
      s.message = fmt::format("no usable GPU: cuInit failed: {} ({})",
                              name ? name : fmt::format("CUresult {}", s.code),
                              str ? str : "unknown error");
      return;
    }
    s.api.cuDriverGetVersion(&s.api.driver_version);
    s.ok = true;
  } catch (const std::exception& e) {  // only allocation can throw above
    s.call = "dlopen(libcuda.so.1)";
    s.message = fmt::format("no CUDA driver: {}", e.what());
  }
}

const LoadState& loaded() {
  std::call_once(g_once, [] { load(state()); });
  return state();
}

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// "api().cuMemAlloc(&p, n)" -> "cuMemAlloc": the first cu* identifier that is called.
std::string plain_call_name(const char* call) {
  std::string_view s = call ? call : "";
  for (std::size_t i = 0; i + 2 <= s.size(); ++i) {
    if (s.compare(i, 2, "cu") != 0 || (i > 0 && ident_char(s[i - 1]))) continue;
    std::size_t j = i;
    while (j < s.size() && ident_char(s[j])) ++j;
    std::size_t k = j;
    while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
    if (k < s.size() && s[k] == '(') return std::string(s.substr(i, j - i));
  }
  return std::string(s);
}

// Makes `ctx` current while a destructor frees something that lives in it.
struct QuietScope {
  explicit QuietScope(CUcontext ctx) {
    const Api& a = state().api;
    CUcontext cur = nullptr;
    if (ctx && a.cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur != ctx)
      pushed = a.cuCtxPushCurrent(ctx) == CUDA_SUCCESS;
  }
  ~QuietScope() {
    CUcontext dummy;
    if (pushed) state().api.cuCtxPopCurrent(&dummy);
  }
  bool pushed = false;
};

CUcontext current_context() {
  CUcontext c = nullptr;
  PLX_CU(api().cuCtxGetCurrent(&c));
  if (!c)
    throw DriverError("no current CUDA context: create resources inside a CurrentContext",
                      "cuCtxGetCurrent", static_cast<int>(CUDA_ERROR_INVALID_CONTEXT));
  return c;
}

std::mutex g_smem_mutex;

// Raises the function's dynamic shared memory limit to at least `bytes` and returns the
// limit now in force. Under one process-wide mutex and never lowering it, so a launch that
// relied on an earlier, larger opt-in (another Launchable, another thread) stays valid.
unsigned opt_in_smem(CUfunction f, unsigned bytes) {
  const Api& a = api();
  std::lock_guard lock(g_smem_mutex);
  int cur = 0;
  PLX_CU(a.cuFuncGetAttribute(&cur, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, f));
  if (bytes <= static_cast<unsigned>(cur)) return static_cast<unsigned>(cur);
  PLX_CU(a.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                              static_cast<int>(bytes)));
  return bytes;
}

constexpr unsigned kDefaultSmem = 48u * 1024u;

}  // namespace

const Api& api() {
  const LoadState& s = loaded();
  if (!s.ok) [[unlikely]]
    throw NoGpuError(s.message, s.call, s.code);
  return s.api;
}

bool available(std::string* why) {
  try {
    int n = 0;
    CUresult r = api().cuDeviceGetCount(&n);
    if (r != CUDA_SUCCESS) {
      if (why) *why = fmt::format("cuDeviceGetCount failed: {}", result_name(r));
      return false;
    }
    if (n <= 0) {
      if (why) *why = "no CUDA device found";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return false;
  }
}

std::string result_name(CUresult r) {
  const LoadState& s = loaded();
  const char* name = nullptr;
  if (s.api.cuGetErrorName && s.api.cuGetErrorName(r, &name) == CUDA_SUCCESS && name)
    return name;
  return fmt::format("CUresult {}", static_cast<int>(r));
}

void throw_error(CUresult r, const char* call) {
  const LoadState& s = loaded();
  const char* str = nullptr;
  if (!s.api.cuGetErrorString || s.api.cuGetErrorString(r, &str) != CUDA_SUCCESS) str = nullptr;
  std::string name = plain_call_name(call);
  std::string msg = fmt::format("{} failed: {} ({})", name, result_name(r),
                                str ? str : "unknown error");
  throw DriverError(std::move(msg), std::move(name), static_cast<int>(r));
}

// --- CurrentContext ----------------------------------------------------------------

CurrentContext::CurrentContext(CUcontext ctx) {
  const Api& a = api();
  CUcontext cur = nullptr;
  PLX_CU(a.cuCtxGetCurrent(&cur));
  if (cur != ctx) {
    PLX_CU(a.cuCtxPushCurrent(ctx));
    pushed_ = true;
  }
}

CurrentContext::CurrentContext(const Device& d) : CurrentContext(d.context()) {}

CurrentContext::~CurrentContext() {
  CUcontext dummy;
  if (pushed_) state().api.cuCtxPopCurrent(&dummy);
}

// --- Device --------------------------------------------------------------------------

int Device::count() {
  int n = 0;
  PLX_CU(api().cuDeviceGetCount(&n));
  return n;
}

Device::Device(int ordinal) {
  const Api& a = api();
  PLX_CU(a.cuDeviceGet(&dev_, ordinal));
  char name[256] = {};
  PLX_CU(a.cuDeviceGetName(name, sizeof(name) - 1, dev_));
  name_ = name;
  auto attr = [&](CUdevice_attribute which, int& out, bool required) {
    CUresult r = a.cuDeviceGetAttribute(&out, which, dev_);
    if (r != CUDA_SUCCESS) {
      if (required) throw_error(r, "cuDeviceGetAttribute");
      out = 0;  // informational attributes some drivers no longer report
    }
  };
  attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, cc_major_, true);
  attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, cc_minor_, true);
  attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, sm_count_, true);
  attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, max_smem_optin_, true);
  attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, l2_bytes_, true);
  attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE, clock_khz_, false);
  attr(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, mem_clock_khz_, false);
  attr(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, mem_bus_bits_, false);
  PLX_CU(a.cuDeviceTotalMem(&total_mem_, dev_));
  PLX_CU(a.cuDevicePrimaryCtxRetain(&ctx_, dev_));
  ordinal_ = ordinal;  // last: a throw above leaves nothing to release
}

void Device::release() noexcept {
  if (ctx_) state().api.cuDevicePrimaryCtxRelease(dev_);
  ctx_ = nullptr;
  ordinal_ = -1;
}

Device::~Device() { release(); }

Device::Device(Device&& o) noexcept { *this = std::move(o); }

Device& Device::operator=(Device&& o) noexcept {
  if (this != &o) {
    release();
    ordinal_ = std::exchange(o.ordinal_, -1);
    dev_ = o.dev_;
    ctx_ = std::exchange(o.ctx_, nullptr);
    name_ = std::move(o.name_);
    cc_major_ = o.cc_major_;
    cc_minor_ = o.cc_minor_;
    sm_count_ = o.sm_count_;
    max_smem_optin_ = o.max_smem_optin_;
    l2_bytes_ = o.l2_bytes_;
    clock_khz_ = o.clock_khz_;
    mem_clock_khz_ = o.mem_clock_khz_;
    mem_bus_bits_ = o.mem_bus_bits_;
    total_mem_ = o.total_mem_;
  }
  return *this;
}

std::pair<std::size_t, std::size_t> Device::mem_info() const {
  CurrentContext scope(ctx_);
  std::size_t free = 0, total = 0;
  PLX_CU(api().cuMemGetInfo(&free, &total));
  return {free, total};
}

Arch Device::arch() const {
  if (cc_major_ < 8)
    throw UnsupportedError(fmt::format(
        "GPU {} ({}) has compute capability {}.{}; parallax-jit needs compute capability 8.0+",
        ordinal_, name_, cc_major_, cc_minor_));
  if (cc_major_ == 8) return Arch::sm80;
  if (cc_major_ == 9 && cc_minor_ == 0) return Arch::sm90a;
  // sm_90a code does not run on 10.x/12.x and the sm_80 path is not validated there.
  throw UnsupportedError(fmt::format(
      "GPU {} ({}) has compute capability {}.{}; parallax-jit supports 8.x (sm_80) and "
      "9.0 (sm_90a) only",
      ordinal_, name_, cc_major_, cc_minor_));
}

std::string Device::arch_string() const { return std::string(to_string(arch())); }

void Device::make_current() const { PLX_CU(api().cuCtxSetCurrent(ctx_)); }

// --- Module --------------------------------------------------------------------------

Module::Module(const std::string& cubin) {
  ctx_ = current_context();
  PLX_CU(api().cuModuleLoadData(&mod_, cubin.data()));
}

Module::~Module() {
  if (!mod_) return;
  QuietScope scope(ctx_);
  state().api.cuModuleUnload(mod_);
}

Module::Module(Module&& o) noexcept
    : mod_(std::exchange(o.mod_, nullptr)), ctx_(std::exchange(o.ctx_, nullptr)) {}

Module& Module::operator=(Module&& o) noexcept {
  if (this != &o) {
    Module tmp(std::move(*this));
    mod_ = std::exchange(o.mod_, nullptr);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

CUfunction Module::function(const std::string& lowered_name) const {
  CUfunction f = nullptr;
  CUresult r = api().cuModuleGetFunction(&f, mod_, lowered_name.c_str());
  if (r != CUDA_SUCCESS)
    throw DriverError(fmt::format("cuModuleGetFunction failed for '{}': {}", lowered_name,
                                  result_name(r)),
                      "cuModuleGetFunction", static_cast<int>(r));
  return f;
}

// --- Buffer --------------------------------------------------------------------------

Buffer::Buffer(std::size_t bytes) {
  if (bytes == 0) return;
  ctx_ = current_context();
  PLX_CU(api().cuMemAlloc(&ptr_, bytes));
  size_ = bytes;
}

void Buffer::reset() noexcept {
  if (ptr_) {
    QuietScope scope(ctx_);
    state().api.cuMemFree(ptr_);
  }
  ptr_ = 0;
  size_ = 0;
  ctx_ = nullptr;
}

Buffer::~Buffer() { reset(); }

Buffer::Buffer(Buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, 0)), size_(std::exchange(o.size_, 0)),
      ctx_(std::exchange(o.ctx_, nullptr)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, 0);
    size_ = std::exchange(o.size_, 0);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

static void check_bytes(std::size_t bytes, std::size_t size, const char* what) {
  if (bytes > size)
    throw Error(fmt::format("Buffer::{}: {} bytes exceed the buffer's {} bytes", what, bytes,
                            size));
}

void Buffer::upload(const void* src, std::size_t bytes) {
  check_bytes(bytes, size_, "upload");
  if (bytes == 0) return;
  CurrentContext scope(ctx_);
  PLX_CU(api().cuMemcpyHtoD(ptr_, src, bytes));
}

void Buffer::download(void* dst, std::size_t bytes) const {
  check_bytes(bytes, size_, "download");
  if (bytes == 0) return;
  CurrentContext scope(ctx_);
  PLX_CU(api().cuMemcpyDtoH(dst, ptr_, bytes));
}

void Buffer::fill_bytes(std::uint8_t value) {
  if (size_ == 0) return;
  CurrentContext scope(ctx_);
  PLX_CU(api().cuMemsetD8(ptr_, value, size_));
}

// --- Stream / Event ------------------------------------------------------------------

Stream::Stream() {
  ctx_ = current_context();
  PLX_CU(api().cuStreamCreate(&s_, CU_STREAM_NON_BLOCKING));
}

Stream::~Stream() {
  if (!s_) return;
  QuietScope scope(ctx_);
  state().api.cuStreamDestroy(s_);
}

Stream::Stream(Stream&& o) noexcept
    : s_(std::exchange(o.s_, nullptr)), ctx_(std::exchange(o.ctx_, nullptr)) {}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    Stream tmp(std::move(*this));
    s_ = std::exchange(o.s_, nullptr);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

void Stream::synchronize() const { PLX_CU(api().cuStreamSynchronize(s_)); }

Event::Event(unsigned flags) {
  ctx_ = current_context();
  PLX_CU(api().cuEventCreate(&e_, flags));
}

Event::~Event() {
  if (!e_) return;
  QuietScope scope(ctx_);
  state().api.cuEventDestroy(e_);
}

Event::Event(Event&& o) noexcept
    : e_(std::exchange(o.e_, nullptr)), ctx_(std::exchange(o.ctx_, nullptr)) {}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    Event tmp(std::move(*this));
    e_ = std::exchange(o.e_, nullptr);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

void Event::record(CUstream stream) const { PLX_CU(api().cuEventRecord(e_, stream)); }
void Event::synchronize() const { PLX_CU(api().cuEventSynchronize(e_)); }

float elapsed_ms(const Event& start, const Event& stop) {
  stop.synchronize();
  float ms = 0;
  PLX_CU(api().cuEventElapsedTime(&ms, start.handle(), stop.handle()));
  return ms;
}

// --- launch --------------------------------------------------------------------------

void launch(Launchable& k, Dim3 grid, Dim3 block, unsigned smem_bytes, CUstream stream,
            void** args) {
  const Api& a = api();
  if (smem_bytes > k.smem_opted_in.load(std::memory_order_acquire)) [[unlikely]] {
    unsigned limit = opt_in_smem(k.f, smem_bytes);
    unsigned seen = k.smem_opted_in.load(std::memory_order_relaxed);
    while (seen < limit && !k.smem_opted_in.compare_exchange_weak(seen, limit)) {
    }
  }
  PLX_CU(a.cuLaunchKernel(k.f, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem_bytes,
                          stream, args, nullptr));
}

void launch(CUfunction f, Dim3 grid, Dim3 block, unsigned smem_bytes, CUstream stream,
            void** args) {
  const Api& a = api();
  if (smem_bytes > kDefaultSmem) opt_in_smem(f, smem_bytes);
  PLX_CU(a.cuLaunchKernel(f, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem_bytes,
                          stream, args, nullptr));
}

}  // namespace plx::cu
