// The C API as an FFI caller sees it: libparallax.so opened with dlopen, the four entry
// points looked up by name, errors as codes plus plx_last_error().
#include <catch2/catch.hpp>
#include <dlfcn.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <thread>

#include "gpu_harness.hpp"
#include "parallax/parallax.h"
#include "runtime/c_args.hpp"
#include "runtime/launch.hpp"

using namespace plx;
using namespace plx::testing;

namespace {
struct CApi {
  void* lib = nullptr;
  int (*create)(plx_engine**, int) = nullptr;
  void (*destroy)(plx_engine*) = nullptr;
  int (*attention)(plx_engine*, const plx_attention_args*, void*) = nullptr;
  const char* (*last_error)() = nullptr;
};

const CApi& capi() {
  static CApi c = [] {
    CApi a;
    a.lib = dlopen(PLX_BINARY_DIR "/libparallax.so", RTLD_NOW | RTLD_LOCAL);
    if (!a.lib) FAIL("dlopen libparallax.so: " << dlerror());
    a.create = reinterpret_cast<decltype(a.create)>(dlsym(a.lib, "plx_engine_create"));
    a.destroy = reinterpret_cast<decltype(a.destroy)>(dlsym(a.lib, "plx_engine_destroy"));
    a.attention = reinterpret_cast<decltype(a.attention)>(dlsym(a.lib, "plx_attention"));
    a.last_error = reinterpret_cast<decltype(a.last_error)>(dlsym(a.lib, "plx_last_error"));
    return a;
  }();
  return c;
}
}  // namespace

TEST_CASE("libparallax.so exports the C API", "[capi]") {
  const CApi& c = capi();
  REQUIRE(c.create);
  REQUIRE(c.destroy);
  REQUIRE(c.attention);
  REQUIRE(c.last_error);
}

