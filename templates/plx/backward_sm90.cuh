// Backward on Hopper (sm_90a): the gradients of parallax-math.md 4.2 with wgmma; by default
// no atomics (the opt-in reduced form, "Reduced form" below, reduces dQ/dR at the L2).
// The engine's backward on sm_90a (runtime/backward.cpp, wgmma_backward_variant). On the
// H200 (2026-11-29, docs/PERFORMANCE.md) it runs the d 128 parallax backward of 1 x 16384
// x 16 heads in 10.8 ms under ncu (564 TFLOP/s counting 22 D per pair, 57.6% tensor-pipe
// cycles, shared-memory wavefronts 67% of peak), 1.9x the mma.sync kernel.
//
// ---- Structure: two CTA roles, recompute, no atomics --------------------------------
// As backward.cuh (mma.sync): one grid with two kinds of CTA,
//   blockIdx.x < kv_ctas : dK/dV of BM keys of one kv head, streaming the (q, r, dO, row
//                          terms) tiles of every q head of its GQA group (group sum in
//                          registers);
//   otherwise            : dQ/dR of BM query rows of one q head, streaming (K, V) tiles.
// Both roles recompute S1, S2 and A, so a visible pair costs 11 GEMM-products of 2D FLOPs
// (the 22 D FLOPs the benchmarks count): dQ/dR role 3 scores + dQ + dR = 5, dK/dV role
// 3 scores + dV + 2 for dK = 6. The alternative, one dK/dV pass that also adds dQ/dR with
// fp32 atomics (FlashAttention-3's way: 3 + 1 + 2 + 2 = 8 products, 16 D FLOPs), does 27%
// fewer FLOPs but needs an fp32 dQ/dR workspace (2 x batch x heads_q x q_len x D x 4 B,
// zeroed), 2 x BN x D fp32 reductions per (key tile, query tile) step, a conversion kernel,
// and is non-deterministic. This kernel keeps the two roles because it reuses the
// preprocess, plan, launch and oracle tests unchanged and is deterministic. If the two
// roles top out, the atomic dK/dV-only form is the next step (see "Atomic form" below).
//
// ---- Warp specialisation (as prefill_sm90.cuh) ---------------------------------------
// Warpgroup 0 is the producer: cp.async of the streamed tiles into a ring of STAGES slots
// (128-byte swizzle, sm90::Sw128Tile), one full and one empty mbarrier per slot. Warpgroups
// 1..kConsumers are consumers, each owning an m64 tile of the CTA's BM = 64 x kConsumers
// own rows (queries in the dQ/dR role, keys in the dK/dV role). The own tiles (q, r, dO or
// K, V) are copied by all threads before the roles split (cp.async, wait, fence.proxy.async,
// __syncthreads; not overlapped with anything: a tuning item). setmaxnreg: producer 40,
// consumers 232 (2 consumers) or 152 (3); one consumer keeps 255 with no reallocation.
//
// ---- wgmma products per streamed tile (m64 = the consumer's own rows) ----------------
// dQ/dR role (own = 64 queries, partner = BN keys):
//   S1 = Q K^T, S2 = R K^T, A = dO V^T : ss, m64 nBN k16 x D/16; A operand = own Q/R/dO
//                                       tile (K-major: d contiguous), B = K/V slot tile
//                                       (K-major: d contiguous)
//   grad_terms (backward.cuh) element by element: GL, GU (C layout, rows = queries)
//   dQ += GL K, dR += GU K             : rs, m64 nD k16 x BN/16; A = GL/GU packed to T in
//                                       registers (the C layout of 16 keys is the A layout),
//                                       B = the same K slot tile read MN-major (keys = the
//                                       reduction, rows; d = N, contiguous), as V in the
//                                       forward's O += P V
// dK/dV role (own = 64 keys, partner = BN queries of one q head):
//   [S1^T | S2^T] = K [q; r]^T         : ss, m64 n(2 BN); A = own K (K-major), B = the
//                                       slot's stacked [q; r] tile (K-major), so K is read
//                                       from shared memory once for both score tiles
//   A^T = V dO^T                       : ss, m64 nBN; A = own V, B = the dO slot tile
//   grad_terms with rows = keys, columns = queries (the row terms lse, bart, t, b are per
//   column: read from the slot's term buffer in shared memory, as backward.cuh does)
//   dV += W^T dO, dK += [c GL^T | GU^T] [q; r] : rs, m64 nD; A = W^T and the stacked
//                                       c GL^T, GU^T from the registers (already key-major:
//                                       no transpose), B = the dO and [q; r] slot tiles
//                                       read MN-major (k = 2 BN for dK)
// So no operand is ever transposed in registers: the transposed score tile each gradient
// needs is produced directly by choosing which side owns the rows (keys own the rows in
// the dK/dV role, as in the mma.sync kernel), and the shared-memory tiles serve both
// orientations through the K-major and MN-major descriptors of one 128B-swizzled layout.
//
// ---- Registers per consumer thread ----------------------------------------------------
// Accumulators: two m64 x D fp32 tiles (dQ + dR, or dK + dV) = 2 x 64 x D / 128 = D
// floats. Score tiles S1, S2, A (two for softmax) of m64 x BN = BN / 2 floats each, all
// live at grad_terms. Packed GL/GU/W: BN / 4 registers each (the floats die first).
// Plus ~40 for descriptors, row terms, masks and addresses:
//   parallax d 128 BN 32: 128 + 48 + 40 = 216 <= 232 (2 consumers)    <- the d 128 variants
//   parallax d 128 BN 64: 128 + 96 + 40 = 264  > 232 (refused)
//   softmax  d 128 BN 64: 128 + 64 + 40 = 232 <= 232 (borderline)
//   parallax d 64  BN 64:  64 + 96 + 40 = 200 <= 232
// Measured (NVRTC 13, ptxas sm_90a, bf16 causal): every 2-consumer variant reports the
// launch's 168 registers and 0 spill / 0 stack (consumers run under setmaxnreg 232, which
// ptxas honours after the setmaxnreg.inc). One consumer (warps 8, no reallocation, 255)
// shows what a consumer really takes: parallax d 128 BN 32: 238, softmax d 128 BN 32: 201,
// softmax d 128 BN 64: 241, parallax d 64 BN 64: 254, softmax d 64 BN 64: 179; softmax d 64
// BN 128 spills (276 B; 844 B with two consumers), so BN 128 is refused.
// Hence wgmma_ss gains an n32 shape (wgmma.cuh).
//
// ---- Where the time goes (ncu, H200, parallax d 128 bf16 causal, 1 x 16384) ------------
// Run 20 (first version): 12.7 ms, tensor pipe 49%, and 38% of all issued instructions
// were descriptor arithmetic around the n32 score wgmmas (~10 per wgmma, with two R2UR
// each because the consumer index came from threadIdx), 22% the producer's per-row copy
// path. Fixed by sm90::desc_at (one add per k-step), per_consumer (the consumer index is
// a template constant, so descriptors stay in uniform registers) and Sw128Tile::copy_rows.
// Run 22: 10.8 ms, tensor pipe 57.6%, shared-memory wavefronts 67% of peak; the producer
// waits on `empty` (the ring is ahead), the consumers on their own wgmma groups. What is
// left is structural: an m64n32k16 score wgmma reads A (2 KB) + B (1 KB) from shared
// memory per 65.5K FLOP, ~1.5x what shared memory delivers at the tensor rate, and three
// of the five (dQ/dR) or six (dK/dV) products are such score products. At d 64 block_n 64
// balances the two (backward 1.9x mma.sync, 2 x 8192 x 32 heads). Ways further at d 128:
// score tiles split across the two consumers with S/dS through shared memory (FA3), or
// the atomic form, whose dK/dV role could afford block_n 64.
//
// ---- Shared memory (BM 128 = 2 consumers) ----------------------------------------------
//   dQ/dR: own q, r, dO 3 x 128 x D x 2 B + STAGES x (K + V) x BN x D x 2 B
//   dK/dV: own K, V 2 x 128 x D x 2 B + STAGES x (([q; r], dO) x BN x D x 2 B + BN x 16 B)
//   + 1024 B alignment slack + 2 x STAGES mbarriers; the larger role sizes the launch.
//   d 128 BN 32 stages 2: max(98304 + 32768, 65536 + 50176) + 1024 + 32 = 132128 B;
//   stages 4 fits too (<= 227 KB): 1024 + 165888 + 64 = 166976 B.
//
// ---- Synchronisation ------------------------------------------------------------------
// Slot s: full[s] completes when the producer's 128 threads arrived and their cp.async
// copies landed (cp.async.mbarrier.arrive); consumers then fence.proxy.async (generic
// -> async proxy for the wgmma reads) before the first wgmma. empty[s] takes one arrival
// per consumer warp after that warp's wgmma_wait<0> for the tile's accumulation batch,
// i.e. after every wgmma of that warpgroup that reads the slot completed (the arrival
// count is 4 x kConsumers, so the producer overwrites the slot only when all warps of all
// consumers are done). Each tile's whole wgmma sequence (both batches, their commits and
// waits) sits inside one warpgroup-uniform branch (ptxas C7518 otherwise). wgmma_fence
// precedes each batch (the A registers and accumulators were last written by ordinary
// instructions: grad_terms, pack, zero-init).
//
// ---- Reduced form (mma wgmma-red; bwd_red_consume) --------------------------------------
// dQ/dR added per (key tile, query tile) from the dK/dV role: dQ += GL K needs GL with
// rows = queries, the transpose of the register tile there, so it is computed as
// [dQ^T | dR^T] = K^T [c GL^T | GU^T] (rows = d, one 64-wide half per consumer) with the
// score tile staged to shared memory, then reduced into an fp32 workspace at the L2
// (cp.reduce.async.bulk). H200, parallax d 128, 1 x 16384 (runs 32-33, fifth session): the
// pass without its reductions takes 8.9 ms (the two-role default 11.2); the 17 GB of
// reductions bring it to 11.3 ms (13.5 with one 256-byte request per row). Not shipped.
#pragma once
#include "plx/backward.cuh"
#include "plx/mbarrier.cuh"
#include "plx/smem_layout_sm90.cuh"
#include "plx/wgmma.cuh"

