// The C API of libparallax.so: a thin shell over plx::Engine that turns every exception
// into an error code plus a thread-local message. No exception crosses this boundary.
#include "parallax/parallax.h"

#include <fmt/format.h>

#include <cstddef>
#include <new>
#include <string>

#include "parallax/parallax.hpp"
#include "runtime/c_args.hpp"

struct plx_engine {
  plx::Engine engine;
  explicit plx_engine(int ordinal) : engine(ordinal) {}
};

namespace {
thread_local std::string g_last_error;

int fail(int code, std::string msg) {
  g_last_error = std::move(msg);
  return code;
}

template <class F>
int guarded(F&& f) {
  g_last_error.clear();
  try {
    f();
    return PLX_OK;
  } catch (const plx::NoGpuError& e) {
    return fail(PLX_ERROR_NO_GPU, e.what());
  } catch (const plx::DriverError& e) {
    return fail(PLX_ERROR_DRIVER, e.what());
  } catch (const plx::CompileError& e) {
    return fail(PLX_ERROR_COMPILE, e.what());
  } catch (const plx::UnsupportedError& e) {
    return fail(PLX_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return fail(PLX_ERROR_INTERNAL, "out of host memory");
  } catch (const std::exception& e) {
    return fail(PLX_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail(PLX_ERROR_INTERNAL, "unknown error");
  }
}

// The prefix of plx_attention_args every struct_size must cover (the fields of ABI 1);
// later fields are read only when the caller's struct_size includes them
// (runtime/c_args.hpp).
constexpr int kMinArgsSize = static_cast<int>(plx::cabi::kAbi1Size);
using plx::cabi::from_c_args;
}  // namespace

extern "C" {

__attribute__((visibility("default"))) int plx_engine_create(plx_engine** out, int device_ordinal) {
  if (!out) return fail(PLX_ERROR_INVALID_ARGUMENT, "plx_engine_create: out is NULL");
  *out = nullptr;
  return guarded([&] { *out = new plx_engine(device_ordinal); });
}

__attribute__((visibility("default"))) void plx_engine_destroy(plx_engine* e) { delete e; }

__attribute__((visibility("default"))) int plx_attention(plx_engine* e, const plx_attention_args* a,
                                                         void* cuda_stream) {
  if (!e) return fail(PLX_ERROR_INVALID_ARGUMENT, "plx_attention: engine is NULL");
  if (!a) return fail(PLX_ERROR_INVALID_ARGUMENT, "plx_attention: args is NULL");
  if (a->struct_size < kMinArgsSize)
    return fail(PLX_ERROR_INVALID_ARGUMENT,
                fmt::format("plx_attention: struct_size = {} is smaller than this library's "
                            "oldest plx_attention_args ({} bytes); set it to sizeof(plx_attention_args)",
                            a->struct_size, kMinArgsSize));
  return guarded([&] {
    const plx::AttentionArgs x = from_c_args(*a);
    e->engine.attention(x, cuda_stream);
  });
}

__attribute__((visibility("default"))) int plx_attention_backward(plx_engine* e, const plx_attention_args* a,
                                                                  const plx_backward_args* g, void* cuda_stream) {
  if (!e) return fail(PLX_ERROR_INVALID_ARGUMENT, "plx_attention_backward: engine is NULL");
  if (!a) return fail(PLX_ERROR_INVALID_ARGUMENT, "plx_attention_backward: args is NULL");
  if (!g) return fail(PLX_ERROR_INVALID_ARGUMENT, "plx_attention_backward: backward args is NULL");
  if (a->struct_size < kMinArgsSize)
    return fail(PLX_ERROR_INVALID_ARGUMENT,
                fmt::format("plx_attention_backward: struct_size = {} is smaller than this library's oldest "
                            "plx_attention_args ({} bytes); set it to sizeof(plx_attention_args)",
                            a->struct_size, kMinArgsSize));
  if (g->struct_size < static_cast<int>(sizeof(plx_backward_args)))
    return fail(PLX_ERROR_INVALID_ARGUMENT,
                fmt::format("plx_attention_backward: backward args struct_size = {} is smaller than "
                            "sizeof(plx_backward_args) = {}",
                            g->struct_size, sizeof(plx_backward_args)));
  return guarded([&] {
    plx::BackwardArgs b;
    b.dout = g->dout;
    b.o = g->o;
    b.stats = g->stats;
    b.barv = g->barv;
    b.dq = g->dq;
    b.dr = g->dr;
    b.dk = g->dk;
    b.dv = g->dv;
    e->engine.attention_backward(from_c_args(*a), b, cuda_stream);
  });
}

__attribute__((visibility("default"))) const char* plx_last_error(void) { return g_last_error.c_str(); }

__attribute__((visibility("default"))) int plx_abi_version(void) { return PLX_ABI_VERSION; }

__attribute__((visibility("default"))) const char* plx_version(void) { return PLX_VERSION; }

}  // extern "C"
