// Backward, kernel 2 of 2: the gradients of parallax-math.md 4.2 with mma.sync, no atomics.
// One grid, two kinds of CTA (4.3's "rq" and "kv" kernels, launched together so each
// fills the other's tail):
//   blockIdx.x < kv_ctas : dK/dV of block_m keys of one kv head; streams the query tiles
//                          (q, r, dO and the row terms) of every q head of its GQA group,
//                          so the group sum happens in registers.
//   otherwise            : dQ/dR of block_m query rows of one q head; streams K/V tiles.
// The two roles are the same computation with the operands swapped. Warp w owns 16 of
// the CTA's rows (queries or keys) and, per streamed tile of block_n partners, forms
//   S1 = own1 part1^T, S2 = own2 part2^T, A = own3 part3^T      (three MMAs, C layout)
//   dQ/dR role: (q, r, dO) x (K, K, V)    dK/dV role: (K, K, V) x (q, r, dO)
// then, element by element (grad_terms), the weights p = exp2(s1 scale_log2 - lse2),
//   GL = p (a - t + (bart - s2)(a - b)),   GU = -p (a - b),   W = p (1 + bart - s2)
// and accumulates with the C layout reused as the next A operand (as P in the forward):
//   dQ += GL K, dR += GU K        or        dV += W dO, dK += (c GL) q + GU r.
// Heavy CTAs are numbered first (causal: the first key tiles, the last query tiles).
#pragma once
#include "plx/kv_ring.cuh"
#include "plx/mask.cuh"
#include "plx/online_state.cuh"
#include "plx/params_bwd.cuh"
#include "plx/warp_mma.cuh"