namespace plx {

template <Family F, class T, int D, int BM, int BN, int WARPS, int STAGES, bool CAUSAL, bool WINDOW,
          bool PIPELINED = false, bool PINGPONG = false, bool RED = false>
struct BackwardSm90Config {
  using Elem = T;
  static constexpr Family kFamily = F;
  static constexpr bool kProbe = F != Family::softmax;
  static constexpr int kD = D, kBM = BM, kBN = BN, kStages = STAGES;
  static constexpr bool kCausal = CAUSAL, kWindow = WINDOW;
  static constexpr bool kPipelined = PIPELINED;  // mma wgmma-pipe: see bwd_consume
  static constexpr bool kPingPong = PINGPONG;     // mma wgmma-pp: consumers take issue turns
  static_assert(!(PIPELINED && PINGPONG), "the pipelined loop takes no turns (generator/legality_backward.cpp)");
  // mma wgmma-red: dK/dV CTAs only, each also reducing its dQ/dR share into BwdParams::accum.
  static constexpr bool kRed = RED;
  static_assert(!RED || (!PIPELINED && !PINGPONG && F != Family::softmax && D == 128 && BM == 128 && BN == 32),
                "the reduced form's shapes (generator/legality_backward.cpp)");
  static constexpr unsigned kRedBar = 3;    // both consumers: the [c GL^T | GU^T] tile is whole
  static constexpr unsigned kStageBar = 4;  // + consumer: its fp32 staging tile is whole
  static_assert(!PINGPONG || BM >= 128, "ping-pong needs a second consumer to hand turns to");
  static constexpr unsigned kTurnBar = 1;  // named barriers kTurnBar + c: consumer c's turn
  static constexpr int kThreads = WARPS * 32;
  static constexpr int kConsumers = BM / 64;
  static_assert(kConsumers * 64 == BM && kConsumers >= 1 && kConsumers <= 3, "see generator/legality_backward.cpp");
  static_assert(WARPS == 4 * (kConsumers + 1), "one producer warpgroup + the consumers");
  static_assert((BN == 32 || BN == 64) && (D == 64 || D == 128), "wgmma.cuh shapes (n128 score tiles spill)");
  static_assert(STAGES >= 2, "one slot filling while another is consumed");
  static constexpr int kQSide = kProbe ? 3 : 2;  // q, (r), dO
  using OwnTile = sm90::Sw128Tile<BM, D>;
  using PartTile = sm90::Sw128Tile<BN, D>;
  static constexpr int kTermBytes = BN * 16;
  static constexpr int kAlignSlack = 1024;
  // dQ/dR: own q, (r), dO; per slot K then V.
  static constexpr int kDqBody = kQSide * OwnTile::kBytes + STAGES * 2 * PartTile::kBytes;
  // dK/dV: own K, V; per slot q, (r), dO; then every slot's row terms (kept after the tiles
  // so each tile stays 1024-aligned).
  // wgmma-red adds, after the slots: two [c GL^T | GU^T] tiles (BM keys x 2 BN columns,
  // 1024-aligned like the slots), then the row terms, then per consumer an fp32 staging
  // tile of 2 BN rows (dQ then dR queries) x 64 d, rows padded to 68 floats so the
  // fragment stores hit 32 distinct banks.
  static constexpr int kDsBytes = RED ? BM * 2 * BN * 2 : 0;
  static constexpr int kStageRow = 64 * 4;  // 64 fp32 d, XOR-swizzled (red_slot)
  static constexpr int kStageBytes = RED ? 2 * BN * kStageRow : 0;
  static constexpr int kKvBody = 2 * OwnTile::kBytes + STAGES * (kQSide * PartTile::kBytes + kTermBytes) +
                                 2 * kDsBytes + kConsumers * kStageBytes;
  static constexpr int kBody = RED || kKvBody > kDqBody ? kKvBody : kDqBody;
  static constexpr int kBarrierBytes = STAGES * 2 * 8;
  static constexpr int kSmemBytes = kAlignSlack + kBody + kBarrierBytes;
  // wgmma-red's consumers hold 32 dQ/dR accumulators on top: 32 + 2 x 240 per 128 threads
  // = 512 registers per lane-slot (232 spilled 64 B, ptxas NVRTC 13).
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = kConsumers == 3 ? 152 : 232;
};

// The ring's barriers: full[s] (128 producer arrivals + their copies), empty[s] (one
// arrival per consumer warp).
template <class C>
struct BwdRing {
  unsigned bars;
  __device__ __forceinline__ unsigned full(int s) const { return bars + 8u * unsigned(s); }
  __device__ __forceinline__ unsigned empty(int s) const { return bars + 8u * unsigned(C::kStages + s); }
  __device__ __forceinline__ void init() const {
    if (threadIdx.x == 0) {
#pragma unroll
      for (int s = 0; s < C::kStages; ++s) {
        sm90::mbar_init(full(s), 128);
        sm90::mbar_init(empty(s), 4 * C::kConsumers);
      }
      sm90::mbar_init_fence();
    }
  }
  static __device__ __forceinline__ int slot(int i) { return i % C::kStages; }
  static __device__ __forceinline__ unsigned parity(int i) { return unsigned(i / C::kStages) & 1u; }
};

// The C layout of 16 partner columns (two n8 blocks) is the A-register layout of a k16
// step (prefill_sm90.cuh's pack_p).
template <class T, int BN>
__device__ __forceinline__ void pack_a(const float (&sc)[BN / 8][4], unsigned (&pa)[BN / 16][4]) {
#pragma unroll
  for (int ks = 0; ks < BN / 16; ++ks) {
    pa[ks][0] = pack2<T>(sc[2 * ks][0], sc[2 * ks][1]);
    pa[ks][1] = pack2<T>(sc[2 * ks][2], sc[2 * ks][3]);
    pa[ks][2] = pack2<T>(sc[2 * ks + 1][0], sc[2 * ks + 1][1]);
    pa[ks][3] = pack2<T>(sc[2 * ks + 1][2], sc[2 * ks + 1][3]);
  }
}

// d = X Y^T over D: X the own tile's m64 slice at row0, Y a slot tile (both K-major).
template <class T, int BN, int D, class Own, class Part>
__device__ __forceinline__ void issue_scores(float (&d)[BN / 8][4], Own x, int row0, Part y) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) sm90::wgmma_ss<T, BN>(d, x.kmajor_desc(row0, kk), y.kmajor_desc(0, kk), kk > 0);
}

