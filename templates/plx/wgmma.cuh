// Hopper warpgroup MMA (wgmma.mma_async, sm_90a only): one thin wrapper per form the
// prefill kernel issues, plus the fences that order it. A warpgroup is 4 consecutive warps
// (128 threads) starting at a warp index divisible by 4; all 128 threads execute every
// instruction here together.
//
// Shapes: m64 nN k16, fp32 accumulators, bf16/fp16 inputs, N in {64, 128}; wgmma_ss also
// N = 32 (the score tiles of the backward, backward_sm90.cuh, stream 32 partners at d 128).
//   D (accumulator, N/2 floats per thread) as d[N/8][4]: thread t of warp w holds
//     d[n][0..1] = row 16w + t/4,     cols 8n + 2(t%4) + {0, 1}
//     d[n][2..3] = row 16w + 8 + t/4, same cols
//   -- per warp exactly the C fragment of mma.sync m16n8k16 (mma.cuh), one per 8 columns.
//   A from registers (4 x b32, two 16-bit values each), per warp the mma.sync A fragment:
//     a0 (row 16w + t/4, k 2(t%4)..+1)   a1 (row + 8, same k)
//     a2 (row 16w + t/4, k 2(t%4) + 8..)  a3 (row + 8, k + 8..)
//   A or B from shared memory: a 64-bit matrix descriptor (smem_layout_sm90.cuh builds it).
// (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"; the same layouts are
// CUTLASS's CLayout_64xN / ALayout_64x16.)
//
// Ordering rules the caller follows:
//   - wgmma_fence() before the first wgmma of a batch whose accumulators or A registers
//     were last written by ordinary instructions (the online-softmax update, the P pack);
//   - wgmma_commit() closes the batch, wgmma_wait<0>() waits for it;
//   - fence_regs() right after the wait: the registers a wgmma writes asynchronously look
//     to the compiler as written when the wgmma statement was issued, so without a
//     register-level fence the compiler may read them before the wait.
#pragma once
#include "plx/numeric.cuh"

namespace plx::sm90 {

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

template <int R>
__device__ __forceinline__ void fence_regs(float (&d)[R][4]) {
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+f"(d[i][j])::"memory");
}

// Operand lists of the accumulators: d[n][0..3] for 8 consecutive n (32 floats).
#define PLX_WG_ACC4(d, n) "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
#define PLX_WG_ACC32(d, n)                                                                         \
  PLX_WG_ACC4(d, n), PLX_WG_ACC4(d, n + 1), PLX_WG_ACC4(d, n + 2), PLX_WG_ACC4(d, n + 3),           \
      PLX_WG_ACC4(d, n + 4), PLX_WG_ACC4(d, n + 5), PLX_WG_ACC4(d, n + 6), PLX_WG_ACC4(d, n + 7)
#define PLX_WG_ACC16(d, n) PLX_WG_ACC4(d, n), PLX_WG_ACC4(d, n + 1), PLX_WG_ACC4(d, n + 2), PLX_WG_ACC4(d, n + 3)
#define PLX_WG_REGS16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define PLX_WG_REGS32                                                                              \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                         \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define PLX_WG_REGS64                                                                              \
  PLX_WG_REGS32 ", "                                                                               \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "              \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// d (+)= A(smem, K-major) * B(smem, K-major)^T: scale_d = 0 overwrites d, 1 accumulates.
// imm-trans-a = imm-trans-b = 0: both operands K-major (Q rows and K rows, d contiguous).
#define PLX_WGMMA_SS(N, TY, REGS, NA, NB, NS, ...)                                                  \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %" NS ", 0;\n"                                            \
      "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " {" REGS "}, %" NA ", %" NB    \
      ", p, 1, 1, 0, 0;\n}\n"                                                                      \
      : __VA_ARGS__                                                                                \
      : "l"(da), "l"(db), "r"(scale_d))

// d += A(registers) * B(smem): imm-trans-b = 1, B is MN-major (V rows [key][d]: the N
// dimension d is the contiguous one). scale-d is the predicate 1: O starts at zero and
// only ever accumulates.
#define PLX_WGMMA_RS(N, TY, REGS, A0, A1, A2, A3, NB, NS, ...)                                      \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %" NS ", 0;\n"                                            \
      "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " {" REGS "}, {%" A0 ", %" A1   \
      ", %" A2 ", %" A3 "}, %" NB ", p, 1, 1, 1;\n}\n"                                              \
      : __VA_ARGS__                                                                                \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))

template <class T> struct IsBf16 { static constexpr bool value = false; };
template <> struct IsBf16<bf16> { static constexpr bool value = true; };

