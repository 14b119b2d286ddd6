// Element types and the few conversions the kernels need, written with PTX so that the
// templates compile with NVRTC without any toolkit header (no cuda_bf16.h on the include
// path, nothing to find at run time).
#pragma once

namespace plx {

// 16-bit storage types. The kernels never do arithmetic on them: they move them with
// cp.async/ldmatrix, feed them to mma.sync, and convert fp32 results once at the store.
struct bf16 {
  unsigned short bits;
  static constexpr const char* mma_name = "bf16";
};
struct fp16 {
  unsigned short bits;
  static constexpr const char* mma_name = "f16";
};

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// Two fp32 values -> one register of two 16-bit values, lo in the low half (the layout
// mma.sync and a 4-byte store expect). Round to nearest even, like the CPU oracle.
template <class T> __device__ __forceinline__ unsigned pack2(float lo, float hi);
template <> __device__ __forceinline__ unsigned pack2<bf16>(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
template <> __device__ __forceinline__ unsigned pack2<fp16>(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// Rounds a pair to T and back, returning the packed pair too: the values the P.V MMA will
// actually multiply. The online state sums these rounded weights, so d1 and d2 describe
// exactly the P that reaches O1 and O2: the Parallax weights p(1 + t - u) then still sum
// to 1 after rounding, and one visible key returns its value exactly instead of
// v * (1 + s2 - bf16(s2)). Callers feeding the MMA next use the packed form directly.
template <class T> __device__ __forceinline__ unsigned round_pack(float& lo, float& hi);
template <> __device__ __forceinline__ unsigned round_pack<bf16>(float& lo, float& hi) {
  const unsigned r = pack2<bf16>(lo, hi);
  lo = __uint_as_float(r << 16);
  hi = __uint_as_float(r & 0xffff0000u);
  return r;
}
template <> __device__ __forceinline__ unsigned round_pack<fp16>(float& lo, float& hi) {
  const unsigned r = pack2<fp16>(lo, hi);
  asm("{\n .reg .f16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h;\n}"
      : "=f"(lo), "=f"(hi)
      : "r"(r));
  return r;
}

// 2^x with the MUFU unit; ex2(-inf) = 0, which the masking rules rely on.
__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace plx