// acc += P Y over the BN rows of the slot tile Y (MN-major), P packed in registers.
template <class T, int BN, int D, class Part>
__device__ __forceinline__ void issue_accumulate(float (&acc)[D / 8][4], const unsigned (&pa)[BN / 16][4], Part y) {
#pragma unroll
  for (int ks = 0; ks < BN / 16; ++ks) sm90::wgmma_rs<T, D>(acc, pa[ks], y.mnmajor_desc(ks));
}

// Runs body(Index<w>{}) for consumer warpgroup w (= warpgroup - 1) with w a compile-time
// constant. The own tile's row offset 64 w then folds into the wgmma descriptors, which
// stay in uniform registers; with w derived from threadIdx ptxas built every A descriptor
// in vector registers and moved it over with two R2UR per wgmma (SASS, 2026-11-29).
template <int N> struct Index { static constexpr int value = N; };
template <int kConsumers, class Body>
__device__ __forceinline__ void per_consumer(int w, Body body) {
  if (w == 0) {
    body(Index<0>{});
  } else if constexpr (kConsumers > 1) {
    if (w == 1) body(Index<1>{});
    else if constexpr (kConsumers > 2) body(Index<2>{});
  }
}

__device__ __forceinline__ void bwd_release(const unsigned bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) sm90::mbar_arrive(bar);
}

