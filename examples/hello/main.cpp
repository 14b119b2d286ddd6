#include <parallax/parallax.hpp>
#include <cstdio>
int main() try {
  plx::Engine engine(0);  // device 0, its primary context
  plx::AttentionArgs a;   // Parallax, bf16, causal, q_len 1 (decode) by default
  a.batch = 8; a.kv_len = 8192; a.heads_q = 32; a.heads_kv = 8; a.head_dim = 128;
  std::printf("%s runs %s\n", engine.device_name().c_str(), engine.variant_for(a).c_str());
  return 0;  // next: set a.q, a.r, a.k, a.v, a.o (device pointers); engine.attention(a, stream)
} catch (const plx::Error& e) {
  std::fprintf(stderr, "hello: %s\n", e.what());
  return 1;
}
