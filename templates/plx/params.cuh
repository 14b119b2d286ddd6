// The launch parameters every kernel takes: one plain struct shared verbatim by the host
// (runtime/launch.cpp fills it) and the device (the kernels read it), so the two can never
// disagree on a field's offset. Plain C types only: this header is compiled by g++ and NVRTC.
#pragma once

namespace plx {

struct AttnParams {
  // Tensors as [batch, len, heads, head_dim] with these element strides (head_dim is
  // contiguous). q, r, o: len = q_len, heads = heads_q; k, v: len = kv_len, heads = heads_kv.
  const void* q;
  const void* r;  // probe rows; unused by softmax kernels
  const void* k;
  const void* v;
  void* o;
  const int* seqused_k;  // nullable: live KV length per batch, clamped to [0, kv_len]
  // Split-KV workspace (decode, num_splits > 1), fp32:
  //   ws_o     [num_splits][rows][2][head_dim]   O1 then O2 of each logical row
  //   ws_stats [num_splits][rows][4]             m (natural log), d1, d2, unused
  // rows = batch * heads_q * q_len in the order (batch, kv head, token, group member).
  float* ws_o;
  float* ws_stats;
  long long q_stride_b, q_stride_t, q_stride_h;  // also used for r
  long long k_stride_b, k_stride_t, k_stride_h;  // also used for v
  long long o_stride_b, o_stride_t, o_stride_h;
  int batch, q_len, kv_len, heads_q, heads_kv;
  int group;           // heads_q / heads_kv
  int window;          // keys visible to a row: the `window` ending at its diagonal; -1 none
  int num_splits;      // decode: grid.x; 1 writes o directly
  float scale_log2;    // qk_scale * log2(e): s1 lives in log2 units inside the kernels
  // Paged KV cache (null: contiguous). k and v are then page pools
  // [pages, 1 << page_shift, heads_kv, head_dim] and key j of batch b lives in page
  // block_table[b * max_pages + (j >> page_shift)]; k_stride_b is unused.
  const int* block_table;
  int max_pages;
  int page_shift;
  // Decode split-KV: one arrival counter per (row block, batch x kv head), zero between
  // launches (merge.cuh). Null: a separate merge_kernel launch combines the partials.
  int* ws_counter;
  // Training forward (prefill kernels; null: not written). What the backward needs:
  //   stats [batch][heads_q][q_len][4] fp32: m, d1, d2/d1, lse, natural-log units
  //         (runtime/oracle_backward.hpp; a row that sees no key: 0, 0, 0, +inf)
  //   barv  like o: sum_j p_j v_j (centered Parallax only; ignored by the other families)
  float* stats;
  void* barv;
  // Hopper prefill CTA order (prefill_sm90.cuh): 0 every head's longest row block first,
  // 1 head-major. The engine sets 1 under PLX_PREFILL_ORDER=head, kept to measure the two.
  int cta_order;
  // Hopper prefill work distribution: 0 one CTA per work item, grid (row blocks, heads_q,
  // batch); 1 persistent, grid (CTAs, 1, 1) with CTAs <= items, each CTA walking the items
  // (WorkSchedule in prefill_sm90.cuh). Ignored by the other kernels.
  int persistent;
  // Variable-length packed batch (prefill kernels; null: none). Sequence b's queries are
  // rows cu_seqlens_q[b] .. cu_seqlens_q[b + 1] - 1 of q, r, o and barv ([total_q, heads,
  // head_dim]; the *_stride_b are unused), its keys rows cu_seqlens_k[b] .. of k and v.
  // q_len / kv_len are then the longest sequence (the grid); stats stay [batch][heads_q]
  // [q_len][4], rows past a sequence's length unwritten. seqused_k still clamps.
  const int* cu_seqlens_q;
  const int* cu_seqlens_k;
};

}  // namespace plx