TEST_CASE("C API errors are codes and messages, never crashes", "[capi]") {
  const CApi& c = capi();
  REQUIRE(c.create);
  CHECK(c.create(nullptr, 0) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(c.last_error()).find("out is NULL") != std::string::npos);
  plx_attention_args a{};
  a.struct_size = sizeof a;
  CHECK(c.attention(nullptr, &a, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(c.last_error()).find("engine is NULL") != std::string::npos);
  // The message is thread-local: another thread starts clean.
  std::string other = "unset";
  std::thread([&] { other = c.last_error(); }).join();
  CHECK(other.empty());

  std::string why;
  if (!cu::available(&why)) {
    plx_engine* e = reinterpret_cast<plx_engine*>(0x1);
    CHECK(c.create(&e, 0) == PLX_ERROR_NO_GPU);
    CHECK(e == nullptr);
    CHECK(std::strlen(c.last_error()) > 0);
    return;
  }
  plx_engine* e = nullptr;
  REQUIRE(c.create(&e, 0) == PLX_OK);
  a.struct_size = 8;
  CHECK(c.attention(e, &a, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(c.last_error()).find("struct_size = 8") != std::string::npos);
  a.struct_size = sizeof a;
  a.variant = PLX_PARALLAX;
  a.batch = a.q_len = a.kv_len = a.heads_q = a.heads_kv = 1;
  a.head_dim = 96;
  a.window_left = -1;
  CHECK(c.attention(e, &a, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(c.last_error()).find("head_dim = 96") != std::string::npos);
  c.destroy(e);
  c.destroy(nullptr);  // allowed, like free(NULL)
}

TEST_CASE("C API decode matches the oracle", "[gpu][capi]") {
  const CApi& c = capi();
  std::string why;
  if (!cu::available(&why)) {
    WARN("skipping [gpu] test: " << why);
    return;
  }
  cu::Device dev(0);
  dev.make_current();
  plx_engine* e = nullptr;
  REQUIRE(c.create(&e, 0) == PLX_OK);
  for (plx_dtype dt : {PLX_BF16, PLX_FP16}) {
    AttentionArgs x;
    x.family = Family::parallax;
    x.dtype = dt == PLX_BF16 ? DType::bf16 : DType::fp16;
    x.batch = 3;
    x.q_len = 1;
    x.kv_len = 1031;
    x.heads_q = 16;
    x.heads_kv = 4;
    x.head_dim = 128;
    x.window_left = -1;
    std::mt19937_64 rng(fresh_seed());
    const size_t nq = size_t(x.batch) * x.heads_q * x.head_dim, nkv = size_t(x.batch) * x.kv_len * x.heads_kv * x.head_dim;
    Tensor q = random_tensor(rng, nq, 128, x.dtype, true), r = random_tensor(rng, nq, 128, x.dtype, true);
    Tensor k = random_tensor(rng, nkv, 128, x.dtype, true), v = random_tensor(rng, nkv, 128, x.dtype, false);
    cu::Buffer dq(nq * 2), dr(nq * 2), dk(nkv * 2), dv(nkv * 2), dout(nq * 2);
    dq.upload(q.bits.data(), nq * 2);
    dr.upload(r.bits.data(), nq * 2);
    dk.upload(k.bits.data(), nkv * 2);
    dv.upload(v.bits.data(), nkv * 2);
    dout.fill_bytes(0xFF);
    plx_attention_args a{};
    a.struct_size = sizeof a;
    a.variant = PLX_PARALLAX;
    a.dtype = dt;
    a.batch = x.batch;
    a.q_len = 1;
    a.kv_len = x.kv_len;
    a.heads_q = x.heads_q;
    a.heads_kv = x.heads_kv;
    a.head_dim = 128;
    a.causal = 1;
    a.window_left = -1;
    a.q = dq.data();
    a.r = dr.data();
    a.k = dk.data();
    a.v = dv.data();
    a.o = dout.data();
    REQUIRE(c.attention(e, &a, nullptr) == PLX_OK);
    PLX_CU(cu::api().cuCtxSynchronize());
    std::vector<std::uint16_t> out(nq);
    dout.download(out.data(), nq * 2);
    std::vector<double> ref(nq);
    oracle::attention(problem_of(x, {}), q.exact.data(), r.exact.data(), k.exact.data(), v.exact.data(), ref.data());
    double num = 0, den = 0;
    long bad = 0;
    for (size_t i = 0; i < nq; ++i) {
      const double o = to_double(x.dtype, out[i]);
      if (!std::isfinite(o)) ++bad;
      else num += (o - ref[i]) * (o - ref[i]);
      den += ref[i] * ref[i];
    }
    CHECK(bad == 0);
    CHECK(std::sqrt(num / den) < tolerance(x.dtype));
  }
  c.destroy(e);
}

// FFI mirrors (python/parallax_jit/_lib.py packs the ABI 2 prefix with struct.pack, 112
// bytes) rely on these offsets; a field inserted anywhere but the end breaks them all.
TEST_CASE("plx_attention_args layout is the one FFI mirrors pack", "[capi]") {
  STATIC_REQUIRE(sizeof(void*) == 8);  // LP64 only: the offsets below assume it
  CHECK(offsetof(plx_attention_args, qk_scale) == 44);
  CHECK(offsetof(plx_attention_args, q) == 48);
  CHECK(offsetof(plx_attention_args, seqused_k) == 88);
  CHECK(offsetof(plx_attention_args, block_table) == 96);
  CHECK(offsetof(plx_attention_args, max_pages) == 108);
  CHECK(sizeof(plx_attention_args) >= 112);
}

// ABI 4 appends cu_seqlens_q / cu_seqlens_k. A caller built against an older parallax.h
// passes a smaller struct_size; the library must not read past it, so an ABI 3 struct
// (whatever bytes follow it in the caller's memory) means "no varlen batch".
TEST_CASE("struct_size selects the fields read: ABI 3 means no varlen, ABI 4 reads cu_seqlens", "[capi][varlen]") {
  using namespace plx::cabi;
  CHECK(offsetof(plx_attention_args, stats) == 112);
  CHECK(offsetof(plx_attention_args, barv) == 120);
  CHECK(offsetof(plx_attention_args, cu_seqlens_q) == 128);
  CHECK(offsetof(plx_attention_args, cu_seqlens_k) == 136);
  CHECK(kAbi1Size == 96);
  CHECK(kAbi2Size == 112);
  CHECK(kAbi3Size == 128);
  CHECK(kAbi4Size == 144);
  CHECK(sizeof(plx_attention_args) == kAbi4Size);
  STATIC_REQUIRE(PLX_ABI_VERSION == 4);

  alignas(16) static int cu_q[3] = {0, 5, 9}, cu_k[3] = {0, 7, 20};
  alignas(16) static char buf[16];
  plx_attention_args a{};
  a.variant = PLX_SOFTMAX;
  a.batch = 2;
  a.q_len = 5;
  a.kv_len = 13;
  a.stats = reinterpret_cast<float*>(buf);
  a.barv = buf;
  a.block_table = cu_q;
  a.page_size = 16;
  a.max_pages = 1;
  a.cu_seqlens_q = cu_q;
  a.cu_seqlens_k = cu_k;
  a.struct_size = sizeof a;
  AttentionArgs x = from_c_args(a);
  CHECK(x.cu_seqlens_q == cu_q);
  CHECK(x.cu_seqlens_k == cu_k);
  CHECK(x.stats == a.stats);
  CHECK(x.block_table == cu_q);
  CHECK(x.batch == 2);
  CHECK(x.kv_len == 13);
  a.struct_size = int(kAbi3Size);  // an ABI 3 caller: the bytes after barv are not its own
  x = from_c_args(a);
  CHECK(x.cu_seqlens_q == nullptr);
  CHECK(x.cu_seqlens_k == nullptr);
  CHECK(x.stats == a.stats);
  CHECK(x.barv == a.barv);
  a.struct_size = int(kAbi4Size) - 1;  // a partial cu_seqlens_k is not read either
  x = from_c_args(a);
  CHECK(x.cu_seqlens_q == nullptr);
  CHECK(x.cu_seqlens_k == nullptr);
  a.struct_size = int(kAbi2Size);
  x = from_c_args(a);
  CHECK(x.stats == nullptr);
  CHECK(x.barv == nullptr);
  CHECK(x.block_table == cu_q);
  CHECK(x.page_size == 16);
  a.struct_size = int(kAbi1Size);
  x = from_c_args(a);
  CHECK(x.block_table == nullptr);
  CHECK(x.page_size == 0);
  CHECK(x.cu_seqlens_q == nullptr);

  // The engine's validation of the converted arguments: one of the pair is refused by
  // name from an ABI 4 caller; the same bytes from an ABI 3 caller are no varlen at all.
  plx_attention_args b{};
  b.struct_size = sizeof b;
  b.variant = PLX_PARALLAX;
  b.batch = 2;
  b.q_len = b.kv_len = 64;
  b.heads_q = b.heads_kv = 1;
  b.head_dim = 128;
  b.window_left = -1;
  b.q = b.r = b.k = b.v = buf;
  b.o = buf;
  b.cu_seqlens_q = cu_q;
  CHECK_THROWS_WITH(plx::validate(from_c_args(b)), Catch::Contains("needs both"));
  b.struct_size = int(kAbi3Size);
  CHECK_NOTHROW(plx::validate(from_c_args(b)));
  // ... and so does the library (only where an engine can be created: a GPU).
  const CApi& c = capi();
  REQUIRE(c.create);
  std::string why;
  if (!cu::available(&why)) return;
  plx_engine* e = nullptr;
  REQUIRE(c.create(&e, 0) == PLX_OK);
  b.struct_size = sizeof b;
  CHECK(c.attention(e, &b, nullptr) == PLX_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(c.last_error()).find("needs both") != std::string::npos);
  c.destroy(e);
}

TEST_CASE("plx_abi_version and plx_version say what the library reads and is", "[capi]") {
  const CApi& c = capi();
  REQUIRE(c.lib);
  auto abi = reinterpret_cast<int (*)()>(dlsym(c.lib, "plx_abi_version"));
  auto version = reinterpret_cast<const char* (*)()>(dlsym(c.lib, "plx_version"));
  REQUIRE(abi);
  REQUIRE(version);
  CHECK(abi() == PLX_ABI_VERSION);
  CHECK(abi() >= 2);  // ABI 2 (paged KV) predates the query
  CHECK(std::string(version()) == PLX_VERSION);
}
