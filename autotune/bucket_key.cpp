#include "autotune/bucket_key.hpp"

#include <fmt/format.h>

#include "autotune/heuristics.hpp"

namespace plx::tune {

std::string BucketId::key() const {
  return fmt::format("{}_{}_{}_d{}_{}{}_bh{}_kv{}_g{}_q{}{}", to_string(op), to_string(family), to_string(dtype),
                     head_dim, causal ? "causal" : "full", window ? "_window" : "", bh, kv, group, q,
                     page > 0 ? fmt::format("_page{}", page) : std::string());
}

std::size_t BucketIdHash::operator()(const BucketId& b) const noexcept {
  // FNV-1a over the fields: a handful of multiplies, no allocation.
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::uint64_t x) { h = (h ^ x) * 1099511628211ull; };
  mix(std::uint64_t(b.op) | std::uint64_t(b.family) << 4 | std::uint64_t(b.dtype) << 8 |
      std::uint64_t(b.causal) << 12 | std::uint64_t(b.window) << 13);
  mix(std::uint64_t(b.head_dim));
  mix(std::uint64_t(b.bh));
  mix(std::uint64_t(b.kv));
  mix(std::uint64_t(b.group));
  mix(std::uint64_t(b.q));
  mix(std::uint64_t(b.page));
  return std::size_t(h);
}

BucketId bucket_of(const AttentionArgs& a) {
  BucketId b;
  b.op = heuristics::choose_op(a.q_len);
  b.family = a.family;
  b.dtype = a.dtype;
  b.head_dim = a.head_dim;
  b.causal = a.causal;
  b.window = a.window_left >= 0;
  b.bh = pow2_ceil(std::int64_t(a.batch) * a.heads_kv);
  b.kv = pow2_ceil(a.kv_len);
  b.group = a.heads_kv > 0 ? a.heads_q / a.heads_kv : 1;
  b.q = b.op == Op::decode ? a.q_len : int(pow2_ceil(a.q_len));
  b.page = a.block_table ? a.page_size : 0;
  return b;
}

BucketId bucket_of_backward(const AttentionArgs& a) {
  BucketId b = bucket_of(a);
  b.op = Op::backward;
  b.q = int(pow2_ceil(a.q_len));
  return b;
}

}  // namespace plx::tune