namespace plx {

template <Family F, class T, int D, int BM, int BN, int WARPS, int STAGES, bool CAUSAL, bool WINDOW>
struct BackwardConfig {
  using Elem = T;
  static constexpr Family kFamily = F;
  static constexpr bool kProbe = F != Family::softmax;
  static constexpr int kD = D, kBM = BM, kBN = BN, kWarps = WARPS, kStages = STAGES;
  static constexpr bool kCausal = CAUSAL, kWindow = WINDOW;
  static constexpr int kThreads = WARPS * 32;
  static_assert(BM == 16 * WARPS, "one m16 tile of own rows per warp: see generator/legality.cpp");
  static_assert(BN % 16 == 0 && BN <= kThreads, "block_n: whole k16 steps, one row-term copy per thread");
  static constexpr int kQSide = kProbe ? 3 : 2;  // q, (r), dO
  static constexpr int kOwnTile = BM * D * 2;
  static constexpr int kPartTile = BN * D * 2;
  static constexpr int kTermBytes = BN * 16;
  // dQ/dR role: own q, r, dO tiles, then per stage a K and a V tile.
  static constexpr int kDqStage = 2 * kPartTile;
  static constexpr int kDqBytes = kQSide * kOwnTile + STAGES * kDqStage;
  // dK/dV role: own K and V tiles, then per stage q, r, dO tiles and their row terms.
  static constexpr int kKvStage = kQSide * kPartTile + kTermBytes;
  static constexpr int kKvBytes = 2 * kOwnTile + STAGES * kKvStage;
  static constexpr int kSmemBytes = kDqBytes > kKvBytes ? kDqBytes : kKvBytes;
};

// Query q sees key `key` (the mask of mask.cuh's visible_keys, as one predicate).
template <bool kCausal, bool kWindow>
__device__ __forceinline__ bool sees(int key, int q, int L, int q_len, int window) {
  const int diag = key - (L - q_len + q);
  return q < q_len && key < L && (!kCausal || diag <= 0) && (!kWindow || diag > -window);
}

// One (query, key) element. rt = the query row's terms (lse2, bart, t, b) from the
// preprocess; the uncentered member has bart = b = 0 there, softmax ignores s2.
template <Family F>
__device__ __forceinline__ void grad_terms(float s1, float s2, float a, const float4& rt, float scale_log2,
                                           bool visible, float& gl, float& gu, float& w) {
  const float pr = visible ? exp2_fast(s1 * scale_log2 - rt.x) : 0.f;
  if (F == Family::softmax) {
    gl = pr * (a - rt.z);
    gu = 0.f;
    w = pr;
    return;
  }
  const float delta = a - rt.w;
  gl = pr * (a - rt.z + (rt.y - s2) * delta);
  gu = -pr * delta;
  w = pr * (1.f + rt.y - s2);
}

template <bool B> struct Flag { static constexpr bool value = B; };

// The dK/dV role's walk: the queries that see any key of [k_first, k_last] (causal needs
// q >= key - off, a window q < key - off + W; off = L - q_len aligns the diagonal to the
// end), and for a CTA's keys [key0, key0 + BM) the per-head span [qa, qb) in tiles of BN
// queries, walked head by head over the GQA group: tile i is query0(i) of head_of(i).
// Keys past L (seqused_k) or a sequence without queries: per_head = 0, no tile, zeros.
template <bool kCausal, bool kWindow, int BN>
struct DkvQueries {
  int off, q_len, window, qa, qb, per_head;
  __device__ __forceinline__ DkvQueries(int key0, int BM, int L, int q_len_, int window_)
      : off(L - q_len_), q_len(q_len_), window(window_) {
    qa = first(key0);
    qb = key0 < L ? end(min(key0 + BM, L) - 1) : qa;
    per_head = qb > qa ? (qb - qa + BN - 1) / BN : 0;
  }
  __device__ __forceinline__ int first(int k_first) const { return kCausal ? max(0, k_first - off) : 0; }
  __device__ __forceinline__ int end(int k_last) const { return kWindow ? min(q_len, k_last - off + window) : q_len; }
  __device__ __forceinline__ int head_of(int hkv, int group, int i) const { return hkv * group + i / per_head; }
  __device__ __forceinline__ int query0(int i) const { return qa + (i % per_head) * BN; }
};

// The dK/dV role's element-wise step over one warp's 16 keys (C-layout rows key_of[0..1])
// x BN queries (columns q0 + col), shared by backward.cuh and backward_sm90.cuh (the two
// score layouts agree per warp). Each column's row terms are read from shared memory at
// `terms` (16 bytes per query). score(j, n, e) names the fragment element: j = 0 S1^T, then
// c GL^T; 1 S2^T, then GU^T (probe families only); 2 A^T, then W^T.
template <class C, int BN, bool kMasked, class Score>
__device__ __forceinline__ void dkv_grad_terms(const BwdParams& p, unsigned terms, int q0, const int (&key_of)[2], int L,
                                               int q_len, Score score) {
  const int t4 = threadIdx.x & 3;
#pragma unroll
  for (int n = 0; n < BN / 8; ++n)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int col = n * 8 + 2 * t4 + c;
      float4 rt;
      asm volatile("ld.shared.v4.f32 {%0,%1,%2,%3}, [%4];\n"
                   : "=f"(rt.x), "=f"(rt.y), "=f"(rt.z), "=f"(rt.w)
                   : "r"(terms + unsigned(col * 16)));
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int e = 2 * r + c;
        const bool vis = !kMasked || sees<C::kCausal, C::kWindow>(key_of[r], q0 + col, L, q_len, p.f.window);
        float gl, gu, w;
        grad_terms<C::kFamily>(score(0, n, e), C::kProbe ? score(1, n, e) : 0.f, score(2, n, e), rt, p.f.scale_log2,
                               vis, gl, gu, w);
        score(0, n, e) = gl * p.scale;
        if (C::kProbe) score(1, n, e) = gu;
        score(2, n, e) = w;
      }
    }
}

// S1 = X1 Y1^T and S2 = X2 Y2^T over NK partner rows of 16-row tiles, where the two
// products share one operand: the B fragment (dQ/dR role: q and r against the same K,
// X1 != X2, Y1 == Y2) or the A fragment (dK/dV role: K against q and r, X1 == X2). Each
// shared fragment is read from shared memory once for two MMAs (ldmatrix bandwidth, not
// the tensor cores, bounds these warps). Fragment walks as in warp_mma.cuh's scores().
template <class T, int NK, int D, bool kShareA>
__device__ __forceinline__ void scores_pair(float (&s1)[1][NK / 8][4], float (&s2)[1][NK / 8][4], SmemTile<D> x1,
                                            SmemTile<D> x2, SmemTile<D> y1, SmemTile<D> y2) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < NK / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s1[0][n][e] = s2[0][n][e] = 0.f;
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_hi = lane >> 4;
  const int b_key = (lane & 7) + (lane >> 4) * 8, b_hi = (lane >> 3) & 1;
  // Two k16 steps per trip, not all D / 16: fully unrolled, ptxas hoists every step's
  // fragments and the 128 accumulator floats no longer fit (spills at block_n 32, d 128).
