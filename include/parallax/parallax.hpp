// parallax-jit's C++ entry point: plx::Engine runs Parallax-family attention on the
// caller's CUDA stream, compiling (or loading from the on-disk cache) a kernel specialised
// for the problem on first use.
//
//   plx::Engine engine(0);                      // device 0, its primary context
//   plx::AttentionArgs a;
//   a.family = plx::Family::parallax; a.dtype = plx::DType::bf16;
//   a.batch = 4; a.q_len = 1; a.kv_len = 8192; a.heads_q = 32; a.heads_kv = 8; a.head_dim = 128;
//   a.q = q; a.r = r; a.k = k; a.v = v; a.o = o;  // device pointers, [batch, len, heads, dim]
//   engine.attention(a, stream);                // asynchronous, never synchronises `stream`
//
// Every failure is a plx::Error (parallax/errors.hpp) thrown before anything is launched.
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "parallax/errors.hpp"
#include "parallax/types.hpp"

namespace plx {

struct AttentionArgs {
  Family family = Family::parallax;
  DType dtype = DType::bf16;
  int batch = 1, q_len = 1, kv_len = 1, heads_q = 1, heads_kv = 1, head_dim = 128;
  bool causal = true;    // mask aligned to the end of the KV sequence
  int window_left = -1;  // -1: none; W >= 1: query i sees keys i'-W+1 .. i'
  float qk_scale = 0.f;  // 0: 1/sqrt(head_dim); scales q.k only, never r.k
  // Device pointers, contiguous [batch, len, heads, head_dim], 16-byte aligned.
  // r is ignored (may be null) for Family::softmax.
  const void* q = nullptr;
  const void* r = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;               // [batch, q_len, heads_q, head_dim]
  const int* seqused_k = nullptr;  // optional device int32[batch]: live KV length per batch
  // Optional paged KV cache (the layout serving engines use): k and v are page pools
  // [num_pages, page_size, heads_kv, head_dim]; key j of batch b is in page
  // block_table[b * max_pages + j / page_size]. page_size: a power of two in 16..256;
  // kv_len <= max_pages * page_size (live lengths via seqused_k).
  const int* block_table = nullptr;  // device int32[batch, max_pages]
  int page_size = 0;
  int max_pages = 0;
  // Training: the forward also writes what attention_backward needs. Setting stats makes
  // the call run a prefill kernel whatever q_len is (decode kernels do not write them).
  //   stats: device fp32 [batch, heads_q, q_len, 4], 16-byte aligned: per row m, d1,
  //          d2/d1, lse (natural log; a row that sees no key gets 0, 0, 0, +inf)
  //   barv : Family::parallax only, required with stats: [batch, q_len, heads_q, head_dim]
  //          like o, the softmax mean of v (sum_j p_j v_j) that the Parallax backward reads
  float* stats = nullptr;
  void* barv = nullptr;
  // Variable-length packed batch (prefill; both or neither): device int32[batch + 1]
  // prefix sums of the sequence lengths. q, r, o (and barv) are then [total_q, heads_q,
  // head_dim] with sequence b in rows cu_seqlens_q[b] .. cu_seqlens_q[b + 1] - 1; k, v are
  // [total_k, heads_kv, head_dim] likewise. q_len / kv_len give the longest sequence
  // (they size the grid and choose the kernel); a sequence may be empty. The causal
  // diagonal aligns with the end of each sequence's keys, as for a padded batch;
  // seqused_k still clamps; stats keep the [batch, heads_q, q_len, 4] layout (rows past a
  // sequence's end unwritten). Not with a paged cache. attention_backward takes the same
  // layout: dout, o, barv, dq, dr packed like q, dk and dv like k (every stored key of a
  // sequence written, zero where no query sees it).
  const int* cu_seqlens_q = nullptr;
  const int* cu_seqlens_k = nullptr;
};

// The gradients of one attention call (Engine::attention_backward). Device pointers,
// 16-byte aligned, laid out like the tensor they are the gradient of.
struct BackwardArgs {
  const void* dout = nullptr;   // dL/do, like o
  const void* o = nullptr;      // the forward's output
  const float* stats = nullptr; // the forward's AttentionArgs::stats
  const void* barv = nullptr;   // the forward's AttentionArgs::barv (Family::parallax only)
  void* dq = nullptr;           // like q
  void* dr = nullptr;           // like r (the probe families only; ignored for softmax)
  void* dk = nullptr;           // like k: summed over the q heads of each GQA group
  void* dv = nullptr;           // like v: summed over the q heads of each GQA group
};

struct EngineOptions {
  std::filesystem::path cache_dir;  // empty: PLX_CACHE_DIR, else ~/.cache/parallax-jit
  bool disk_cache = true;           // false: compile into memory only
};

class Engine {
 public:
  explicit Engine(int device_ordinal = 0, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Decode kernel for q_len <= 16, prefill kernel otherwise: the winner `plx tune`
  // measured for the call's bucket on this GPU (tuning database in the cache directory),
  // else the model's choice at once (nothing is tuned inside the call). With the
  // environment variable PLX_TUNE=sync, the first call of an untuned bucket tunes it (a few
  // candidates, ~0.3 s of timing plus any compiles, not during graph capture) and records
  // the winner in the tuning database.
  void attention(const AttentionArgs& a, void* cuda_stream);
  // Runs a named variant (as printed by `plx gen`/`plx tune`); throws UnsupportedError
  // when it does not fit the arguments (other family, dtype, head_dim, mask, arch).
  void attention(const AttentionArgs& a, const std::string& variant_name, void* cuda_stream);

  // Gradients of a forward call `fwd` (the same arguments, whose stats/barv it wrote) for
  // the output gradient g.dout: writes g.dq, g.dr, g.dk, g.dv in full (every element,
  // zeros where nothing flows). Two launches on the stream (per-row terms, then one
  // kernel whose CTAs do dQ/dR over query tiles or dK/dV over key tiles, no atomics);
  // a per-stream workspace of batch x heads_q x q_len x 16 bytes. Paged K/V is refused.
  void attention_backward(const AttentionArgs& fwd, const BackwardArgs& g, void* cuda_stream);
  // The same with a named backward variant (plx_backward_..., see specs/backward_*.yaml).
  void attention_backward(const AttentionArgs& fwd, const BackwardArgs& g, const std::string& variant_name,
                          void* cuda_stream);
  // The backward variant attention_backward(fwd, g, stream) would run.
  std::string backward_variant_for(const AttentionArgs& fwd) const;

  // The variant attention(a, stream) would run (tuned winner or model's choice), e.g.
  // "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s2_kauto_sm90a". Validates `a`.
  std::string variant_for(const AttentionArgs& a) const;
  // KV splits the decode kernel would use for `a` under `variant_name` (1 for prefill).
  int splits_for(const AttentionArgs& a, const std::string& variant_name) const;
  // Compiles or loads a variant now (e.g. at start-up), so the first call does not pay.
  void prepare(const std::string& variant_name);

  std::string device_name() const;
  std::string arch() const;  // "sm_90a"
  int sm_count() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace plx
