// n / d by one multiply-high, an add and a shift, for a divisor known only at run time but
// fixed for the whole kernel (Hacker's Delight 10-9, the round-up method with the 33rd bit
// of the multiplier carried by the add). A runtime `/` is an I2F, MUFU.RCP, F2I chain of
// ~30 dependent instructions; the Hopper prefill decodes a work item at every item
// boundary, on both consumers' critical path (prefill_sm90.cuh, ItemDecode).
// Host-compilable so tests/test_fast_div.cpp can check it against `/` on the CPU.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PLX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PLX_HOST_DEVICE inline
#endif

namespace plx {

struct FastDiv {
  int d;         // the divisor, >= 1
  unsigned mul;  // floor(2^32 (2^shift - d) / d) + 1: the low 32 bits of ceil(2^(32+shift) / d)
  int shift;     // ceil(log2 d)

  FastDiv() = default;
  PLX_HOST_DEVICE explicit FastDiv(int divisor) : d(divisor), mul(0), shift(0) {
    while ((1ull << shift) < (unsigned long long)divisor) ++shift;
    mul = unsigned(((1ull << 32) * ((1ull << shift) - (unsigned long long)divisor)) / (unsigned long long)divisor + 1);
  }
  // n / d for 0 <= n < 2^31: mulhi(n, mul) <= n, so the add cannot overflow 32 bits.
  PLX_HOST_DEVICE int div(int n) const {
    const unsigned hi = unsigned(((unsigned long long)unsigned(n) * mul) >> 32);
    return int((hi + unsigned(n)) >> shift);
  }
};

}  // namespace plx