#pragma unroll 2
  for (int kk = 0; kk < D / 16; ++kk) {
    unsigned a1[4], a2[4];
    ldmatrix_x4(a1, x1.chunk(a_row, 2 * kk + a_hi));
    if (!kShareA) ldmatrix_x4(a2, x2.chunk(a_row, 2 * kk + a_hi));
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      unsigned b1[4], b2[4];
      ldmatrix_x4(b1, y1.chunk(np * 16 + b_key, 2 * kk + b_hi));
      if (kShareA) ldmatrix_x4(b2, y2.chunk(np * 16 + b_key, 2 * kk + b_hi));
      const unsigned(&A2)[4] = kShareA ? a1 : a2;
      const unsigned(&B2)[4] = kShareA ? b2 : b1;
      mma_16816<T>(s1[0][2 * np], a1, b1[0], b1[1]);
      mma_16816<T>(s1[0][2 * np + 1], a1, b1[2], b1[3]);
      mma_16816<T>(s2[0][2 * np], A2, B2[0], B2[1]);
      mma_16816<T>(s2[0][2 * np + 1], A2, B2[2], B2[3]);
    }
  }
}

// Stores a warp's 16 x D fp32 accumulator (C layout) as T rows; row(i) is the global
// address of fragment row i (0..15) or nullptr to skip it.
template <class T, int D, class RowPtr>
__device__ __forceinline__ void store_rows(const float (&acc)[1][D / 8][4], float scale, RowPtr row) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    T* out = row(g + 8 * r);
    if (!out) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<unsigned*>(out + n * 8 + 2 * t4) = pack2<T>(acc[0][n][2 * r] * scale, acc[0][n][2 * r + 1] * scale);
  }
}

template <class T, int D>
__device__ __forceinline__ void zero(float (&acc)[1][D / 8][4]) {
#pragma unroll
  for (int n = 0; n < D / 8; ++n) acc[0][n][0] = acc[0][n][1] = acc[0][n][2] = acc[0][n][3] = 0.f;
}

// S = X Y^T for one pair of 16-row tiles (scores() of warp_mma.cuh, unrolled like
// scores_pair for the same reason).
template <class T, int NK, int D>
__device__ __forceinline__ void scores_one(float (&s)[1][NK / 8][4], SmemTile<D> x, SmemTile<D> y) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < NK / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[0][n][e] = 0.f;
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_hi = lane >> 4;
  const int b_key = (lane & 7) + (lane >> 4) * 8, b_hi = (lane >> 3) & 1;
#pragma unroll 2
  for (int kk = 0; kk < D / 16; ++kk) {
    unsigned a[4];
    ldmatrix_x4(a, x.chunk(a_row, 2 * kk + a_hi));
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      unsigned b[4];
      ldmatrix_x4(b, y.chunk(np * 16 + b_key, 2 * kk + b_hi));
      mma_16816<T>(s[0][2 * np], a, b[0], b[1]);
      mma_16816<T>(s[0][2 * np + 1], a, b[2], b[3]);
    }
  }
}

// o1 += p1 Y and o2 += p2 Y over the NK partner rows of Y (accumulate_pv of warp_mma.cuh
// for two products sharing Y = K in the dQ/dR role: each K fragment is read once).
template <class T, int NK, int D>
__device__ __forceinline__ void accumulate_pair(float (&o1)[1][D / 8][4], float (&o2)[1][D / 8][4],
                                                const float (&p1)[1][NK / 8][4], const float (&p2)[1][NK / 8][4],
                                                SmemTile<D> y) {
  const int lane = threadIdx.x & 31;
  const int v_key = (lane & 7) + ((lane >> 3) & 1) * 8, v_hi = lane >> 4;
#pragma unroll
  for (int ks = 0; ks < NK / 16; ++ks) {
    unsigned a1[4], a2[4];
    a1[0] = pack2<T>(p1[0][2 * ks][0], p1[0][2 * ks][1]);
    a1[1] = pack2<T>(p1[0][2 * ks][2], p1[0][2 * ks][3]);
    a1[2] = pack2<T>(p1[0][2 * ks + 1][0], p1[0][2 * ks + 1][1]);
    a1[3] = pack2<T>(p1[0][2 * ks + 1][2], p1[0][2 * ks + 1][3]);
    a2[0] = pack2<T>(p2[0][2 * ks][0], p2[0][2 * ks][1]);
    a2[1] = pack2<T>(p2[0][2 * ks][2], p2[0][2 * ks][3]);
    a2[2] = pack2<T>(p2[0][2 * ks + 1][0], p2[0][2 * ks + 1][1]);
    a2[3] = pack2<T>(p2[0][2 * ks + 1][2], p2[0][2 * ks + 1][3]);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      unsigned b[4];
      ldmatrix_x4_trans(b, y.chunk(ks * 16 + v_key, 2 * dp + v_hi));
      mma_16816<T>(o1[0][2 * dp], a1, b[0], b[1]);
      mma_16816<T>(o1[0][2 * dp + 1], a1, b[2], b[3]);
      mma_16816<T>(o2[0][2 * dp], a2, b[0], b[1]);
      mma_16816<T>(o2[0][2 * dp + 1], a2, b[2], b[3]);
    }
  }
}

