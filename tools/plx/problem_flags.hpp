// The problem-shape flags `plx bench` and `plx explore` share, and that `plx tune` prints
// per bucket (tune::Bucket::flags), so a printed line can be pasted back:
//   --op decode|prefill --family F --dtype bf16|fp16 --head-dim D (or --d D) --mask causal|full
//   --window W --batch B[,B..] --q-len Q[,Q..] --kv-len L[,L..] --heads-q H --heads-kv K
//   --page-size P
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "args.hpp"
#include "generator/variant.hpp"
#include "parallax/parallax.hpp"

namespace plx::cli {

// The options above, for a command's parse() list.
std::vector<Option> problem_options();

struct ProblemFlags {
  std::optional<Op> op;
  std::optional<Family> family;
  std::optional<DType> dtype;
  std::optional<int> head_dim, window, heads_q, heads_kv, page_size;
  std::optional<bool> causal;
  std::vector<int> batch, q_len, kv_len;  // empty: not given
  // Any of batch, q-len, kv-len, heads given (explore: a shape, not the spec's buckets).
  bool any_shape() const;
  // Whether a kernel class (family, dtype, head dim, mask, window) matches the given flags.
  bool matches(Family f, DType dt, int d, bool is_causal, bool has_window) const;
  // Every combination of the lists for `op`, with defaults for what is not given:
  // parallax bf16 d128 causal, batch 1, heads 32/8, kv 4096, q 1 (decode) or kv (prefill).
  std::vector<AttentionArgs> expand(Op op) const;
};

// UsageError naming the flag for a value that does not parse.
ProblemFlags parse_problem(const Args& a, const std::string& command);

// Pasteable flags of one call, e.g. "--family parallax --dtype bf16 --head-dim 128
// --mask causal --batch 1 --q-len 1 --kv-len 4096 --heads-q 32 --heads-kv 8".
std::string problem_flags(const AttentionArgs& a);

}  // namespace plx::cli
