// examples/decode's last step computed in-process by this build's plx::Engine, to check
// the installed example bit for bit: tests/test_install.cpp, and `plx-bench
// example-decode` for tools/bench/sessions/2026-11-29-example-gpu.sh. The inputs come
// from the example's own decode_inputs.hpp; the arguments are the ones decode.cpp sets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "examples/decode/decode_inputs.hpp"
#include "parallax/parallax.hpp"
#include "runtime/driver.hpp"

namespace plx::testing {

struct DecodeExampleOutput {
  std::vector<std::uint16_t> o;  // bf16 bits, [batch, 1, heads_q, head_dim]
  std::string variant;           // the variant that ran
  std::string chosen;            // what the engine picks itself for these arguments
};

// Every sequence live to `capacity` (the example's last step). `variant` empty: the
// engine's choice. The options' cache directory decides the tuning database, so pass the
// example's PLX_CACHE_DIR (or leave it empty with the same environment).
inline DecodeExampleOutput engine_decode_example(int batch, int capacity, const std::string& variant,
                                                 const EngineOptions& options = {}) {
  using namespace decode_example;
  Engine engine(0, options);
  const cu::Device device(0);
  const cu::CurrentContext ctx(device);  // the primary context, which the engine uses
  cu::Buffer in[4];                      // indexed by Input
  make_inputs(batch, capacity, [&](Input i, const std::vector<std::uint16_t>& bits) {
    in[int(i)] = cu::Buffer(bits.size() * 2);
    in[int(i)].upload(bits.data(), bits.size() * 2);
  });
  const std::size_t n = elements(Input::q, batch, capacity);
  cu::Buffer o(n * 2), live(batch * sizeof(int));
  o.fill_bytes(0xff);  // NaN: a kernel that wrote nothing cannot match the example
  const std::vector<int> lens(batch, capacity);
  live.upload(lens.data(), lens.size() * sizeof(int));

  AttentionArgs a;  // as examples/decode/decode.cpp sets them
  a.family = Family::parallax;
  a.dtype = DType::bf16;
  a.batch = batch, a.q_len = 1, a.kv_len = capacity;
  a.heads_q = heads_q, a.heads_kv = heads_kv, a.head_dim = head_dim;
  a.causal = true;
  a.q = in[int(Input::q)].data(), a.r = in[int(Input::r)].data();
  a.k = in[int(Input::k)].data(), a.v = in[int(Input::v)].data(), a.o = o.data();
  a.seqused_k = static_cast<const int*>(live.data());

  DecodeExampleOutput out;
  out.chosen = engine.variant_for(a);
  out.variant = variant.empty() ? out.chosen : variant;
  const cu::Stream stream;
  engine.attention(a, out.variant, stream.handle());
  stream.synchronize();
  out.o.resize(n);
  o.download(out.o.data(), n * 2);
  return out;
}

}  // namespace plx::testing