// One consumer warpgroup's walk over the ring's n tiles. The caller's lambdas:
//   scores(s)     issue the score wgmmas of slot s and commit them (one group),
//   terms(i, s)   after they landed: grad_terms and the packed A operands,
//   accumulate(s) issue the accumulation wgmmas of slot s and commit them (one group),
//   landed()      fence the accumulators after their group completed,
//   live(i)       plain loop only: does tile i touch the warpgroup's rows at all.
// Plain (mma wgmma): per tile scores, wait, terms, accumulation, wait, release; the other
// consumer fills the tensor cores while this one waits or computes terms.
// Pipelined (mma wgmma-pipe): the accumulation of tile i - 1 and the scores of tile i are
// issued back to back, so the tensor cores run them without the round trip (wait,
// release, ring wait, issue) between them; the terms of tile i start once both landed.
// The packed operands of tile i - 1 stay untouched until its group completed (wait<1>).
// Every tile of the CTA's span is computed (masked where needed): a hole would put an
// issue and its wait in different branches, and ptxas then serialises every wgmma of the
// kernel (C7518).
template <class C, bool kPipelined, class Live, class Scores, class Terms, class Accumulate, class Landed>
__device__ __forceinline__ void bwd_consume(int cw, const BwdRing<C>& rg, int n_tiles, bool wg_live, Live live,
                                            Scores scores, Terms terms, Accumulate accumulate, Landed landed) {
  if constexpr (!kPipelined) {
    // Ping-pong (mma wgmma-pp): each issue batch is a turn, a bar.sync of 256 threads (this
    // warpgroup's 128 plus the 128 arrivals of the other consumer passing the turn on), so
    // the tensor cores see S0 S1 A0 A1 S0' ...: one consumer's terms overlap the other's
    // wgmmas. Without turns the consumers, fed by the same slot, tend to run in step and
    // compute their terms at the same time while the tensor cores idle. Every consumer
    // takes two turns per tile, live or not; the last consumer opens the first turn.
    auto turn_begin = [&] {
      if constexpr (C::kPingPong) sm90::named_barrier_sync(C::kTurnBar + cw, 256);
    };
    auto turn_end = [&] {
      if constexpr (C::kPingPong) sm90::named_barrier_arrive(C::kTurnBar + (cw + 1) % C::kConsumers, 256);
    };
    if (C::kPingPong && cw == C::kConsumers - 1) sm90::named_barrier_arrive(C::kTurnBar, 256);
    for (int i = 0; i < n_tiles; ++i) {
      const int s = rg.slot(i);
      sm90::mbar_wait(rg.full(s), rg.parity(i));
      if (wg_live && live(i)) {  // uniform over the warpgroup
        turn_begin();
        scores(s);
        turn_end();
        sm90::wgmma_wait<0>();
        terms(i, s);
        turn_begin();
        accumulate(s);
        turn_end();
        sm90::wgmma_wait<0>();
        landed();
      } else {
        turn_begin();
        turn_end();
        turn_begin();
        turn_end();
      }
      bwd_release(rg.empty(s));
    }
  } else if (!wg_live) {  // no row of this warpgroup is live: only keep the ring turning
    for (int i = 0; i < n_tiles; ++i) {
      sm90::mbar_wait(rg.full(rg.slot(i)), rg.parity(i));
      bwd_release(rg.empty(rg.slot(i)));
    }
  } else if (n_tiles > 0) {
    sm90::mbar_wait(rg.full(rg.slot(0)), rg.parity(0));
    scores(rg.slot(0));
    sm90::wgmma_wait<0>();
    terms(0, rg.slot(0));
    for (int i = 1; i < n_tiles; ++i) {
      const int s = rg.slot(i), prev = rg.slot(i - 1);
      sm90::mbar_wait(rg.full(s), rg.parity(i));
      accumulate(prev);
      scores(s);
      sm90::wgmma_wait<1>();
      landed();
      bwd_release(rg.empty(prev));
      sm90::wgmma_wait<0>();
      terms(i, s);
    }
    accumulate(rg.slot(n_tiles - 1));
    sm90::wgmma_wait<0>();
    landed();
    bwd_release(rg.empty(rg.slot(n_tiles - 1)));
  }
}

