// Host side of the TMA decode kernels (templates/plx/kv_tma.cuh): the tensor maps of K and
// V for one call. A map encodes the cache's base pointer and shape, so it is built per
// call in the launch path: a few hundred nanoseconds of host work, no allocation and no
// synchronisation, so CUDA graph capture still works (the maps travel by value in the
// kernel's parameters, and a captured graph replays them).
#pragma once
#include <cstdint>

#include "generator/variant.hpp"
#include "plx/params.cuh"
#include "plx/tma_desc.cuh"

namespace plx {

// What cuTensorMapEncodeTiled is given for K (V: the same with its own base pointer).
// Dimensions run innermost first; every stride is the previous one times its dimension
// (the cache layouts are dense), in bytes.
//   contiguous [batch, kv_len, heads_kv, d]  rank 4: {d, heads_kv, kv_len, batch},
//                                            box {64, 1, block_n, 1}
//   paged pool [pages, page, heads_kv, d]    rank 3: {d, heads_kv, slots}, where slot =
//                                            page number x page size + offset; box
//                                            {64, 1, min(page, block_n)}
// The pool's page count is not an argument, so `slots` is the int32 coordinate limit: the
// kernel only asks for pages the block table names. Keys past kv_len in a contiguous
// cache are outside the map: the TMA zero-fills them.
struct TmaMapShape {
  int rank = 0;
  std::uint64_t dims[5]{};
  std::uint64_t strides[4]{};  // bytes, of dims 1 .. rank-1
  std::uint32_t box[5]{};
};
inline constexpr std::uint64_t kTmaPagedSlots = 0x7fffffffu;

// Pure (no driver): for tests and error messages. p is a plan_launch result.
TmaMapShape decode_kv_map_shape(const Variant& v, const AttnParams& p);

// The maps of a launch of TMA decode variant v. Throws UnsupportedError when the driver
// has no cuTensorMapEncodeTiled (CUDA 12.0+), DriverError when it refuses a map.
KvTmaDescs encode_decode_maps(const Variant& v, const AttnParams& p);

// The parameter array cuLaunchKernel takes for a forward kernel of variant v: &p, and for
// a TMA decode variant its K/V tensor maps (encoded from p) as the second parameter.
// Holds the maps the array points at, so it is neither copied nor moved.
struct ForwardLaunchArgs {
  KvTmaDescs maps{};
  void* ptrs[2];
  ForwardLaunchArgs(const Variant& v, AttnParams& p);
  ForwardLaunchArgs(const ForwardLaunchArgs&) = delete;
  ForwardLaunchArgs& operator=(const ForwardLaunchArgs&) = delete;
};

}  // namespace plx
