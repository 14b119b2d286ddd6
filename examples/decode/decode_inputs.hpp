// The decode example's problem: its shape and its inputs, generated on the host from one
// fixed seed. Kept apart from decode.cpp so tests/test_install.cpp can recreate the same
// inputs bit for bit and check the example's --dump against plx::Engine.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace decode_example {

constexpr int heads_q = 32, heads_kv = 8, head_dim = 128;  // a Llama-3-8B-like layer
constexpr unsigned seed = 1234;

// float -> bf16 bits, rounding to nearest even (the inputs are finite).
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

inline float from_bf16(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

enum class Input { k, v, q, r };

// Elements of one input: k, v are the KV cache [batch, capacity, heads_kv, head_dim];
// q, r are one token's queries and probes [batch, 1, heads_q, head_dim].
inline std::size_t elements(Input in, int batch, int capacity) {
  return in == Input::k || in == Input::v ? std::size_t(batch) * capacity * heads_kv * head_dim
                            : std::size_t(batch) * heads_q * head_dim;
}

// Calls put(input, bf16 bits) for k, v, q and r in that order, with values uniform in
// [-1, 1) from one generator seeded with `seed`, so every run gets the same inputs. Only
// one input is held on the host at a time.
template <class Put>
void make_inputs(int batch, int capacity, Put&& put) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (Input in : {Input::k, Input::v, Input::q, Input::r}) {
    std::vector<std::uint16_t> bits(elements(in, batch, capacity));
    for (auto& x : bits) x = to_bf16(dist(rng));
    put(in, bits);
  }
}

}  // namespace decode_example
