// A Variant is one fully specified kernel: everything that changes the generated code.
// Its name encodes the whole config and parses back (parse_variant_name), so a name
// printed by `plx gen`, `plx tune` or an error message can be pasted back as a flag.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "parallax/types.hpp"

namespace plx {

// backward: the gradients of a prefill-shaped call (one kernel holding both the dQ/dR and
// the dK/dV CTAs, templates/plx/backward.cuh; plus its per-row preprocess kernel).
enum class Op { decode, prefill, backward };
enum class Arch { sm80, sm90a };
// Tensor-core instruction family of a kernel: mma.sync (sm_80 and up, templates/plx/prefill.cuh
// and decode.cuh) or Hopper's warpgroup wgmma.mma_async (sm_90a only, prefill_sm90.cuh),
// one K/V tile at a time (wgmma) or with the softmax of a tile overlapping the MMAs of its
// neighbours (wgmma_pipe, named "wgmma-pipe"). The -pp forms add ping-pong scheduling: the
// consumer warpgroups take turns issuing their MMAs, so one's softmax runs while another's
// MMAs hold the tensor cores (needs two or more consumers).
// wgmma_red (backward only): one dK/dV pass that also reduces dQ/dR into an fp32
// workspace (backward_sm90.cuh, "Reduced dQ/dR"), instead of separate dQ/dR CTAs.
enum class Mma { sync, wgmma, wgmma_pipe, wgmma_pp, wgmma_pipe_pp, wgmma_red };
constexpr bool is_wgmma(Mma m) { return m != Mma::sync; }
constexpr bool is_pipelined(Mma m) { return m == Mma::wgmma_pipe || m == Mma::wgmma_pipe_pp; }
constexpr bool is_pingpong(Mma m) { return m == Mma::wgmma_pp || m == Mma::wgmma_pipe_pp; }
// How a decode kernel fills its K/V ring: cp.async 16-byte chunks issued by every thread
// (sm_80 and up, the default), or Hopper's tensor memory accelerator: one elected thread
// issues cp.async.bulk.tensor boxes (a tile, or one page chunk of it) that complete on
// mbarriers (sm_90a decode only; templates/plx/kv_tma.cuh, the named field "tma").
enum class Loader { cp_async, tma };

std::string_view to_string(Op);
std::string_view to_string(Family);
std::string_view to_string(DType);
std::string_view to_string(Arch);          // "sm_80", "sm_90a" (NVRTC spelling)
std::string_view to_string(Mma);           // "sync", "wgmma", "wgmma-pipe", "wgmma-pp", "wgmma-pipe-pp", "wgmma-red"
std::string_view to_string(Loader);        // "cp_async", "tma"
std::optional<Op> parse_op(std::string_view);
std::optional<Family> parse_family(std::string_view);
std::optional<DType> parse_dtype(std::string_view);
std::optional<Arch> parse_arch(std::string_view);  // accepts sm_80 / sm80 / sm_90a / sm90a
std::optional<Mma> parse_mma(std::string_view);    // to_string's names ("_" for "-" accepted)
std::optional<Loader> parse_loader(std::string_view);  // "cp_async" / "cp-async", "tma"

// Does this family carry the probe r (second MMA row set, O2 accumulator)?
constexpr bool has_probe(Family f) { return f != Family::softmax; }

// Tile axes. Their meaning depends on the op:
//   decode : one CTA owns (batch, kv head, split, row block); block_m logical rows
//            (q heads of the GQA group x new tokens) share each K/V tile; the warps
//            split the block_n keys of a tile among themselves.
//   prefill: one CTA owns block_m query rows of one q head; the warps split the rows;
//            every warp reads every key of the K/V tile.
//   backward: one CTA owns block_m rows (queries for dQ/dR, keys for dK/dV), 16 per warp,
//            and streams tiles of block_n partners (keys, resp. queries of the group).
//   prefill, mma wgmma*: warps = 4 x (consumer warpgroups + 1 producer warpgroup); each
//            consumer warpgroup owns 32 queries (+ their 32 probes) or 64 softmax queries.
struct Tile {
  int block_m = 16;   // logical (query) rows per CTA
  int block_n = 64;   // keys per K/V tile (one pipeline stage)
  int warps = 4;
  int stages = 2;     // K/V tiles in flight (cp.async ring depth)
  int split_kv = 0;   // decode: 0 = chosen at launch from the live length, else fixed count
  Mma mma = Mma::sync;
  Loader loader = Loader::cp_async;  // decode K/V ring filler; tma: sm_90a decode only
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

  // e.g. plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s2_kauto_sm90a; a wgmma kernel
  // carries one more field before the arch: plx_prefill_parallax_bf16_d128_causal_m64_n128
  // _w12_s2_k1_wgmma_sm90a (mma.sync names are unchanged, so existing names stay valid).
  // A TMA decode kernel likewise carries "tma" before the arch:
  // plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_kauto_tma_sm90a.
  std::string name() const;
};

std::optional<Variant> parse_variant_name(std::string_view name);

}  // namespace plx