// ---- dQ and dR of BM query rows of q head h -------------------------------------------
template <class C>
__device__ __forceinline__ void bwd_sm90_dq_role(const BwdParams& p, unsigned base, int b, int h, int tile) {
  using T = typename C::Elem;
  using Own = typename C::OwnTile;
  using Part = typename C::PartTile;
  constexpr int D = C::kD, BM = C::kBM, BN = C::kBN, kDo = C::kQSide - 1;
  const AttnParams& f = p.f;
  const SeqView sv = seq_view(f, b);
  const int L = sv.L, q_len = sv.q_len;
  const int row0 = tile * BM;
  // Varlen: the grid covers the longest sequence; a tile past this one's queries has no
  // row to write. Every thread of the CTA computes the same condition and leaves here,
  // before the ring's barriers exist and before any __syncthreads: no role waits on them.
  if (row0 >= q_len) return;
  auto own = [&](int i) { return Own{base + unsigned(i * Own::kBytes)}; };
  const unsigned ring = base + unsigned(C::kQSide * Own::kBytes);
  auto kt = [&](int s) { return Part{ring + unsigned(2 * s * Part::kBytes)}; };
  auto vt = [&](int s) { return Part{ring + unsigned((2 * s + 1) * Part::kBytes)}; };
  const BwdRing<C> rg{base + unsigned(C::kBody)};

  const long long q_off = sv.q0 + h * f.q_stride_h;
  const long long o_off = sv.o0 + h * f.o_stride_h;
  auto load_own = [&](int i, const void* src, long long off, long long stride_t) {
    own(i).template load_rows<C::kThreads>(int(threadIdx.x), BM, [&](int r) -> const unsigned short* {
      const int pos = row0 + r;
      return pos < q_len ? static_cast<const unsigned short*>(src) + off + (long long)pos * stride_t : nullptr;
    });
  };
  load_own(0, f.q, q_off, f.q_stride_t);
  if (C::kProbe) load_own(1, f.r, q_off, f.q_stride_t);
  load_own(kDo, p.dout, o_off, f.o_stride_t);
  cp_async_commit();
  rg.init();
  cp_async_wait<0>();
  sm90::fence_proxy_async();
  __syncthreads();

  // Producer and consumers walk the same n_tiles (>= 0: cta_last >= row0 after the exit
  // above, so the span is never negative).
  const int cta_last = min(row0 + BM, q_len) - 1;
  const BlockKeys cta_keys = block_keys<C::kCausal, C::kWindow>(L, q_len, row0, cta_last, f.window);
  const int n_tiles = (cta_keys.any.hi - cta_keys.any.lo + BN - 1) / BN;
  const int wg = threadIdx.x / 128;

  if (wg == 0) {
    // ------------------------------------------------------------------ producer
    if constexpr (C::kConsumers > 1) sm90::regs_dealloc<C::kProducerRegs>();
    const int tid = threadIdx.x;
    const long long kv_off = sv.k0 + (h / f.group) * f.k_stride_h;
    const unsigned short* kg = static_cast<const unsigned short*>(f.k) + kv_off;
    const unsigned short* vg = static_cast<const unsigned short*>(f.v) + kv_off;
    for (int i = 0; i < n_tiles; ++i) {
      const int s = rg.slot(i), key0 = cta_keys.any.lo + i * BN;
      sm90::mbar_wait(rg.empty(s), rg.parity(i) ^ 1);
      if (key0 + BN <= L) {
        kt(s).template copy_rows<128>(tid, kg + (long long)key0 * f.k_stride_t, f.k_stride_t);
        vt(s).template copy_rows<128>(tid, vg + (long long)key0 * f.k_stride_t, f.k_stride_t);
      } else {
        kt(s).template load_rows<128>(tid, BN, [&](int r) -> const unsigned short* {
          return key0 + r < L ? kg + (long long)(key0 + r) * f.k_stride_t : nullptr;
        });
        vt(s).template load_rows<128>(tid, BN, [&](int r) -> const unsigned short* {
          return key0 + r < L ? vg + (long long)(key0 + r) * f.k_stride_t : nullptr;
        });
      }
      sm90::mbar_arrive_cp_async(rg.full(s));
      sm90::mbar_arrive(rg.full(s));
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    return;
  }

  // -------------------------------------------------------------------- consumers
  if constexpr (C::kConsumers > 1) sm90::regs_alloc<C::kConsumerRegs>();
  per_consumer<C::kConsumers>(wg - 1, [&](auto cw_c) {
    constexpr int cw = decltype(cw_c)::value;
    const int ctid = threadIdx.x - 128 * (cw + 1);
    const int warp = ctid >> 5, lane = ctid & 31, g = lane >> 2, t4 = lane & 3;
    const int wg_first = row0 + 64 * cw;
    const int warp_first = wg_first + 16 * warp;
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
    const bool wg_live = wg_first < q_len;
    const int wg_last = min(wg_first + 64, q_len) - 1;
    const BlockKeys wg_keys = block_keys<C::kCausal, C::kWindow>(L, q_len, wg_first, max(wg_last, wg_first), f.window);

    float dq[1][D / 8][4], dr[1][D / 8][4];
    zero<T, D>(dq);
    zero<T, D>(dr);
    float s1[BN / 8][4], s2[BN / 8][4], a[BN / 8][4];
    unsigned pl[BN / 16][4], pu[BN / 16][4];
    auto key_of = [&](int i) { return cta_keys.any.lo + i * BN; };
    auto scores = [&](int s) {
      sm90::fence_proxy_async();
      sm90::wgmma_fence();
      issue_scores<T, BN, D>(s1, own(0), 64 * cw, kt(s));
      if constexpr (C::kProbe) issue_scores<T, BN, D>(s2, own(1), 64 * cw, kt(s));
      issue_scores<T, BN, D>(a, own(kDo), 64 * cw, vt(s));
      sm90::wgmma_commit();
    };
    auto terms = [&](int i, int) {
      sm90::fence_regs(s1);
      if constexpr (C::kProbe) sm90::fence_regs(s2);
      sm90::fence_regs(a);
      const int key0 = key_of(i);
      auto combine = [&](auto masked) {
  #pragma unroll
        for (int n = 0; n < BN / 8; ++n)
  #pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = e >> 1, key = key0 + n * 8 + 2 * t4 + (e & 1);
            const bool vis = !decltype(masked)::value || (key >= rr[r].lo && key < rr[r].hi);
            float gl, gu, w;
            grad_terms<C::kFamily>(s1[n][e], C::kProbe ? s2[n][e] : 0.f, a[n][e], rt[r], f.scale_log2, vis, gl, gu, w);
            s1[n][e] = gl;
            if (C::kProbe) s2[n][e] = gu;
          }
      };
      if (span_needs_mask(wg_keys, key0, BN)) combine(Flag<true>{});
      else combine(Flag<false>{});
      pack_a<T, BN>(s1, pl);
      if constexpr (C::kProbe) pack_a<T, BN>(s2, pu);
    };
    auto accumulate = [&](int s) {
      sm90::wgmma_fence();
      issue_accumulate<T, BN, D>(dq[0], pl, kt(s));
      if constexpr (C::kProbe) issue_accumulate<T, BN, D>(dr[0], pu, kt(s));
      sm90::wgmma_commit();
    };
    auto landed = [&] {
      sm90::fence_regs(dq[0]);
      if constexpr (C::kProbe) sm90::fence_regs(dr[0]);
    };
    bwd_consume<C, C::kPipelined>(
        cw, rg, n_tiles, wg_live, [&](int i) { return !span_is_dead(wg_keys, key_of(i), BN); }, scores, terms, accumulate,
        landed);

    auto out_row = [&](void* base_ptr) {
      return [&, base_ptr](int i) -> T* {
        const int pos = warp_first + i;
        return pos < q_len ? static_cast<T*>(base_ptr) + q_off + (long long)pos * f.q_stride_t : nullptr;
      };
    };
    store_rows<T, D>(dq, p.scale, out_row(p.dq));
    if (C::kProbe) store_rows<T, D>(dr, 1.f, out_row(p.dr));
  });
}

