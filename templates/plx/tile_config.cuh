// The compile-time description of one kernel, shared by decode and prefill: what the
// generator's Variant says, as template constants (generator/render.cpp writes it out).
#pragma once
#include "plx/kv_ring.cuh"
#include "plx/online_state.cuh"

namespace plx {

template <Family F, class T, int D, int BM, int BN, int WARPS, int STAGES, bool CAUSAL, bool WINDOW>
struct TileConfig {
  using Elem = T;
  using Traits = FamilyTraits<F>;
  static constexpr Family kFamily = F;
  static constexpr int kD = D, kBM = BM, kBN = BN, kWarps = WARPS, kStages = STAGES;
  static constexpr bool kCausal = CAUSAL, kWindow = WINDOW;
  static constexpr int kThreads = WARPS * 32;
  static constexpr int kMTiles = BM / Traits::rows_per_tile;  // m16 tiles of the CTA's rows
  static_assert(BM % Traits::rows_per_tile == 0, "see generator/legality.cpp");
  // Q (and R) tiles sit at the start of shared memory, the K/V ring after them.
  static constexpr int kQBytes = kMTiles * 16 * D * 2;
  static constexpr int kRingBytes = KvRing<D, BN, STAGES>::kBytes;
};

}  // namespace plx
