// plx-bench: times the engine's kernels with CUDA events on cold-L2 rotating buffers and
// prints one JSON object per shape (the rows of docs/PERFORMANCE.md). Baselines are timed
// in the same run by tools/bench/torch_baseline.py with the same shapes and method.
//
//   plx-bench decode [--family parallax|softmax|parallax_uncentered] [--dtype bf16|fp16]
//            [--batch 1,8,32] [--kv 1024,4096,16384] [--heads-q 32] [--heads-kv 8] [--d 128]
//            [--q-len 1] [--reps 200] [--variant NAME]
//            [--page P [--page-order shuffled|linear]]   paged K/V, P tokens per page; the
//            block table is a random permutation of the pool (as a serving engine's
//            allocator leaves it) or, with linear, page i of batch b at b * pages + i
//   plx-bench example-decode --batch B --kv L [--variant NAME] --dump FILE
//            examples/decode's last step (its inputs, every sequence live to L) through
//            this build's engine, written as raw bf16 like `plx-decode B L S --dump FILE`
#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <cstring>
#include <string>
#include <vector>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "autotune/host_overhead.hpp"
#include "generator/render.hpp"
#include "generator/variant.hpp"
#include "runtime/compiler.hpp"
#include "runtime/jit.hpp"
#include "parallax/parallax.hpp"
#include "runtime/driver.hpp"
#include "runtime/launch.hpp"
#include "tests/decode_example.hpp"
#include <unistd.h>

using namespace plx;

namespace {
// A kernel that holds the stream for `ns` nanoseconds. Issued before each timed launch,
// it lets the host enqueue the events and the kernel while the GPU is busy, so the events
// measure GPU time, not launch overhead (the reference figures' method; the torch script
// does the same with torch.cuda._sleep).
struct Spin {
  cu::Module module;
  cu::Launchable fn;
  static Spin make() {
    CompileRequest req;
    req.source =
        "extern \"C\" __global__ void plx_spin(unsigned long long ns) {\n"
        "  unsigned long long t0, t;\n"
        "  asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t0));\n"
        "  do { asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t)); } while (t - t0 < ns);\n"
        "}\n";
    req.arch = "sm_90a";
    req.name_expression = "plx_spin";
    req.display_name = "plx_spin";
    CompiledKernel k = compile(req);
    cu::Module m(k.cubin);
    CUfunction f = m.function(k.lowered_name);
    return Spin{std::move(m), cu::Launchable(f)};
  }
  void run(CUstream s, unsigned long long ns) {
    void* args[] = {&ns};
    cu::launch(fn, {1, 1, 1}, {1, 1, 1}, 0, s, args);
  }
};

std::vector<int> ints(const std::string& s) {
  std::vector<int> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    v.push_back(std::stoi(s.substr(i, j - i)));
    i = j + 1;
  }
  return v;
}
}  // namespace

// Issue 3's host-side bars: cold NVRTC compile, load from the disk cache in a new engine,
// and the host time a repeated call adds (the GPU work is tiny and queued).
int overhead() {
  const std::string name = "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s2_kauto_sm90a";
  const measure::HostOverhead h = measure::host_overhead(*parse_variant_name(name));
  fmt::print("{{\"bench\":\"overhead\",\"variant\":\"{}\",\"cold_compile_ms\":{:.1f},\"disk_load_ms\":{:.2f},"
             "\"host_us_per_call_auto\":{:.2f},\"host_us_per_call_named\":{:.2f},\"host_us_raw_launch\":{:.2f},"
             "\"registers\":{}}}\n",
             name, h.cold_compile_ms, h.disk_load_ms, h.auto_us, h.named_us, h.raw_us, h.registers);
  return 0;
}

