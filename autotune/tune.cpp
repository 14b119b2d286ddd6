#include "autotune/tune.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>

#include "common/half.hpp"
#include "generator/legality.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"

namespace plx::tune {

std::string Bucket::flags() const {
  std::string mask = causal ? "causal" : "full";
  if (shape.window >= 0) mask += fmt::format(" --window {}", shape.window);
  return fmt::format("--op {} --family {} --dtype {} --d {} --mask {} --batch {} --q-len {} --kv-len {} "
                     "--heads-q {} --heads-kv {}",
                     to_string(op), to_string(family), to_string(dtype), head_dim, mask, shape.batch, shape.q_len,
                     shape.kv_len, shape.heads_q, shape.heads_kv);
}

AttentionArgs Bucket::args() const {
  AttentionArgs a;
  a.family = family;
  a.dtype = dtype;
  a.head_dim = head_dim;
  a.causal = causal;
  a.window_left = shape.window;
  a.batch = shape.batch;
  a.q_len = shape.q_len;
  a.kv_len = shape.kv_len;
  a.heads_q = shape.heads_q;
  a.heads_kv = shape.heads_kv;
  return a;
}

std::vector<Bucket> buckets_for(const KernelSpec& spec, const std::vector<Variant>& variants) {
  struct Shape {
    int batch, q_len, kv_len;
  };
  std::vector<Shape> shapes;
  if (spec.op == Op::decode) {
    // Short, medium and long contexts; one sequence (latency) and 32 (throughput).
    for (int kv : {1024, 8192, 32768})
      for (int batch : {1, 32}) shapes.push_back({batch, 1, kv});
  } else {
    for (int len : {1024, 8192}) shapes.push_back({1, len, len});
  }
  std::vector<int> widths;
  for (int w : spec.windows)
    if (w >= 1) widths.push_back(w);

  std::vector<Bucket> out;
  std::vector<Variant> classes;  // one representative per (family, dtype, d, causal, window)
  for (const Variant& v : variants) {
    if (v.op != spec.op) continue;
    auto same = [&](const Variant& c) {
      return c.family == v.family && c.dtype == v.dtype && c.head_dim == v.head_dim && c.causal == v.causal &&
             c.window == v.window;
    };
    if (std::any_of(classes.begin(), classes.end(), same)) continue;
    classes.push_back(v);
    const std::vector<int> masks = v.window ? widths : std::vector<int>{-1};
    for (int window : masks)
      for (int g : spec.gqa)
        for (const Shape& s : shapes) {
          Bucket b;
          b.op = v.op;
          b.family = v.family;
          b.dtype = v.dtype;
          b.head_dim = v.head_dim;
          b.causal = v.causal;
          b.gqa = g;
          b.shape = Problem{s.batch, s.q_len, s.kv_len, kHeadsKv * g, kHeadsKv, window};
          out.push_back(b);
        }
  }
  return out;
}

bool serves(const Variant& v, const Bucket& b) {
  return v.op == b.op && v.family == b.family && v.dtype == b.dtype && v.head_dim == b.head_dim &&
         v.causal == b.causal && v.window == (b.shape.window >= 0);
}

std::vector<Ranked> rank(const std::vector<Variant>& variants, const Bucket& b, const GpuProfile& g) {
  std::vector<Ranked> out;
  for (const Variant& v : variants)
    if (serves(v, b) && !why_illegal(v) && fits(v, g)) out.push_back({v, predict(v, b.shape, g)});
  std::stable_sort(out.begin(), out.end(), [](const Ranked& x, const Ranked& y) {
    // Equal predictions (e.g. memory bound, same bytes): the one doing less padded work,
    // then the smaller shared-memory footprint, then the name.
    if (x.p.us != y.p.us) return x.p.us < y.p.us;
    if (x.p.flops != y.p.flops) return x.p.flops < y.p.flops;
    if (smem_bytes(x.v) != smem_bytes(y.v)) return smem_bytes(x.v) < smem_bytes(y.v);
    return x.v.name() < y.v.name();
  });
  return out;
}

// ---- timing ----------------------------------------------------------------------------

namespace {

// A kernel that holds the stream for `ns` nanoseconds (tools/bench/plx_bench.cpp's method).
constexpr const char* kSpinSource =
    "extern \"C\" __global__ void plx_spin(unsigned long long ns) {\n"
    "  unsigned long long t0, t;\n"
    "  asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t0));\n"
    "  do { asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t)); } while (t - t0 < ns);\n"
    "}\n";

// Uniform values in [-1, 1) in the kernel's dtype, uploaded in 1 MiB chunks of one random
// block (the values only need to be finite and varied, not independent).
void fill_random(cu::Buffer& buf, DType dt, std::uint32_t seed) {
  std::vector<std::uint16_t> chunk(1 << 19);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& h : chunk) h = dt == DType::bf16 ? half::float_to_bf16(u(rng)) : half::float_to_fp16(u(rng));
  const std::size_t chunk_bytes = chunk.size() * 2;
  for (std::size_t off = 0; off < buf.size(); off += chunk_bytes) {
    const std::size_t n = std::min(chunk_bytes, buf.size() - off);
    PLX_CU(cu::api().cuMemcpyHtoD(buf.ptr() + off, chunk.data(), n));
  }
}

}  // namespace

