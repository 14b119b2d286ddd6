// The shared-memory layout wgmma reads with the 128-byte swizzle, and the descriptors that
// point it at a slice of such a tile. Q, K and V tiles all use it.
//
// A [ROWS x D] tile of 16-bit elements (ROWS a multiple of 8, D of 64) is stored as D / 64
// panels of 64 columns; panel p holds every row's columns 64p .. 64p + 63 as one 128-byte
// line per row, so row r of panel p starts at p * ROWS * 128 + r * 128. Inside a line the
// eight 16-byte chunks are permuted: chunk c of row r lives at chunk position c ^ (r % 8).
// The hardware applies that XOR from address bits [4, 7) ^ [7, 10), which is why every
// tile base must be 1024-byte aligned (8 rows x 128 B: one swizzle period).
//
// The same bytes serve both operand orientations (CUTLASS names: Layout_K_SW128_Atom and
// Layout_MN_SW128_Atom tiled panel by panel):
//   K-major (A = Q, B = K of S = Q K^T; the reduction dimension d is the contiguous one):
//     a k16 step kk covers columns 16kk .. 16kk + 15, i.e. panel kk / 4 at byte 32 (kk % 4)
//     of each line; 8-row core-matrix groups are SBO = 1024 B apart; LBO is unused with
//     this swizzle (set to 16 B as CUTLASS does).
//   MN-major (B = V of O = P V with imm-trans-b: the reduction dimension is the key, the
//     row; N = d is contiguous): a k16 step ks covers rows 16ks .. 16ks + 15, starting at
//     byte 16ks x 128 = 2048 ks; 8-key groups are SBO = 1024 B apart and 64-column panels
//     LBO = ROWS x 128 B apart.
// Descriptor bits (PTX ISA "Matrix Descriptor Format"): [0, 14) start address >> 4,
// [16, 30) LBO >> 4, [32, 46) SBO >> 4, [49, 52) base offset (0: every slice starts at a
// line of a 1024-aligned tile), [62, 64) swizzle mode (1 = 128 B).
#pragma once
#include "plx/mma.cuh"

namespace plx::sm90 {

__device__ __forceinline__ unsigned long long smem_desc(unsigned addr, unsigned lbo_bytes, unsigned sbo_bytes) {
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)((lbo_bytes >> 4) & 0x3FFFu) << 16) |
         ((unsigned long long)((sbo_bytes >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

// The descriptor of the slice `bytes` (a multiple of 16) past the one `tile_desc`
// describes. Only the start-address field changes, and it is bits [0, 14) of the low word:
// shared addresses stay below 256 KB, so adding bytes >> 4 there never carries into the
// LBO field. Written this way the tile's descriptor is encoded once and each k-step's is
// one add of a constant to a uniform register; re-encoding base + offset per wgmma (mask,
// shift, or) cost ~10 instructions each and made the n32 score batches of the backward
// issue-bound (ncu, 2026-11-29 run 20: 38% of its issued instructions).
__device__ __forceinline__ unsigned long long desc_at(unsigned long long tile_desc, unsigned bytes) {
  const unsigned lo = unsigned(tile_desc) + (bytes >> 4), hi = unsigned(tile_desc >> 32);
  return (unsigned long long)hi << 32 | lo;
}

// PANEL_ROWS > ROWS views rows [k, k + ROWS) of a taller tile (base = the taller tile's
// base + k * 128, k a multiple of 8): the backward stacks the q and r tiles of one slot as
// a single [q; r] tile, so one n64 wgmma computes both score tiles against one read of A.
template <int ROWS, int D, int PANEL_ROWS = ROWS>
struct Sw128Tile {
  static_assert(ROWS % 8 == 0 && D % 64 == 0, "a tile is whole 8-row x 64-column swizzle atoms");
  static_assert(PANEL_ROWS >= ROWS && PANEL_ROWS % 8 == 0, "a view lies inside its tile's panels");
  static constexpr int kRows = ROWS;
  static constexpr int kPanelBytes = PANEL_ROWS * 128;
  static constexpr int kBytes = ROWS * D * 2;
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row

  unsigned base;  // shared-space byte address, 1024-aligned

  // Byte address of chunk c (columns 8c .. 8c + 7) of `row`.
  __device__ __forceinline__ unsigned chunk(int row, int c) const {
    return base + unsigned((c >> 3) * kPanelBytes + row * 128 + (((c & 7) ^ (row & 7)) << 4));
  }

  // Operand slice for a k16 step: rows row0 .. row0 + 63 (A, m64) or all ROWS (B, nROWS),
  // columns 16kk .. 16kk + 15. row0 is a multiple of 8.
  __device__ __forceinline__ unsigned long long kmajor_desc(int row0, int kk) const {
    return desc_at(smem_desc(base, 16, 1024), unsigned((kk >> 2) * kPanelBytes + row0 * 128 + (kk & 3) * 32));
  }
  // Operand slice for a k16 step along the rows: rows 16ks .. 16ks + 15, all D columns.
  __device__ __forceinline__ unsigned long long mnmajor_desc(int ks) const {
    return desc_at(smem_desc(base, kPanelBytes, 1024), unsigned(ks * 2048));
  }

  // kThreads threads copy `rows` rows with cp.async; row i comes from row_ptr(i) (nullptr:
  // zero-filled). tid in [0, kThreads). Each thread keeps one chunk column, so row_ptr runs
  // once per (row, thread).
  template <int kThreads, class RowPtr>
  __device__ __forceinline__ void load_rows(int tid, int rows, RowPtr row_ptr) const {
    static_assert(kThreads % kChunks == 0, "a thread's chunk column must stay fixed");
    constexpr int kRowStep = kThreads / kChunks;
    const int c = tid % kChunks;
#pragma unroll 4
    for (int row = tid / kChunks; row < rows; row += kRowStep) {
      const unsigned short* p = row_ptr(row);
      cp_async_16(chunk(row, c), p ? p + c * 8 : nullptr, p != nullptr);
    }
  }
  // load_rows for a whole tile of in-bounds rows, row i at first + i * stride_t: one
  // pointer walk, no per-row bounds check, callback or 64-bit multiply. The backward's
  // producer warps issue from the consumers' schedulers; the generic path cost ~140
  // instructions per tile, 22% of the kernel's issued instructions (ncu, 2026-11-29 run 20).
  template <int kThreads>
  __device__ __forceinline__ void copy_rows(int tid, const unsigned short* first, long long stride_t) const {
    static_assert(kThreads % kChunks == 0 && ROWS % (kThreads / kChunks) == 0, "every thread copies whole rows");
    constexpr int kRowStep = kThreads / kChunks;
    const int c = tid % kChunks, row = tid / kChunks;
    const unsigned short* g = first + row * stride_t + c * 8;
    const long long step = kRowStep * stride_t;
#pragma unroll
    for (int i = 0; i < ROWS / kRowStep; ++i) cp_async_16(chunk(row + i * kRowStep, c), g + i * step, true);
  }
};

}  // namespace plx::sm90
