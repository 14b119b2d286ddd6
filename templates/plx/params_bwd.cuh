// The backward's launch parameters, shared verbatim by the host (runtime/backward.cpp
// fills them) and the device (backward.cuh, backward_pre.cuh), like params.cuh.
#pragma once
#include "plx/params.cuh"

namespace plx {

struct BwdParams {
  // The forward call's parameters: q, r, k, v, o, strides, shapes, scale_log2, window,
  // seqused_k. dout, barv, dq, dr use the o/q strides, dk and dv the k strides.
  AttnParams f;
  const void* dout;
  const void* barv;    // centered Parallax: the forward's barv; else unused
  const float* stats;  // the forward's per-row statistics (params.cuh)
  // Per-row terms the preprocess kernel writes, [batch][heads_q][q_len][4] fp32:
  // lse in log2 units (+inf for a row that sees no key), bart, t = dO.o, b = dO.barv.
  float* rows;
  // mma wgmma-red only (else null): fp32 [dQ, dR][batch][heads_q][d half][q_len][64],
  // chunks swizzled by the query (backward_sm90.cuh, red_slot); dQ includes the scale.
  // Zeroed by the preprocess, reduced into by the dK/dV CTAs, converted into dq and dr by
  // bwd_post_kernel.
  float* accum;
  void* dq;
  void* dr;
  void* dk;
  void* dv;
  float scale;   // qk_scale in natural units: dQ and dK carry it (s1 = scale * q.k)
  int q_tiles;   // query tiles of block_m rows per head
  int kv_tiles;  // key tiles of block_m keys per kv head
  int kv_ctas;   // kv_tiles * heads_kv: blockIdx.x below it runs dK/dV, the rest dQ/dR
};

}  // namespace plx
