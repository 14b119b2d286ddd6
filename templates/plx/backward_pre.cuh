// Backward, kernel 1 of 2 (parallax-math.md 4.3 "preprocess"): the per-row terms every
// gradient tile needs, gathered into one 16-byte record per row so that the main kernel
// reads them with a single cp.async:
//   lse2 = lse * log2(e)   (the main kernel recomputes p = exp2(s1 * scale_log2 - lse2))
//   bart = d2 / d1         (centered Parallax; 0 otherwise)
//   t    = dO . o          (o as the forward stored it, in T)
//   b    = dO . barv       (centered Parallax; 0 otherwise: the uncentered member's
//                           gradients are the centered ones with bart = b = 0)
// D / 8 lanes share a row, each reading 16 bytes of dO, o and barv.
#pragma once
#include "plx/mask.cuh"
#include "plx/online_state.cuh"
#include "plx/params_bwd.cuh"
#include "plx/row_stats.cuh"

namespace plx {

template <Family F, class T, int D>
struct BwdPreConfig {
  using Elem = T;
  static constexpr Family kFamily = F;
  static constexpr int kD = D;
  static constexpr int kThreads = 128;
  static constexpr int kLanesPerRow = D / 8;
  static constexpr int kRowsPerBlock = kThreads / kLanesPerRow;
  static_assert(kLanesPerRow <= 32 && kThreads % kLanesPerRow == 0, "a row's lanes must share a warp");
};

// Two 16-bit values of one register -> fp32 (lo, hi).
template <class T> __device__ __forceinline__ float2 unpack2(unsigned x);
template <> __device__ __forceinline__ float2 unpack2<bf16>(unsigned x) {
  return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xffff0000u));
}
template <> __device__ __forceinline__ float2 unpack2<fp16>(unsigned x) {
  float lo, hi;
  asm("{\n .reg .f16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h;\n}"
      : "=f"(lo), "=f"(hi)
      : "r"(x));
  return make_float2(lo, hi);
}

template <class T>
__device__ __forceinline__ float dot8(uint4 a, uint4 b) {
  const unsigned x[4] = {a.x, a.y, a.z, a.w}, y[4] = {b.x, b.y, b.z, b.w};
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 u = unpack2<T>(x[i]), v = unpack2<T>(y[i]);
    s = fmaf(u.x, v.x, fmaf(u.y, v.y, s));
  }
  return s;
}

template <class C>
__global__ void __launch_bounds__(C::kThreads) bwd_pre_kernel(const BwdParams p) {
  using T = typename C::Elem;
  constexpr int LPR = C::kLanesPerRow;
  constexpr bool kCentered = C::kFamily == Family::parallax;
  const AttnParams& f = p.f;
  const int lane = threadIdx.x % LPR;
  const long long row = (long long)blockIdx.x * C::kRowsPerBlock + threadIdx.x / LPR;  // (b, h, t)
  const long long n_rows = (long long)f.batch * f.heads_q * f.q_len;
  // No early return: the shuffles below need every lane of the warp. A row past its
  // (varlen) sequence's length is not live: it reads and writes nothing, and the gradient
  // kernel never reads its terms (rows keep the padded [batch][heads_q][q_len] layout).
  const bool in_grid = row < n_rows;
  const int t = in_grid ? int(row % f.q_len) : 0;
  const int bh = in_grid ? int(row / f.q_len) : 0;
  const int h = bh % f.heads_q, b = bh / f.heads_q;
  const SeqView sv = seq_view(f, b);
  const bool live = in_grid && t < sv.q_len;
  const long long at = sv.o0 + t * f.o_stride_t + h * f.o_stride_h + lane * 8;
  float dot_o = 0.f, dot_barv = 0.f;
  if (live) {
    const uint4 g = *reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(p.dout) + at);
    const uint4 o = *reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(f.o) + at);
    dot_o = dot8<T>(g, o);
    if (kCentered) {
      const uint4 bv = *reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(p.barv) + at);
      dot_barv = dot8<T>(g, bv);
    }
  }
#pragma unroll
  for (int m = 1; m < LPR; m <<= 1) {
    dot_o += __shfl_xor_sync(0xffffffffu, dot_o, m);
    dot_barv += __shfl_xor_sync(0xffffffffu, dot_barv, m);
  }
  if (in_grid && p.accum) {  // mma wgmma-red: zero the accumulators, as a linear memset
    float4* acc = reinterpret_cast<float4*>(p.accum + row * C::kD + lane * 8);
    const long long plane = n_rows * C::kD / 4;  // dR's offset in float4
    const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
    acc[0] = z;
    acc[1] = z;
    acc[plane] = z;
    acc[plane + 1] = z;
  }
  if (!live || lane != 0) return;
  const float4 st = *reinterpret_cast<const float4*>(p.stats + row * 4);
  *reinterpret_cast<float4*>(p.rows + row * 4) =
      make_float4(st.w * kLog2e, kCentered ? st.z : 0.f, dot_o, kCentered ? dot_barv : 0.f);
}

// mma wgmma-red, kernel 3 of 3: dq and dr from the fp32 accumulators the dK/dV CTAs
// reduced into (BwdParams::accum; dQ's already carries the scale). Same row walk as above.
template <class C>
__global__ void __launch_bounds__(C::kThreads) bwd_post_kernel(const BwdParams p) {
  using T = typename C::Elem;
  constexpr int LPR = C::kLanesPerRow;
  const AttnParams& f = p.f;
  const int lane = threadIdx.x % LPR;
  const long long row = (long long)blockIdx.x * C::kRowsPerBlock + threadIdx.x / LPR;  // (b, h, t)
  const long long n_rows = (long long)f.batch * f.heads_q * f.q_len;
  if (row >= n_rows) return;
  const int t = int(row % f.q_len), bh = int(row / f.q_len);
  const int h = bh % f.heads_q, b = bh / f.heads_q;
  const SeqView sv = seq_view(f, b);
  if (t >= sv.q_len) return;  // varlen: past the sequence (never zeroed, never reduced into)
  const long long at = sv.q0 + t * f.q_stride_t + h * f.q_stride_h + lane * 8;
  auto convert = [&](const float* src, void* dst) {
    const float4 lo = reinterpret_cast<const float4*>(src)[0], hi = reinterpret_cast<const float4*>(src)[1];
    uint4 out;
    out.x = pack2<T>(lo.x, lo.y);
    out.y = pack2<T>(lo.z, lo.w);
    out.z = pack2<T>(hi.x, hi.y);
    out.w = pack2<T>(hi.z, hi.w);
    *reinterpret_cast<uint4*>(static_cast<unsigned short*>(dst) + at) = out;
  };
  // accum is [dQ, dR][batch][heads_q][d half][q_len][64], 8-float chunks XORed with
  // (t >> 1) & 3 (backward_sm90.cuh, red_slot): d = 8 lane .. 8 lane + 7 is one chunk.
  const int half = lane / 8, chunk = (lane % 8) ^ ((t >> 1) & 3);
  const float* acc = p.accum + ((bh * 2LL + half) * f.q_len + t) * 64 + chunk * 8;
  convert(acc, p.dq);
  if (p.dr) convert(acc + n_rows * C::kD, p.dr);
}

}  // namespace plx
