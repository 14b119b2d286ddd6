// The K/V ring: STAGES slots of (K tile, V tile), filled with cp.async while the warps
// work on an older slot. One commit group per tile, so wait_group<STAGES-2> at the top of
// iteration i means tile i has landed; the barrier after it also means every warp is done
// with slot (i-1) % STAGES, which is exactly the slot the next load overwrites.
#pragma once
#include "plx/smem_tile.cuh"

namespace plx {

// The ring's schedule over slots laid out by the caller (KvRing below; the backward's own
// layouts): load(i, slot) issues tile i's copies, compute(i, slot) consumes it. Groups
// committed before the call (e.g. resident tiles) complete by the first wait; the ring's
// memory may be reused after the call.
template <int STAGES, class Load, class Compute>
__device__ __forceinline__ void cp_async_ring(int n, Load load, Compute compute) {
  if constexpr (STAGES == 1) {
    for (int i = 0; i < n; ++i) {
      load(i, 0);
      cp_async_commit();
      cp_async_wait<0>();
      __syncthreads();
      compute(i, 0);
      __syncthreads();
    }
  } else {
#pragma unroll
    for (int i = 0; i < STAGES - 1; ++i) {
      if (i < n) load(i, i);
      cp_async_commit();
    }
    for (int i = 0; i < n; ++i) {
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      const int next = i + STAGES - 1;
      if (next < n) load(next, next % STAGES);
      cp_async_commit();
      compute(i, i % STAGES);
    }
  }
  cp_async_wait<0>();
  __syncthreads();
}

template <int D, int BN, int STAGES>
struct KvRing {
  static constexpr int kTileBytes = BN * D * 2;
  static constexpr int kBytes = STAGES * 2 * kTileBytes;
  unsigned base;

  __device__ __forceinline__ SmemTile<D> k(int slot) const { return {base + unsigned(slot * 2 * kTileBytes)}; }
  __device__ __forceinline__ SmemTile<D> v(int slot) const {
    return {base + unsigned((slot * 2 + 1) * kTileBytes)};
  }

  // load(i, slot) issues the copies of tile i; compute(i, slot) consumes it.
  template <class Load, class Compute>
  __device__ __forceinline__ void run(int n, Load load, Compute compute) const {
    cp_async_ring<STAGES>(n, load, compute);
  }
};

}  // namespace plx
