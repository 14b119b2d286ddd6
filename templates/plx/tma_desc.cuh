// The tensor maps a TMA decode kernel takes as its second parameter (templates/plx/
// kv_tma.cuh). Shared verbatim by the host (runtime/tma.cpp encodes them with the driver's
// cuTensorMapEncodeTiled) and the device, like params.cuh: plain C types only.
//
// A CUtensorMap is 128 opaque bytes, 64-byte aligned (128 in CUDA 13's cuda.h; we take
// the larger, which satisfies both the driver and the copy instruction). The kernel takes them as a
// `const __grid_constant__` parameter: the copy instructions read a map through its
// generic address, so it must stay in the parameter space, never copied to local memory.
#pragma once

namespace plx {

struct alignas(128) TmaDesc {
  unsigned long long opaque[16];
};

// K and V of one call, each over the whole cache:
//   contiguous  4-D {head_dim, heads_kv, kv_len, batch}, box {64, 1, block_n, 1}
//   paged       3-D {head_dim, heads_kv, page slots}, box {64, 1, min(page, block_n)}
// with a 128-byte swizzle (one 64-column panel of a tile per box; head_dim 128 takes two).
struct KvTmaDescs {
  TmaDesc k, v;
};

}  // namespace plx
