// A [rows x D] tile of 16-bit elements in shared memory, in 16-byte chunks (8 elements)
// whose column index is XORed with the row: ldmatrix reads 8 rows of the same column
// chunk at once, and without the swizzle those 8 rows (row pitch 128 or 256 bytes) would
// all hit the same banks.
#pragma once
#include "plx/mma.cuh"

namespace plx {

template <int D>
struct SmemTile {
  static_assert(D % 64 == 0, "the swizzle needs at least 8 chunks of 16 bytes per row");
  static constexpr int kChunks = D / 8;

  unsigned base;  // shared-space byte address of row 0

  __device__ __forceinline__ unsigned chunk(int row, int c) const {
    return base + unsigned(row * D + ((c ^ (row & 7)) << 3)) * 2u;
  }

  // The block's threads copy `rows` rows; row i comes from src(i) (nullptr: zero-fill).
  template <int kThreads, class Src>
  __device__ __forceinline__ void load_async(int rows, Src src) const {
    for (int i = threadIdx.x; i < rows * kChunks; i += kThreads) {
      const int row = i / kChunks, c = i % kChunks;
      const unsigned short* p = src(row);
      cp_async_16(chunk(row, c), p ? p + c * 8 : nullptr, p != nullptr);
    }
  }
};

}  // namespace plx
