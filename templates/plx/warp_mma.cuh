// The two matrix products of one warp on one K/V tile: S = [Q;R] K^T over NK keys, and
// O += P V with P taken straight from the S registers (the C layout of S is the A layout
// of P, so scores never touch shared memory).
#pragma once
#include "plx/smem_tile.cuh"

namespace plx {

// S[mt] = Qtile(mt) * K(keys k0 .. k0+NK)^T for MT m-tiles. q(mt) is the 16-row tile
// holding the m-tile's rows; kt the K tile of the stage: any tile type with chunk(row, c)
// (SmemTile of the cp.async ring, sm90::Sw128Tile of the TMA ring).
template <class T, int MT, int NK, int D, class QTileOf, class KTile>
__device__ __forceinline__ void scores(float (&s)[MT][NK / 8][4], QTileOf q, KTile kt, int k0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int n = 0; n < NK / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
  // ldmatrix lane -> (row, chunk): A tiles walk rows 0..15 then the upper k half; K tiles
  // walk 8 keys x (lower, upper k half) then the next 8 keys (see mma.cuh for layouts).
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_hi = lane >> 4;
  const int b_key = (lane & 7) + (lane >> 4) * 8, b_hi = (lane >> 3) & 1;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    unsigned a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(a[mt], q(mt).chunk(a_row, 2 * kk + a_hi));
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      unsigned b[4];
      ldmatrix_x4(b, kt.chunk(k0 + np * 16 + b_key, 2 * kk + b_hi));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_16816<T>(s[mt][2 * np], a[mt], b[0], b[1]);
        mma_16816<T>(s[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// O[mt] += P[mt] * V(keys k0 .. k0+NK), P in the C layout left by OnlineState::update.
template <class T, int MT, int NK, int D, class VTile>
__device__ __forceinline__ void accumulate_pv(float (&o)[MT][D / 8][4], const float (&p)[MT][NK / 8][4],
                                              VTile vt, int k0) {
  const int lane = threadIdx.x & 31;
  const int v_key = (lane & 7) + ((lane >> 3) & 1) * 8, v_hi = lane >> 4;
#pragma unroll
  for (int ks = 0; ks < NK / 16; ++ks) {
    unsigned a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      a[mt][0] = pack2<T>(p[mt][2 * ks][0], p[mt][2 * ks][1]);
      a[mt][1] = pack2<T>(p[mt][2 * ks][2], p[mt][2 * ks][3]);
      a[mt][2] = pack2<T>(p[mt][2 * ks + 1][0], p[mt][2 * ks + 1][1]);
      a[mt][3] = pack2<T>(p[mt][2 * ks + 1][2], p[mt][2 * ks + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      unsigned b[4];
      ldmatrix_x4_trans(b, vt.chunk(k0 + ks * 16 + v_key, 2 * dp + v_hi));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_16816<T>(o[mt][2 * dp], a[mt], b[0], b[1]);
        mma_16816<T>(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

}  // namespace plx
