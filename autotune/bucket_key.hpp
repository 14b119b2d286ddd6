// Which tuning-database bucket a call falls in (issue 6, point 3). A bucket groups the
// calls one winner serves well: the kernel class (op, family, dtype, head dim, mask) and
// the shape coarsened so that a tuned point covers its neighbours:
//   decode : batch x heads_kv and kv length rounded UP to powers of two, the GQA group
//            and q_len (1..16) exact -- the group and q_len decide the CTA's rows; a paged
//            cache's page size exact;
//   prefill: q_len (tokens per sequence) and kv length rounded up to powers of two,
//            batch x heads_kv likewise, the GQA group exact;
//   backward: as prefill, with op "backward" (bucket_of_backward): a training call's
//            gradients, keyed apart so a forward and a backward winner of the same shape
//            never collide in the database.
// Rounding up (not to nearest) keeps the key monotone: a call never lands in a bucket of
// a smaller problem than itself, whose winner may leave the GPU idle on the bigger one.
// Pure functions, no GPU; the string is the database's key, so changing it means
// bumping the database schema (autotune/tuning_db.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "generator/variant.hpp"
#include "parallax/parallax.hpp"

namespace plx::tune {

// The smallest power of two >= n (n <= 1 -> 1).
//   1 -> 1, 3 -> 4, 1000 -> 1024, 1024 -> 1024, 1025 -> 2048, 5000 -> 8192
constexpr std::int64_t pow2_ceil(std::int64_t n) {
  std::int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// A bucket as plain fields: the engine caches its per-bucket choice under this (hashing a
// few ints is cheaper than formatting the string on every call).
struct BucketId {
  Op op = Op::decode;
  Family family = Family::parallax;
  DType dtype = DType::bf16;
  int head_dim = 128;
  bool causal = true;
  bool window = false;
  std::int64_t bh = 1;  // pow2_ceil(batch x heads_kv)
  std::int64_t kv = 1;  // pow2_ceil(kv_len)
  int group = 1;        // heads_q / heads_kv
  int q = 1;            // decode: q_len; prefill: pow2_ceil(q_len)
  int page = 0;         // paged K/V cache: its page size; 0: contiguous
  bool operator==(const BucketId&) const = default;

  // Stable, filename- and JSON-friendly text, e.g.
  //   decode  batch 4, heads 32/8, kv 5000, q 1  -> "decode_parallax_bf16_d128_causal_bh32_kv8192_g4_q1"
  //   prefill batch 1, heads 32/8, q = kv 3000   -> "prefill_parallax_bf16_d128_causal_bh8_kv4096_g4_q4096"
  //   backward batch 1, heads 16/8, q = kv 16384 -> "backward_parallax_bf16_d128_causal_bh8_kv16384_g2_q16384"
  //   a sliding window adds "_window" after the mask (its width is not part of the key)
  //   a paged cache adds "_page<size>" at the end: a winner timed on a contiguous cache
  //   does not serve a paged one (the TMA ring wins some paged shapes, cp.async every
  //   contiguous one), and contiguous keys stay as they were, so no database loses its
  //   entries
  std::string key() const;
};

struct BucketIdHash {
  std::size_t operator()(const BucketId& b) const noexcept;
};

// The bucket of (validated) arguments. Live lengths (seqused_k) live on the device, so
// the host buckets by kv_len, the longest a call may read.
BucketId bucket_of(const AttentionArgs& a);
inline std::string bucket_key(const AttentionArgs& a) { return bucket_of(a).key(); }

// The bucket of a backward call (Engine::attention_backward) on the forward arguments `a`:
// the prefill rounding whatever q_len is (the backward has no decode form), op backward.
BucketId bucket_of_backward(const AttentionArgs& a);

}  // namespace plx::tune