template <class T, int N>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], unsigned long long da, unsigned long long db,
                                         int scale_d) {
  static_assert(N == 32 || N == 64 || N == 128, "wgmma_ss: N is 32, 64 or 128 (see generator/legality.cpp)");
  if constexpr (N == 32) {
    if constexpr (IsBf16<T>::value) PLX_WGMMA_SS(32, "bf16", PLX_WG_REGS16, "16", "17", "18", PLX_WG_ACC16(d, 0));
    else PLX_WGMMA_SS(32, "f16", PLX_WG_REGS16, "16", "17", "18", PLX_WG_ACC16(d, 0));
  } else if constexpr (N == 64) {
    if constexpr (IsBf16<T>::value) PLX_WGMMA_SS(64, "bf16", PLX_WG_REGS32, "32", "33", "34", PLX_WG_ACC32(d, 0));
    else PLX_WGMMA_SS(64, "f16", PLX_WG_REGS32, "32", "33", "34", PLX_WG_ACC32(d, 0));
  } else {
    if constexpr (IsBf16<T>::value)
      PLX_WGMMA_SS(128, "bf16", PLX_WG_REGS64, "64", "65", "66", PLX_WG_ACC32(d, 0), PLX_WG_ACC32(d, 8));
    else PLX_WGMMA_SS(128, "f16", PLX_WG_REGS64, "64", "65", "66", PLX_WG_ACC32(d, 0), PLX_WG_ACC32(d, 8));
  }
}

template <class T, int N>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const unsigned (&a)[4], unsigned long long db) {
  static_assert(N == 64 || N == 128, "wgmma_rs: N is 64 or 128 (see generator/legality.cpp)");
  if constexpr (N == 64) {
    if constexpr (IsBf16<T>::value)
      PLX_WGMMA_RS(64, "bf16", PLX_WG_REGS32, "32", "33", "34", "35", "36", "37", PLX_WG_ACC32(d, 0));
    else PLX_WGMMA_RS(64, "f16", PLX_WG_REGS32, "32", "33", "34", "35", "36", "37", PLX_WG_ACC32(d, 0));
  } else {
    if constexpr (IsBf16<T>::value)
      PLX_WGMMA_RS(128, "bf16", PLX_WG_REGS64, "64", "65", "66", "67", "68", "69", PLX_WG_ACC32(d, 0),
                   PLX_WG_ACC32(d, 8));
    else PLX_WGMMA_RS(128, "f16", PLX_WG_REGS64, "64", "65", "66", "67", "68", "69", PLX_WG_ACC32(d, 0),
                      PLX_WG_ACC32(d, 8));
  }
}

// d += A(registers) * B(smem), m64 n8 k16: the prefill's row sums, P times a column of ones
// (B = an all-ones block, see ones_desc; every one of the 8 columns gets the row total).
template <class T>
__device__ __forceinline__ void wgmma_rs_n8(float (&d)[4], const unsigned (&a)[4], unsigned long long db) {
  if constexpr (IsBf16<T>::value)
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
  else
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// The B descriptor of an all-ones block of kOnesBytes at `addr` (16-byte aligned), without
// swizzle: the 16 x 8 operand's two core matrices (8 x 16 B each) lie at most LBO + SBO =
// 256 B past addr, so every byte the hardware reads is a one whatever the layout's detail.
inline constexpr int kOnesBytes = 512;
__device__ __forceinline__ unsigned long long ones_desc(unsigned addr) {
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)(128 >> 4) << 16) |
         ((unsigned long long)(128 >> 4) << 32);
}

// d (+)= A(smem, MN-major) * B(smem, MN-major), m64 n64 k16: imm-trans-a = imm-trans-b = 1
// (the backward's reduced dQ^T = K^T [c GL^T | GU^T]: A = the own K tile read with d as M,
// B = the staged score tile with keys as K).
template <class T>
__device__ __forceinline__ void wgmma_ss_mn(float (&d)[8][4], unsigned long long da, unsigned long long db,
                                            int scale_d) {
  if constexpr (IsBf16<T>::value)
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" PLX_WG_REGS32 "}, %32, %33, p, 1, 1, 1, 1;\n}\n"
                 : PLX_WG_ACC32(d, 0)
                 : "l"(da), "l"(db), "r"(scale_d));
  else
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {" PLX_WG_REGS32 "}, %32, %33, p, 1, 1, 1, 1;\n}\n"
                 : PLX_WG_ACC32(d, 0)
                 : "l"(da), "l"(db), "r"(scale_d));
}

#undef PLX_WGMMA_SS
#undef PLX_WGMMA_RS
#undef PLX_WG_REGS64
#undef PLX_WG_REGS32
#undef PLX_WG_REGS16
#undef PLX_WG_ACC16
#undef PLX_WG_ACC32
#undef PLX_WG_ACC4

}  // namespace plx::sm90
