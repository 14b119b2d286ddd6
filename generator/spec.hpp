// The spec language: one YAML file describes one kernel family (one op, lists of everything
// else). parse_spec/load_spec validate it completely and return a KernelSpec; expand()
// (generator/expand.hpp) turns that into the list of Variants.
//
//   name: decode-sm90            # optional, defaults to the file stem
//   op: decode                   # decode | prefill | backward (one op per spec)
//   variant: [parallax, softmax, parallax_uncentered]
//   dtype: [bf16, fp16]
//   head_dim: [64, 128]
//   gqa: [1, 2, 4, 8]            # group sizes served (tuning buckets, tests); not compiled in
//   causal: [true]
//   window: [-1, 256]            # -1 = none; widths >= 1 compile the window in
//   qk_scale: auto               # auto = 1/sqrt(head_dim), or a positive finite float (q.k only)
//   arch: [sm_90a]
//   tile:
//     block_m: [16]
//     block_n: {from: 32, to: 128, mul: 2}
//     warps: [4]
//     stages: {from: 2, to: 4}
//     split_kv: [auto, 1]        # decode only; prefill allows auto/1 (both mean 1)
//     mma: [sync]                # sync (default) | wgmma | wgmma-pipe | wgmma-pp |
//                                # wgmma-pipe-pp (Hopper warpgroup MMA, prefill on sm_90a
//                                # only; -pipe overlaps softmax and MMAs inside a warpgroup,
//                                # -pp takes turns between consumer warpgroups)
//     loader: [cp_async]         # cp_async (default) | tma: how a decode kernel fills its
//                                # K/V ring (tma: Hopper bulk tensor copies on mbarriers,
//                                # sm_90a decode only)
//
// Every list-valued key takes a scalar, a list, or a range map {from, to[, step | mul]}
// (lists may also contain ranges; `to` is a bound, {from: 16, to: 100, mul: 2} = 16 32 64).
// Required: op, variant, dtype, head_dim, arch. What the language accepts (legality.hpp
// then drops what no template builds, e.g. head_dim 256, warps 3, block_m 8 for softmax):
//   head_dim  multiple of 8 in 8..512        gqa      1..256
//   window    -1 or 1..16777216 (0 would mask every key)
//   qk_scale  auto or a finite float in 1e-6..1e6 (plain, not quoted)
//   block_m   multiple of 8 in 8..1024       block_n  multiple of 16 in 16..1024
//   warps     1..16                          stages   1..8
//   split_kv  auto or 1..1024 (decode); auto or 1 (prefill, backward)
// Also refused: unknown or repeated keys (everywhere, ranges included), repeated values,
// empty lists, quoted numbers/bools, explicit YAML tags, more than one YAML document, a
// range or list of more than 4096 values, more than 65536 compiled combinations.
// Every failure is a plx::SpecError whose what() is one line
// "FILE:LINE:COL: key 'tile.block_n': got '0', expected ..." (1-based line and column);
// a file that cannot be opened gives "PATH: cannot open the spec file: REASON".
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "generator/variant.hpp"

namespace plx {

// Language limits (what a spec may say; generator/legality.hpp decides what compiles).
inline constexpr int kSpecMaxRangeValues = 4096;     // one range may expand to at most this
inline constexpr long kSpecMaxCombinations = 65536;  // compiled axes' cross product per spec
inline constexpr size_t kSpecMaxBytes = 256 << 10;   // a spec larger than this is refused

struct TileAxes {
  std::vector<int> block_m;
  std::vector<int> block_n;
  std::vector<int> warps;
  std::vector<int> stages;
  std::vector<int> split_kv;  // 0 = auto (chosen at launch)
  std::vector<Mma> mma{Mma::sync};  // instruction family; wgmma*: prefill on sm_90a only
  std::vector<Loader> loader{Loader::cp_async};  // decode K/V ring filler; tma: sm_90a decode only
  bool operator==(const TileAxes&) const = default;
};

// One parsed, validated kernel family. Every list is non-empty, duplicate-free and in the
// order the spec wrote it (ranges in increasing order).
struct KernelSpec {
  std::string name;                 // `name:` or the stem of the file / display name
  std::string source;               // the file path or display name it was parsed from
  Op op = Op::decode;
  std::vector<Family> families;     // `variant:`
  std::vector<DType> dtypes;
  std::vector<int> head_dims;
  std::vector<int> gqa;             // GQA group sizes served (default [1]); not compiled in
  std::vector<bool> causal;         // default [true]
  std::vector<int> windows;         // -1 = no window, else width in keys (default [-1])
  std::optional<double> qk_scale;   // nullopt = auto
  std::vector<Arch> archs;
  TileAxes tile;

  // The q.k scale a kernel of this head_dim uses: qk_scale, or 1/sqrt(head_dim) for auto.
  double qk_scale_for(int head_dim) const;
  // The distinct compiled window flags, in spec order ([false] for [-1], [false, true] for
  // [-1, 256, 512], ...).
  std::vector<bool> window_flags() const;
  bool operator==(const KernelSpec&) const = default;
};

// Reads and parses a spec file; errors name the path (as given) as FILE.
KernelSpec load_spec(const std::filesystem::path& path);

// Parses spec text; errors use display_name as FILE, and the name defaults to its stem.
KernelSpec parse_spec(std::string_view text, std::string display_name);

}  // namespace plx
