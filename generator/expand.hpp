// KernelSpec -> the Variants it names. The cross product of every compiled axis, with the
// illegal combinations set aside (with the reason from why_illegal) and duplicates removed.
#pragma once
#include <string>
#include <vector>

#include "generator/spec.hpp"
#include "generator/variant.hpp"

namespace plx {

struct Dropped {
  Variant v;
  std::string reason;  // one line, from why_illegal()
};

struct ExpandResult {
  std::vector<Variant> variants;  // legal, unique, in a deterministic order (see expand)
  std::vector<Dropped> dropped;   // illegal, unique, same order
};

// Order: nested loops over family, dtype, head_dim, causal, window, block_m, block_n,
// warps, stages, split_kv, mma, arch (outermost first), each axis in the spec's order; the
// first occurrence of a variant keeps its place. Prefill's and backward's split_kv auto (0) becomes 1
// before dedupe, so names are canonical. The same spec always gives the same result.
ExpandResult expand(const KernelSpec& spec);

}  // namespace plx
