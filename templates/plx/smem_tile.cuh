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

  // The block's threads copy `rows` rows; row i comes from row_ptr(i) (nullptr: zero-fill).
  // Each thread keeps one chunk column and walks rows, so row_ptr runs once per row and
  // thread: the address math sits on the issue path of a memory-bound kernel (measured on
  // the H200: per-chunk address math cost decode 40% of its bandwidth).
  template <int kThreads, class RowPtr>
  __device__ __forceinline__ void load_rows(int rows, RowPtr row_ptr) const {
    static_assert(kThreads % kChunks == 0, "a thread's chunk column must stay fixed");
    constexpr int kRowStep = kThreads / kChunks;
    const int c = threadIdx.x % kChunks;
#pragma unroll 4
    for (int row = threadIdx.x / kChunks; row < rows; row += kRowStep) {
      const unsigned short* p = row_ptr(row);
      cp_async_16(chunk(row, c), p ? p + c * 8 : nullptr, p != nullptr);
    }
  }
};

}  // namespace plx
