// A Variant is one fully specified kernel: everything that changes the generated code.
// Its name encodes the whole config and parses back (parse_variant_name), so a name
// printed by `plx gen`, `plx tune` or an error message can be pasted back as a flag.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "parallax/types.hpp"

namespace plx {

enum class Op { decode, prefill };
enum class Arch { sm80, sm90a };

std::string_view to_string(Op);
std::string_view to_string(Family);
std::string_view to_string(DType);
std::string_view to_string(Arch);          // "sm_80", "sm_90a" (NVRTC spelling)
std::optional<Op> parse_op(std::string_view);
std::optional<Family> parse_family(std::string_view);
std::optional<DType> parse_dtype(std::string_view);
std::optional<Arch> parse_arch(std::string_view);  // accepts sm_80 / sm80 / sm_90a / sm90a

// Does this family carry the probe r (second MMA row set, O2 accumulator)?
constexpr bool has_probe(Family f) { return f != Family::softmax; }

// Tile axes. Their meaning depends on the op:
//   decode : one CTA owns (batch, kv head, split, row block); block_m logical rows
//            (q heads of the GQA group x new tokens) share each K/V tile; the warps
//            split the block_n keys of a tile among themselves.
//   prefill: one CTA owns block_m query rows of one q head; the warps split the rows;
//            every warp reads every key of the K/V tile.
struct Tile {
  int block_m = 16;   // logical (query) rows per CTA
  int block_n = 64;   // keys per K/V tile (one pipeline stage)
  int warps = 4;
  int stages = 2;     // K/V tiles in flight (cp.async ring depth)
  int split_kv = 0;   // decode: 0 = chosen at launch from the live length, else fixed count
  bool operator==(const Tile&) const = default;
};

struct Variant {
  Op op = Op::decode;
  Family family = Family::parallax;
  DType dtype = DType::bf16;
  int head_dim = 128;
  bool causal = true;       // mask aligned to the end of the KV sequence
  bool window = false;      // sliding window compiled in (its width is a launch argument)
  Tile tile;
  Arch arch = Arch::sm90a;
  bool operator==(const Variant&) const = default;

  // e.g. plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_sm90a
  std::string name() const;
};

std::optional<Variant> parse_variant_name(std::string_view name);

}  // namespace plx
