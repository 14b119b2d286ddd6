/* parallax-jit C API (libparallax.so), for FFI callers: Python ctypes, Rust, Go, ...
 * Every function returns 0 on success; on failure a non-zero code and a message that
 * plx_last_error() returns (thread-local, valid until the thread's next API call).
 * Nothing is ever synchronised: plx_attention enqueues on `cuda_stream` and returns.
 * Struct fields are only ever added at the end; set struct_size = sizeof(plx_attention_args). */
#ifndef PARALLAX_PARALLAX_H
#define PARALLAX_PARALLAX_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plx_engine plx_engine;
typedef enum { PLX_SOFTMAX = 0, PLX_PARALLAX = 1, PLX_PARALLAX_UNCENTERED = 2 } plx_variant;
typedef enum { PLX_BF16 = 0, PLX_FP16 = 1 } plx_dtype;

typedef struct {
  int struct_size;                 /* sizeof(plx_attention_args), for ABI evolution */
  plx_variant variant; plx_dtype dtype;
  int batch, q_len, kv_len, heads_q, heads_kv, head_dim;
  int causal;                      /* mask aligned to the end of the KV sequence */
  int window_left;                 /* -1: no window; else keys i'-W+1..i' */
  float qk_scale;                  /* 0: 1/sqrt(head_dim); applies to q.k only, never to r.k */
  const void *q, *r, *k, *v;       /* device pointers, contiguous [batch, len, heads, head_dim] */
  void *o;                         /* device, [batch, q_len, heads_q, head_dim] */
  const int *seqused_k;            /* optional device int32[batch]: live KV length per batch */
  /* --- added in ABI 2 (read only when struct_size covers them) --- */
  const int *block_table;          /* optional paged KV: device int32[batch, max_pages]; k, v are */
  int page_size;                   /* page pools [pages, page_size, heads_kv, head_dim];          */
  int max_pages;                   /* page_size a power of two in 16..256                       */
  /* --- added in ABI 3 (read only when struct_size covers them) --- */
  float *stats;                    /* optional, training: device fp32 [batch, heads_q, q_len, 4]  */
  void *barv;                      /* (m, d1, d2/d1, lse per row) and, for PLX_PARALLAX, barv     */
                                   /* like o; both are what plx_attention_backward reads. Setting */
                                   /* stats runs a prefill kernel whatever q_len is.             */
  /* --- added in ABI 4 (read only when struct_size covers them) --- */
  const int *cu_seqlens_q;         /* optional varlen packed batch, both or neither: device     */
  const int *cu_seqlens_k;         /* int32[batch + 1] prefix sums; q, r, o are then            */
                                   /* [total_q, heads_q, head_dim], k, v [total_k, heads_kv,    */
                                   /* head_dim]; q_len / kv_len the longest sequence. Prefill   */
                                   /* kernels and plx_attention_backward (gradients packed like  */
                                   /* their tensors, stats as the forward wrote them); not with */
                                   /* block_table.                                              */
} plx_attention_args;

/* ABI 3: the gradients of one plx_attention call (plx_attention_backward). Device pointers,
 * 16-byte aligned, each laid out like the tensor it is the gradient of (packed
 * [total, heads, head_dim] for a varlen call: dout, o, barv, dq, dr like q; dk, dv like k). */
typedef struct {
  int struct_size;                 /* sizeof(plx_backward_args) */
  const void *dout;                /* dL/do, like o */
  const void *o;                   /* the forward's output */
  const float *stats;              /* the forward's stats */
  const void *barv;                /* the forward's barv (PLX_PARALLAX only) */
  void *dq, *dr;                   /* like q and r (dr: probe variants only) */
  void *dk, *dv;                   /* like k and v, summed over each GQA group's q heads */
} plx_backward_args;

/* Error codes. */
enum {
  PLX_OK = 0,
  PLX_ERROR_INVALID_ARGUMENT = 1, /* unsupported shape, dtype, null pointer, bad struct_size */
  PLX_ERROR_NO_GPU = 2,           /* no driver or no device */
  PLX_ERROR_DRIVER = 3,           /* a CUDA driver call failed */
  PLX_ERROR_COMPILE = 4,          /* NVRTC rejected a kernel (a bug: please report) */
  PLX_ERROR_INTERNAL = 5
};

int  plx_engine_create(plx_engine **out, int device_ordinal);  /* 0 on success */
void plx_engine_destroy(plx_engine *e);
int  plx_attention(plx_engine *e, const plx_attention_args *a, void *cuda_stream);
const char *plx_last_error(void);                              /* thread-local message */

/* --- added after ABI 2 (absent from older libraries: look them up, do not assume) --- */
#define PLX_ABI_VERSION 4
/* The newest plx_attention_args layout this library reads: 1 = fields up to seqused_k,
 * 2 = also block_table, page_size, max_pages, 3 = also stats, barv (and the backward),
 * 4 = also cu_seqlens_q, cu_seqlens_k.
 * An FFI caller that sets later fields must check it: an older library would silently
 * ignore them. */
int plx_abi_version(void);
const char *plx_version(void);                                 /* "0.1.0": the library's release */

/* --- added in ABI 3 --- */
/* Gradients of the forward call `a` (the same arguments; its stats, and barv for
 * PLX_PARALLAX, set and written) for g->dout. Writes every element of dq, dr, dk, dv.
 * Enqueues two kernels on cuda_stream; paged K/V is refused. */
int plx_attention_backward(plx_engine *e, const plx_attention_args *a, const plx_backward_args *g,
                           void *cuda_stream);

#ifdef __cplusplus
}
#endif
#endif