// ---- Reduced dQ/dR (mma wgmma-red): the dK/dV pass also yields dQ and dR ----------------
// One consumer's walk over the ring in the reduced form. Per tile, after the usual scores,
// terms and the dV/dK accumulation (issued, not yet waited):
//   1. the consumer's [c GL^T | GU^T] (its 64 keys x 2 BN queries, already packed as the A
//      fragments p12) goes to rows 64 cw .. of a shared tile Ds (keys x 2 BN, MN-major B);
//      two such tiles alternate, so a tile is rewritten only after the barrier of the next
//      tile, by which time both consumers' wgmmas on it completed;
//   2. a 256-thread barrier: Ds holds both consumers' keys;
//   3. [dQ^T | dR^T] (d rows 64 cw .. 64 cw + 63, 2 BN query columns) = K^T Ds over all BM
//      keys: 8 m64 n64 k16 wgmmas, A = the own K tile read MN-major (d as M), B = Ds;
//   4. the fp32 result goes to the consumer's staging tile (rows = dQ then dR queries, 64 d
//      each), a 128-thread barrier, then one thread adds it to BwdParams::accum with two
//      cp.reduce.async.bulk requests of up to 8 KB (the L2 performs the adds). accum is laid
//      out [dQ, dR][batch][heads_q][d half][q_len][64] so a tile's rows of one d half are
//      contiguous: with one 256-byte request per row (run 32) the reductions cost 4.6 of
//      13.5 ms at 1 x 16384. The thread waits for the reads of the previous tile's requests
//      before step 2, so the staging tile is free after it.
// Every tile is computed by both consumers (masked terms are zero), live or not: the
// barriers need both every time.

// Where d (0..63) of query q sits in a 64-float accumulator row (shared staging and
// BwdParams::accum alike, so one bulk request moves whole tiles): 8-float chunks XORed with
// (q >> 1) & 3. The staging stores of a warp (q = q0 + 2 t4 + c, d = g + const) then hit
// 32 distinct banks for any q0; unswizzled, the four t4 lanes of a g collide. A function of
// the query alone, since every key tile adds into the same rows; bwd_post_kernel undoes it.
__device__ __forceinline__ int red_slot(int q, int d) { return d ^ (((q >> 1) & 3) << 3); }

template <class C, int cw, class TileRegs, class Own, class HeadOf, class Query0, class Scores, class Terms,
          class Accumulate>
__device__ __forceinline__ void bwd_red_consume(const BwdParams& p, int b, int q_len, const BwdRing<C>& rg, int n_tiles,
                                                Own k_own, HeadOf head_of, Query0 query0, Scores scores, Terms terms,
                                                Accumulate accumulate,
                                                float (&dk)[1][C::kD / 8][4], float (&dv)[1][C::kD / 8][4]) {
  using T = typename C::Elem;
  constexpr int BM = C::kBM, BN = C::kBN, NQ = 2 * BN, D = C::kD;
  using DsTile = sm90::Sw128Tile<BM, NQ>;
  const AttnParams& f = p.f;
  const int ctid = threadIdx.x - 128 * (cw + 1);
  const int warp = ctid >> 5, lane = ctid & 31, g = lane >> 2, t4 = lane & 3;
  // bwd_sm90_dkv_role's layout, from the own K tile's base (the smem base: kept in a
  // register anyway), so no extra address lives across the role split.
  const unsigned ds_at = k_own.base + unsigned(2 * Own::kBytes + C::kStages * C::kQSide * C::PartTile::kBytes);
  const unsigned stage = ds_at + unsigned(2 * C::kDsBytes + C::kStages * C::kTermBytes + cw * C::kStageBytes);
  const long long plane = (long long)f.batch * f.heads_q * f.q_len * D;  // dR's offset in accum
  for (int i = 0; i < n_tiles; ++i) {
    // Declared per tile: the first wgmma overwrites it (scale-d 0), and an uninitialised
    // "+f" operand carries nothing over from the previous tile, so the 32 registers are
    // not live through the scores and terms (declared outside the loop, ptxas kept them
    // live and spilled).
    float dqr[NQ / 8][4];
    TileRegs r;
    const int s = rg.slot(i);
    sm90::mbar_wait(rg.full(s), rg.parity(i));
    scores(r, s);
    sm90::wgmma_wait<0>();
    terms(r, i, s);
    accumulate(r, s);  // dV, dK: wgmma_fence, issue, commit; runs while Ds is written
    const DsTile ds{ds_at + unsigned((i & 1) * DsTile::kBytes)};
    const int row = 64 * cw + 16 * warp + g;
#pragma unroll
    for (int ks = 0; ks < NQ / 16; ++ks) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // p12[ks][j]: row + 8 (j & 1), columns 16 ks + 8 (j >> 1) + 2 t4
        const unsigned at = ds.chunk(row + 8 * (j & 1), 2 * ks + (j >> 1)) + unsigned(4 * t4);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(at), "r"(r.p12[ks][j]) : "memory");
      }
    }
    sm90::fence_proxy_async();
    if (ctid == 0) sm90::bulk_wait_read0();
    sm90::named_barrier_sync(C::kRedBar, 256);
    // The packed operands die with the dV/dK group, before the 32 dQ/dR accumulators are
    // born: issuing both groups together spilled 224 B (ptxas, NVRTC 13).
    sm90::wgmma_wait<0>();
    sm90::fence_regs(dk[0]);
    sm90::fence_regs(dv[0]);
    bwd_release(rg.empty(s));
    sm90::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < BM / 16; ++ks)
      sm90::wgmma_ss_mn<T>(dqr, sm90::desc_at(k_own.mnmajor_desc(ks), unsigned(cw * Own::kPanelBytes)),
                           ds.mnmajor_desc(ks), ks > 0);
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
    sm90::fence_regs(dqr);
    const int q0 = query0(i);  // the swizzle follows the query, not the tile row: tiles start anywhere