// ---- dQ and dR of block_m query rows of q head h -----------------------------------
template <class C>
__device__ __forceinline__ void bwd_dq_role(const BwdParams& p, unsigned char* smem, int b, int h, int tile) {
  using T = typename C::Elem;
  constexpr int D = C::kD, BM = C::kBM, BN = C::kBN, kDo = C::kQSide - 1;
  const AttnParams& f = p.f;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const SeqView sv = seq_view(f, b);
  const int L = sv.L, q_len = sv.q_len;
  const int row0 = tile * BM;
  // Varlen: the grid covers the longest sequence; a tile past this one's queries has no
  // row to write. The condition is the same for every thread, and no barrier came yet.
  if (row0 >= q_len) return;
  const unsigned base = smem_addr(smem);
  auto own = [&](int i) { return SmemTile<D>{base + unsigned(i * C::kOwnTile)}; };
  auto mine = [&](int i) { return SmemTile<D>{base + unsigned(i * C::kOwnTile + warp * 16 * D * 2)}; };
  auto load_own = [&](int i, const void* src, long long off, long long stride_t) {
    own(i).template load_rows<C::kThreads>(BM, [&](int r) -> const unsigned short* {
      const int pos = row0 + r;
      return pos < q_len ? static_cast<const unsigned short*>(src) + off + pos * stride_t : nullptr;
    });
  };
  const long long q_off = sv.q0 + h * f.q_stride_h;
  load_own(0, f.q, q_off, f.q_stride_t);
  if (C::kProbe) load_own(1, f.r, q_off, f.q_stride_t);
  load_own(kDo, p.dout, sv.o0 + h * f.o_stride_h, f.o_stride_t);
  cp_async_commit();

  const int warp_first = row0 + warp * 16;
  float4 rt[2];
  RowRange rr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int pos = warp_first + g + 8 * r;
    const bool live = pos < q_len;
    rt[r] = live ? *reinterpret_cast<const float4*>(p.rows + (((long long)b * f.heads_q + h) * f.q_len + pos) * 4)
                 : make_float4(__int_as_float(0x7f800000), 0.f, 0.f, 0.f);
    rr[r] = live ? visible_keys<C::kCausal, C::kWindow>(L, q_len, pos, f.window) : RowRange{0, 0};
  }
  const int cta_last = min(row0 + BM, q_len) - 1;  // >= row0: the kernel skips dead CTAs
  const BlockKeys cta_keys = block_keys<C::kCausal, C::kWindow>(L, q_len, row0, cta_last, f.window);
  const int warp_last = min(warp_first + 16, q_len) - 1;
  const bool warp_live = warp_first < q_len;
  const BlockKeys warp_keys =
      block_keys<C::kCausal, C::kWindow>(L, q_len, warp_first, max(warp_last, warp_first), f.window);

  // Contiguous K/V only (the backward refuses paged caches); keys past L are zero-filled.
  const long long kv_off = sv.k0 + (h / f.group) * f.k_stride_h;
  auto load_keys = [&](SmemTile<D> tile, const void* src, int key0) {
    tile.template load_rows<C::kThreads>(BN, [&](int r) -> const unsigned short* {
      const int key = key0 + r;
      return key < L ? static_cast<const unsigned short*>(src) + kv_off + key * f.k_stride_t : nullptr;
    });
  };
  const int n_tiles = (cta_keys.any.hi - cta_keys.any.lo + BN - 1) / BN;
  const unsigned ring = base + unsigned(C::kQSide * C::kOwnTile);
  auto kt = [&](int slot) { return SmemTile<D>{ring + unsigned(slot * C::kDqStage)}; };
  auto vt = [&](int slot) { return SmemTile<D>{ring + unsigned(slot * C::kDqStage + C::kPartTile)}; };

  float dq[1][D / 8][4], dr[1][D / 8][4];
  zero<T, D>(dq);
  zero<T, D>(dr);
  cp_async_ring<C::kStages>(
      n_tiles,
      [&](int i, int slot) {
        const int key0 = cta_keys.any.lo + i * BN;
        load_keys(kt(slot), f.k, key0);
        load_keys(vt(slot), f.v, key0);
      },
      [&](int i, int slot) {
        const int key0 = cta_keys.any.lo + i * BN;
        if (!warp_live || span_is_dead(warp_keys, key0, BN)) return;
        float s1[1][BN / 8][4], s2[1][BN / 8][4], a[1][BN / 8][4];
        if (C::kProbe) scores_pair<T, BN, D, false>(s1, s2, mine(0), mine(1), kt(slot), kt(slot));
        else scores_one<T, BN, D>(s1, mine(0), kt(slot));
        scores_one<T, BN, D>(a, mine(kDo), vt(slot));
        auto combine = [&](auto masked) {
#pragma unroll
          for (int n = 0; n < BN / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int r = e >> 1, key = key0 + n * 8 + 2 * t4 + (e & 1);
              const bool vis = !decltype(masked)::value || (key >= rr[r].lo && key < rr[r].hi);
              float gl, gu, w;
              grad_terms<C::kFamily>(s1[0][n][e], C::kProbe ? s2[0][n][e] : 0.f, a[0][n][e], rt[r], f.scale_log2,
                                     vis, gl, gu, w);
              s1[0][n][e] = gl;
              s2[0][n][e] = gu;
            }
        };
        if (span_needs_mask(warp_keys, key0, BN)) combine(Flag<true>{});
        else combine(Flag<false>{});
        if (C::kProbe) accumulate_pair<T, BN, D>(dq, dr, s1, s2, kt(slot));
        else accumulate_pv<T, 1, BN, D>(dq, s1, kt(slot), 0);
      });

  auto out_row = [&](void* base_ptr) {
    return [&, base_ptr](int i) -> T* {
      const int pos = warp_first + i;
      return pos < q_len ? static_cast<T*>(base_ptr) + q_off + pos * f.q_stride_t : nullptr;
    };
  };
  store_rows<T, D>(dq, p.scale, out_row(p.dq));
  if (C::kProbe) store_rows<T, D>(dr, 1.f, out_row(p.dr));
}