// Not timed: the reference output that the installed example's --dump must equal byte
// for byte (tools/bench/sessions/2026-11-29-example-gpu.sh compares them with cmp).
int example_decode(int batch, int kv, const std::string& variant, const std::string& dump) {
  const testing::DecodeExampleOutput r = testing::engine_decode_example(batch, kv, variant);
  std::ofstream f(dump, std::ios::binary);
  f.write(reinterpret_cast<const char*>(r.o.data()), std::streamsize(r.o.size() * 2));
  if (!f.flush()) throw Error("cannot write " + dump);
  fmt::print("{{\"bench\":\"example-decode\",\"batch\":{},\"kv_len\":{},\"variant\":\"{}\",\"chosen\":\"{}\","
             "\"bytes\":{},\"dump\":\"{}\"}}\n",
             batch, kv, r.variant, r.chosen, r.o.size() * 2, dump);
  return 0;
}

int main(int argc, char** argv) try {
  std::string op = argc > 1 ? argv[1] : "decode";
  if (op == "overhead") return overhead();
  std::string family = "parallax", dtype = "bf16", variant, shape_list, dump;
  std::vector<int> batches{1, 8, 32}, kvs{1024, 4096, 16384};
  int page = 0;
  bool shuffle_pages = true;
  long spin_ns = 40000;
  int hq = 32, hkv = 8, d = 128, q_len = op == "decode" ? 1 : 4096, reps = 200;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--family") family = v;
    else if (k == "--dtype") dtype = v;
    else if (k == "--batch") batches = ints(v);
    else if (k == "--kv") kvs = ints(v);
    else if (k == "--heads-q") hq = std::stoi(v);
    else if (k == "--heads-kv") hkv = std::stoi(v);
    else if (k == "--d") d = std::stoi(v);
    else if (k == "--q-len") q_len = std::stoi(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--variant") variant = v;
    else if (k == "--shapes") shape_list = v;
    else if (k == "--page") page = std::stoi(v);
    else if (k == "--page-order") {
      if (v != "shuffled" && v != "linear") throw Error("--page-order: shuffled or linear, got " + v);
      shuffle_pages = v == "shuffled";
    }
    else if (k == "--spin-ns") spin_ns = std::stol(v);
    else if (k == "--dump") dump = v;
    else throw Error("unknown option " + k);
  }
  if (op == "example-decode") {
    if (batches.size() != 1 || kvs.size() != 1 || dump.empty())
      throw Error("example-decode needs one --batch, one --kv and --dump FILE");
    return example_decode(batches[0], kvs[0], variant, dump);
  }
  Engine engine(0);
  cu::Device dev(0);
  dev.make_current();
  cu::Stream stream;
  Spin spin = Spin::make();
  // Shapes: the cross product of --batch and --kv, or an explicit --shapes list.
  struct Shape {
    int B, L, hq, hkv, d;
  };
  std::vector<Shape> shapes;
  if (!shape_list.empty()) {
    for (size_t i = 0; i < shape_list.size();) {
      size_t j = shape_list.find(',', i);
      if (j == std::string::npos) j = shape_list.size();
      std::string t = shape_list.substr(i, j - i);
      for (auto& ch : t) if (ch == 'x') ch = ',';
      auto f = ints(t);
      if (f.size() < 4) throw Error("--shapes wants BxLxHqxHkv[xD], got " + shape_list.substr(i, j - i));
      shapes.push_back({f[0], f[1], f[2], f[3], f.size() > 4 ? f[4] : d});
      i = j + 1;
    }
  } else {
    for (int B : batches)
      for (int L : kvs) shapes.push_back({B, L, hq, hkv, d});
  }
  for (const Shape& sh : shapes) {
    {
      const int B = sh.B, L = sh.L, hq = sh.hq, hkv = sh.hkv, d = sh.d;
      AttentionArgs a;
      a.family = *parse_family(family);
      a.dtype = *parse_dtype(dtype);
      a.batch = B;
      a.q_len = op == "decode" ? q_len : L;
      a.kv_len = L;
      a.heads_q = hq;
      a.heads_kv = hkv;
      a.head_dim = d;
      const size_t q_bytes = size_t(B) * a.q_len * hq * d * 2, kv_bytes = size_t(B) * L * hkv * d * 2;
      const size_t set_bytes = 3 * q_bytes + 2 * kv_bytes;
      // Enough copies that one pass over them evicts the 60 MB L2 twice over.
      const int copies = int(std::clamp<size_t>((size_t(2) * dev.l2_bytes()) / set_bytes + 1, 1, 64));
      std::vector<cu::Buffer> bufs;
      for (int c = 0; c < copies; ++c)
        for (size_t n : {q_bytes, q_bytes, kv_bytes, kv_bytes, q_bytes}) {
          bufs.emplace_back(n);
          bufs.back().fill_bytes(0x3c);  // small finite values in bf16 and fp16
        }
      // Paged cache: the same bytes as page pools, a shuffled block table per copy set.
      cu::Buffer table;
      if (page > 0) {
        a.page_size = page;
        a.max_pages = (L + page - 1) / page;
        std::vector<int> t(size_t(B) * a.max_pages);
        for (size_t i = 0; i < t.size(); ++i) t[i] = int(i);
        std::mt19937 rng(7);
        if (shuffle_pages) std::shuffle(t.begin(), t.end(), rng);
        table = cu::Buffer(t.size() * sizeof(int));
        table.upload(t.data(), t.size() * sizeof(int));
        a.block_table = static_cast<const int*>(table.data());
        // The pool holds max_pages * page rows per batch: round the K/V buffers up.
        if (size_t(a.max_pages) * page != size_t(L)) throw Error("--page must divide every kv length");
      }
      auto args_of = [&](int c) {
        AttentionArgs x = a;
        x.q = bufs[5 * c].data();
        x.r = bufs[5 * c + 1].data();
        x.k = bufs[5 * c + 2].data();
        x.v = bufs[5 * c + 3].data();
        x.o = bufs[5 * c + 4].data();
        return x;
      };
      const std::string name = variant.empty() ? engine.variant_for(a) : variant;
      for (int i = 0; i < 10; ++i) engine.attention(args_of(i % copies), name, stream.handle());
      stream.synchronize();
      std::vector<float> ms;
      cu::Event e0, e1;
      for (int i = 0; i < reps; ++i) {
        if (spin_ns > 0) spin.run(stream.handle(), spin_ns);
        e0.record(stream.handle());
        engine.attention(args_of(i % copies), name, stream.handle());
        e1.record(stream.handle());
        ms.push_back(cu::elapsed_ms(e0, e1));
      }
      std::sort(ms.begin(), ms.end());
      const double med_us = 1e3 * ms[ms.size() / 2];
      // Bytes that must move: K and V once, q (and r) in, o out.
      const double bytes = double(kv_bytes) * 2 + double(q_bytes) * (has_probe(a.family) ? 3 : 2);
      const double vis = op == "decode" ? double(L) : double(L) * (L + 1) / 2 / L;  // keys per query
      const double flops = double(B) * hq * a.q_len * vis * d * (has_probe(a.family) ? 8 : 4);
      fmt::print(
          "{{\"op\":\"{}\",\"impl\":\"plx\",\"family\":\"{}\",\"dtype\":\"{}\",\"batch\":{},\"q_len\":{},\"kv_len\":{},"
          "\"heads_q\":{},\"heads_kv\":{},\"d\":{},\"variant\":\"{}\",\"splits\":{},\"median_us\":{:.2f},"
          "\"p10_us\":{:.2f},\"GBps\":{:.0f},\"TFLOPs\":{:.1f},\"page\":{},\"page_order\":\"{}\"}}\n",
          op, family, dtype, B, a.q_len, L, hq, hkv, d, name, engine.splits_for(a, name), med_us,
          1e3 * ms[ms.size() / 10], bytes / med_us / 1e3, flops / med_us / 1e6, page,
          page > 0 ? (shuffle_pages ? "shuffled" : "linear") : "none");
      std::fflush(stdout);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "plx-bench: %s\n", e.what());
  return 1;
}