#pragma unroll
    for (int n = 0; n < NQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // (d = 16 warp + g + 8 (e >> 1), column 8 n + 2 t4 + (e & 1))
        const int col = 8 * n + 2 * t4 + (e & 1), d = 16 * warp + g + 8 * (e >> 1);
        const int slot = red_slot(q0 + col % BN, d);
        asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(stage + unsigned(col * C::kStageRow + slot * 4)),
                     "f"(dqr[n][e])
                     : "memory");
      }
    sm90::fence_proxy_async();
    sm90::named_barrier_sync(C::kStageBar + cw, 128);
    if (ctid == 0) {  // two requests: the tile's dQ rows, then its dR rows (the valid prefix)
      const int rows = min(BN, q_len - q0);
      const long long at = ((((long long)b * f.heads_q + head_of(i)) * 2 + cw) * f.q_len + q0) * 64;
      if (rows > 0) {
        sm90::bulk_reduce_add_f32(p.accum + at, stage, unsigned(rows * C::kStageRow));
        sm90::bulk_reduce_add_f32(p.accum + plane + at, stage + unsigned(BN * C::kStageRow), unsigned(rows * C::kStageRow));
        sm90::bulk_commit();
      }
    }
  }
  if (ctid == 0) sm90::bulk_wait0();
}