// ---- dK and dV of block_m keys of kv head hkv, summed over its q heads -------------
template <class C>
__device__ __forceinline__ void bwd_dkv_role(const BwdParams& p, unsigned char* smem, int b, int hkv, int tile) {
  using T = typename C::Elem;
  constexpr int D = C::kD, BM = C::kBM, BN = C::kBN, kDo = C::kQSide - 1;
  const AttnParams& f = p.f;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const SeqView sv = seq_view(f, b);
  const int L = sv.L, q_len = sv.q_len;
  const int key0 = tile * BM;
  // Varlen: a tile past this sequence's stored keys has no dK / dV row (uniform, before
  // any barrier). Keys past L but stored (seqused_k) still get their zeros below.
  if (key0 >= sv.kv_len) return;
  const unsigned base = smem_addr(smem);
  const long long kv_off = sv.k0 + hkv * f.k_stride_h;
  auto own = [&](int i) { return SmemTile<D>{base + unsigned(i * C::kOwnTile)}; };
  auto mine = [&](int i) { return SmemTile<D>{base + unsigned(i * C::kOwnTile + warp * 16 * D * 2)}; };
  auto load_own = [&](int i, const void* src) {
    own(i).template load_rows<C::kThreads>(BM, [&](int r) -> const unsigned short* {
      const int key = key0 + r;
      return key < L ? static_cast<const unsigned short*>(src) + kv_off + key * f.k_stride_t : nullptr;
    });
  };
  load_own(0, f.k);
  load_own(1, f.v);
  cp_async_commit();

  const DkvQueries<C::kCausal, C::kWindow, BN> span(key0, BM, L, q_len, f.window);
  const int per_head = span.per_head;
  const int kw0 = key0 + warp * 16, kw1 = kw0 + 15;
  const bool warp_live = kw0 < L;
  const int qa_w = span.first(kw0), qb_w = warp_live ? span.end(min(kw1, L - 1)) : qa_w;
  const int key_of[2] = {kw0 + g, kw0 + g + 8};

  const unsigned ring = base + unsigned(2 * C::kOwnTile);
  auto part = [&](int slot, int i) { return SmemTile<D>{ring + unsigned(slot * C::kKvStage + i * C::kPartTile)}; };
  auto terms = [&](int slot) { return ring + unsigned(slot * C::kKvStage + C::kQSide * C::kPartTile); };
  auto head_of = [&](int i) { return span.head_of(hkv, f.group, i); };
  auto query0 = [&](int i) { return span.query0(i); };

  float dk[1][D / 8][4], dv[1][D / 8][4];
  zero<T, D>(dk);
  zero<T, D>(dv);
  cp_async_ring<C::kStages>(
      per_head * f.group,
      [&](int i, int slot) {
        const int h = head_of(i), q0 = query0(i);
        auto load_part = [&](int j, const void* src, long long off_h, long long stride_t) {
          part(slot, j).template load_rows<C::kThreads>(BN, [&](int r) -> const unsigned short* {
            const int q = q0 + r;
            return q < q_len ? static_cast<const unsigned short*>(src) + off_h + q * stride_t : nullptr;
          });
        };
        const long long q_off = sv.q0 + h * f.q_stride_h;
        load_part(0, f.q, q_off, f.q_stride_t);
        if (C::kProbe) load_part(1, f.r, q_off, f.q_stride_t);
        load_part(kDo, p.dout, sv.o0 + h * f.o_stride_h, f.o_stride_t);
        if (threadIdx.x < BN) {
          const int q = q0 + threadIdx.x;
          const bool live = q < q_len;
          const float* src = p.rows + (((long long)b * f.heads_q + h) * f.q_len + (live ? q : 0)) * 4;
          cp_async_16(terms(slot) + threadIdx.x * 16, src, live);
        }
      },
      [&](int i, int slot) {
        const int q0 = query0(i);
        if (!warp_live || q0 >= qb_w || q0 + BN <= qa_w) return;
        float s1[1][BN / 8][4], s2[1][BN / 8][4], a[1][BN / 8][4];
        if (C::kProbe) scores_pair<T, BN, D, true>(s1, s2, mine(0), mine(0), part(slot, 0), part(slot, 1));
        else scores_one<T, BN, D>(s1, mine(0), part(slot, 0));
        scores_one<T, BN, D>(a, mine(1), part(slot, kDo));
        // Every (key, query) of the warp's 16 keys x this tile visible: the first query's
        // range ends past the warp's last key and the last query's starts before its first
        // (ranges move monotonically with the query).
        bool all = q0 + BN <= q_len;
        if (all) {
          const RowRange first = visible_keys<C::kCausal, C::kWindow>(L, q_len, q0, f.window);
          const RowRange last = visible_keys<C::kCausal, C::kWindow>(L, q_len, q0 + BN - 1, f.window);
          all = last.lo <= kw0 && kw1 < first.hi;
        }
        auto score = [&](int j, int n, int e) -> float& { return j == 0 ? s1[0][n][e] : j == 1 ? s2[0][n][e] : a[0][n][e]; };
        if (all) dkv_grad_terms<C, BN, false>(p, terms(slot), q0, key_of, L, q_len, score);
        else dkv_grad_terms<C, BN, true>(p, terms(slot), q0, key_of, L, q_len, score);
        accumulate_pv<T, 1, BN, D>(dv, a, part(slot, kDo), 0);
        accumulate_pv<T, 1, BN, D>(dk, s1, part(slot, 0), 0);
        if (C::kProbe) accumulate_pv<T, 1, BN, D>(dk, s2, part(slot, 1), 0);
      });

  auto out_row = [&](void* base_ptr) {
    return [&, base_ptr](int i) -> T* {
      const int key = kw0 + i;  // every stored key of the sequence: zero past L
      return key < sv.kv_len ? static_cast<T*>(base_ptr) + kv_off + key * f.k_stride_t : nullptr;
    };
  };
  store_rows<T, D>(dk, 1.f, out_row(p.dk));
  store_rows<T, D>(dv, 1.f, out_row(p.dv));
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) backward_kernel(const BwdParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int b = blockIdx.y, x = blockIdx.x;
  if (x < p.kv_ctas) {
    bwd_dkv_role<C>(p, smem, b, x % p.f.heads_kv, x / p.f.heads_kv);
  } else {
    const int y = x - p.kv_ctas;
    bwd_dq_role<C>(p, smem, b, y % p.f.heads_q, p.q_tiles - 1 - y / p.f.heads_q);
  }
}

}  // namespace plx