struct Bench::Impl {
  AttentionArgs args;
  std::vector<cu::Buffer> buffers;  // q, r, k, v, o
  cu::Buffer flush;
  cu::Stream stream;
  std::optional<cu::Module> spin_module;
  cu::Launchable spin;
};

Bench::Bench(const Bucket& b, int l2_bytes, const std::string& arch) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.args = b.args();
  const std::size_t e = 2, d = std::size_t(b.head_dim);
  const std::size_t q_bytes = std::size_t(b.shape.batch) * b.shape.q_len * b.shape.heads_q * d * e;
  const std::size_t kv_bytes = std::size_t(b.shape.batch) * b.shape.kv_len * b.shape.heads_kv * d * e;
  std::uint32_t seed = 1;
  for (std::size_t n : {q_bytes, q_bytes, kv_bytes, kv_bytes, q_bytes}) {
    m.buffers.emplace_back(n);
    fill_random(m.buffers.back(), b.dtype, seed++);
  }
  m.args.q = m.buffers[0].data();
  m.args.r = m.buffers[1].data();
  m.args.k = m.buffers[2].data();
  m.args.v = m.buffers[3].data();
  m.args.o = m.buffers[4].data();
  m.flush = cu::Buffer(std::size_t(std::max(l2_bytes, 1 << 20)) * 2);

  CompileRequest req;
  req.source = kSpinSource;
  req.arch = arch;
  req.name_expression = "plx_spin";
  req.display_name = "plx_spin";
  const CompiledKernel k = compile(req);
  m.spin_module.emplace(k.cubin);
  m.spin = cu::Launchable(m.spin_module->function(k.lowered_name));
}

Bench::~Bench() = default;

Timing Bench::time(Engine& engine, const std::string& variant_name, int warmup, int reps) {
  Impl& m = *impl_;
  Timing t;
  const CUstream s = m.stream.handle();
  try {
    engine.prepare(variant_name);
    for (int i = 0; i < warmup; ++i) engine.attention(m.args, variant_name, s);
    m.stream.synchronize();
  } catch (const Error& e) {
    t.error = e.what();
    return t;
  }
  std::vector<double> us;
  cu::Event start, stop;
  for (int i = 0; i < std::max(1, reps); ++i) {
    PLX_CU(cu::api().cuMemsetD8Async(m.flush.ptr(), std::uint8_t(i), m.flush.size(), s));
    unsigned long long ns = 20000;
    void* spin_args[] = {&ns};
    cu::launch(m.spin, {1, 1, 1}, {1, 1, 1}, 0, s, spin_args);
    start.record(s);
    engine.attention(m.args, variant_name, s);
    stop.record(s);
    us.push_back(double(cu::elapsed_ms(start, stop)) * 1e3);
  }
  std::sort(us.begin(), us.end());
  t.min_us = us.front();
  t.median_us = us.size() % 2 ? us[us.size() / 2] : 0.5 * (us[us.size() / 2 - 1] + us[us.size() / 2]);
  return t;
}

}  // namespace plx::tune