// ---- dK and dV of BM keys of kv head hkv, summed over its q heads ------------------------
template <class C>
__device__ __forceinline__ void bwd_sm90_dkv_role(const BwdParams& p, unsigned base, int b, int hkv, int tile) {
  using T = typename C::Elem;
  using Own = typename C::OwnTile;
  using Part = typename C::PartTile;
  constexpr int D = C::kD, BM = C::kBM, BN = C::kBN, S = C::kStages;
  const AttnParams& f = p.f;
  const SeqView sv = seq_view(f, b);
  const int L = sv.L, q_len = sv.q_len;
  const int key0 = tile * BM;
  // Varlen: a tile past this sequence's stored keys has no dK / dV row. Uniform over the
  // CTA and before the ring's barriers and any __syncthreads (as in the dQ/dR role). Keys
  // past L but stored (seqused_k) still get their zeros below.
  if (key0 >= sv.kv_len) return;
  const long long kv_off = sv.k0 + hkv * f.k_stride_h;
  auto own = [&](int i) { return Own{base + unsigned(i * Own::kBytes)}; };
  const unsigned ring = base + unsigned(2 * Own::kBytes);
  // A slot holds q and r stacked as one [q; r] tile of NQ = 2 BN rows (softmax: q alone,
  // NQ = BN), then dO. The stacked tile is the B operand of one m64 nNQ score wgmma that
  // yields S1^T and S2^T together (A = own K read once, not twice), and of one k = NQ
  // accumulation dK += [c GL^T | GU^T] [q; r].
  constexpr int NQ = C::kProbe ? 2 * BN : BN;
  using QrTile = sm90::Sw128Tile<NQ, D>;
  using QrHalf = sm90::Sw128Tile<BN, D, NQ>;  // the q (j = 0) or r (j = 1) rows of it
  auto slot_at = [&](int s) { return ring + unsigned(s * C::kQSide * Part::kBytes); };
  auto qr = [&](int s) { return QrTile{slot_at(s)}; };
  auto qr_half = [&](int s, int j) { return QrHalf{slot_at(s) + unsigned(j * BN * 128)}; };
  auto dot = [&](int s) { return Part{slot_at(s) + unsigned(QrTile::kBytes)}; };
  // wgmma-red keeps its two [c GL^T | GU^T] tiles between the slots and the row terms, and
  // its staging tiles after the terms (bwd_red_consume).
  auto terms_at = [&](int s) { return ring + unsigned(S * C::kQSide * Part::kBytes + 2 * C::kDsBytes + s * C::kTermBytes); };
  const BwdRing<C> rg{base + unsigned(C::kBody)};

  auto load_own = [&](int i, const void* src) {
    own(i).template load_rows<C::kThreads>(int(threadIdx.x), BM, [&](int r) -> const unsigned short* {
      const int key = key0 + r;
      return key < L ? static_cast<const unsigned short*>(src) + kv_off + (long long)key * f.k_stride_t : nullptr;
    });
  };
  load_own(0, f.k);
  load_own(1, f.v);
  cp_async_commit();
  rg.init();
  cp_async_wait<0>();
  sm90::fence_proxy_async();
  __syncthreads();

  // The queries the CTA's keys see (backward.cuh's DkvQueries); producer and consumers
  // agree on n_tiles (0 for keys past L or a sequence without queries: zeros are stored).
  const DkvQueries<C::kCausal, C::kWindow, BN> span(key0, BM, L, q_len, f.window);
  const int n_tiles = span.per_head * f.group;
  auto head_of = [&](int i) { return span.head_of(hkv, f.group, i); };
  auto query0 = [&](int i) { return span.query0(i); };
  const int wg = threadIdx.x / 128;

  if (wg == 0) {
    // ------------------------------------------------------------------ producer
    if constexpr (C::kConsumers > 1) sm90::regs_dealloc<C::kProducerRegs>();
    const int tid = threadIdx.x;
    for (int i = 0; i < n_tiles; ++i) {
      const int s = rg.slot(i), h = head_of(i), q0 = query0(i);
      sm90::mbar_wait(rg.empty(s), rg.parity(i) ^ 1);
      auto load_part = [&](auto tile, const void* src, long long off_h, long long stride_t) {
        const unsigned short* g = static_cast<const unsigned short*>(src) + off_h;
        if (q0 + BN <= q_len) {
          tile.template copy_rows<128>(tid, g + (long long)q0 * stride_t, stride_t);
          return;
        }
        tile.template load_rows<128>(tid, BN, [&](int r) -> const unsigned short* {
          return q0 + r < q_len ? g + (long long)(q0 + r) * stride_t : nullptr;
        });
      };
      const long long q_off = sv.q0 + h * f.q_stride_h;
      load_part(qr_half(s, 0), f.q, q_off, f.q_stride_t);
      if (C::kProbe) load_part(qr_half(s, 1), f.r, q_off, f.q_stride_t);
      load_part(dot(s), p.dout, sv.o0 + h * f.o_stride_h, f.o_stride_t);
      if (tid < BN) {
        const int q = q0 + tid;
        const bool live = q < q_len;
        const float* src = p.rows + (((long long)b * f.heads_q + h) * f.q_len + (live ? q : 0)) * 4;
        cp_async_16(terms_at(s) + unsigned(tid * 16), src, live);
      }
      sm90::mbar_arrive_cp_async(rg.full(s));
      sm90::mbar_arrive(rg.full(s));
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    return;
  }

  // -------------------------------------------------------------------- consumers
  if constexpr (C::kConsumers > 1) sm90::regs_alloc<C::kConsumerRegs>();
  per_consumer<C::kConsumers>(wg - 1, [&](auto cw_c) {
    constexpr int cw = decltype(cw_c)::value;
    const int ctid = threadIdx.x - 128 * (cw + 1);
    const int warp = ctid >> 5, lane = ctid & 31, g = lane >> 2, t4 = lane & 3;
    const int kw0 = key0 + 64 * cw, kw1 = kw0 + 63;  // the warpgroup's keys
    const bool wg_live = kw0 < L;
    const int qa_w = span.first(kw0), qb_w = wg_live ? span.end(min(kw1, L - 1)) : qa_w;
    const int warp_key = kw0 + 16 * warp;
    const int key_of[2] = {warp_key + g, warp_key + g + 8};

    float dk[1][D / 8][4], dv[1][D / 8][4];
    zero<T, D>(dk);
    zero<T, D>(dv);
    // s12: columns [0, BN) S1^T, [BN, 2 BN) S2^T (C layout: n8 block n + BN / 8 is the
    // r counterpart of block n); then c GL^T and GU^T in place.
    // The per-tile score and packed-operand registers. The reduced loop declares them per
    // tile (bwd_red_consume): a score tile's first wgmma overwrites it, so nothing is
    // carried between tiles and they are not live while dQ/dR is computed.
    struct TileRegs {
      float s12[NQ / 8][4], a[BN / 8][4];
      unsigned pw[BN / 16][4], p12[NQ / 16][4];
    };
    auto scores_into = [&](auto& tr, int s) {
      sm90::fence_proxy_async();
      sm90::wgmma_fence();
      issue_scores<T, NQ, D>(tr.s12, own(0), 64 * cw, qr(s));
      issue_scores<T, BN, D>(tr.a, own(1), 64 * cw, dot(s));
      sm90::wgmma_commit();
    };
    auto terms_into = [&](auto& tr, int i, int s) {
      sm90::fence_regs(tr.s12);
      sm90::fence_regs(tr.a);
      const int q0 = query0(i);
      // Every (key, query) of the warpgroup's 64 keys x this tile visible (backward.cuh).
      bool all = q0 + BN <= q_len;
      if (all) {
        const RowRange first = visible_keys<C::kCausal, C::kWindow>(L, q_len, q0, f.window);
        const RowRange last = visible_keys<C::kCausal, C::kWindow>(L, q_len, q0 + BN - 1, f.window);
        all = last.lo <= kw0 && kw1 < first.hi;
      }
      // S2^T's n8 block n is block n + BN / 8 of the stacked tile (softmax: no S2).
      auto score = [&](int j, int n, int e) -> float& {
        return j == 2 ? tr.a[n][e] : tr.s12[j == 1 && C::kProbe ? n + BN / 8 : n][e];
      };
      if (all) dkv_grad_terms<C, BN, false>(p, terms_at(s), q0, key_of, L, q_len, score);
      else dkv_grad_terms<C, BN, true>(p, terms_at(s), q0, key_of, L, q_len, score);
      pack_a<T, BN>(tr.a, tr.pw);
      pack_a<T, NQ>(tr.s12, tr.p12);
    };
    auto accumulate_from = [&](auto& tr, int s) {
      sm90::wgmma_fence();
      issue_accumulate<T, BN, D>(dv[0], tr.pw, dot(s));
      issue_accumulate<T, NQ, D>(dk[0], tr.p12, qr(s));
      sm90::wgmma_commit();
    };
    auto landed = [&] {
      sm90::fence_regs(dk[0]);
      sm90::fence_regs(dv[0]);
    };
    if constexpr (C::kRed) {
      bwd_red_consume<C, cw, TileRegs>(p, b, q_len, rg, n_tiles, own(0), head_of, query0, scores_into, terms_into,
                                       accumulate_from, dk, dv);
    } else {
      TileRegs regs;
      auto scores = [&](int s) { scores_into(regs, s); };
      auto terms = [&](int i, int s) { terms_into(regs, i, s); };
      auto accumulate = [&](int s) { accumulate_from(regs, s); };
      bwd_consume<C, C::kPipelined>(
          cw, rg, n_tiles, wg_live, [&](int i) { return query0(i) < qb_w && query0(i) + BN > qa_w; }, scores, terms,
          accumulate, landed);
    }

    auto out_row = [&](void* base_ptr) {
      return [&, base_ptr](int i) -> T* {
        const int key = warp_key + i;  // every stored key of the sequence: zero past L
        return key < sv.kv_len ? static_cast<T*>(base_ptr) + kv_off + (long long)key * f.k_stride_t : nullptr;
      };
    };
    store_rows<T, D>(dk, 1.f, out_row(p.dk));
    store_rows<T, D>(dv, 1.f, out_row(p.dv));
  });
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) backward_sm90_kernel(const BwdParams p) {
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned base = (smem_addr(smem) + 1023u) & ~1023u;
  const int b = blockIdx.y, x = blockIdx.x;
  if (x < p.kv_ctas) {
    bwd_sm90_dkv_role<C>(p, base, b, x % p.f.heads_kv, x / p.f.heads_kv);
  } else {
    const int y = x - p.kv_ctas;
    bwd_sm90_dq_role<C>(p, base, b, y % p.f.heads_q, p.q_tiles - 1 - y / p.f.heads_q);
  }
}

}  // namespace plx
