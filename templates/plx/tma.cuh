// Hopper's tensor memory accelerator (sm_90a): bulk tensor copies global -> shared that
// complete on an mbarrier, and the mbarrier side of them. One thread issues a copy of a
// whole box; the hardware walks the tensor map, zero-fills what lies outside the tensor,
// applies the map's shared-memory swizzle and adds the bytes it wrote to the barrier's
// transaction count. A phase of a barrier armed with expect_tx completes once its
// arrivals are in *and* that many bytes have landed.
#pragma once
#include "plx/mbarrier.cuh"
#include "plx/tma_desc.cuh"

namespace plx::sm90 {

// Arrives once on `bar` and raises the bytes its current phase waits for by `bytes`.
__device__ __forceinline__ void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}

// Pulls a tensor map into the TMA unit's descriptor cache ahead of its first use.
__device__ __forceinline__ void tma_prefetch_desc(const TmaDesc* d) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(d)) : "memory");
}

// Box at coordinates (c0 innermost, ...) of the map into shared memory at dst (1024-byte
// aligned for the 128-byte swizzle), completing on bar.
__device__ __forceinline__ void tma_load_3d(unsigned dst, const TmaDesc* d, unsigned bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<unsigned long long>(d)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
__device__ __forceinline__ void tma_load_4d(unsigned dst, const TmaDesc* d, unsigned bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, "
      "%6}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<unsigned long long>(d)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

}  // namespace plx::sm90
