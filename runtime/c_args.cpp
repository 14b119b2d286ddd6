#include "runtime/c_args.hpp"

namespace plx::cabi {

AttentionArgs from_c_args(const plx_attention_args& a) {
  AttentionArgs x;
  x.family = static_cast<Family>(a.variant);
  x.dtype = static_cast<DType>(a.dtype);
  x.batch = a.batch;
  x.q_len = a.q_len;
  x.kv_len = a.kv_len;
  x.heads_q = a.heads_q;
  x.heads_kv = a.heads_kv;
  x.head_dim = a.head_dim;
  x.causal = a.causal != 0;
  x.window_left = a.window_left;
  x.qk_scale = a.qk_scale;
  x.q = a.q;
  x.r = a.r;
  x.k = a.k;
  x.v = a.v;
  x.o = a.o;
  x.seqused_k = a.seqused_k;
  const std::size_t size = a.struct_size > 0 ? std::size_t(a.struct_size) : 0;
  if (size >= kAbi2Size) {
    x.block_table = a.block_table;
    x.page_size = a.page_size;
    x.max_pages = a.max_pages;
  }
  if (size >= kAbi3Size) {
    x.stats = a.stats;
    x.barv = a.barv;
  }
  if (size >= kAbi4Size) {
    x.cu_seqlens_q = a.cu_seqlens_q;
    x.cu_seqlens_k = a.cu_seqlens_k;
  }
  return x;
}

}  // namespace plx::cabi
