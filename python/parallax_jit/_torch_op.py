"""parallax_jit.attention on torch CUDA tensors, registered as the torch.library custom op
parallax_jit::attention so torch.compile traces it (through its fake implementation) and
CUDA graphs capture it (it only enqueues on the current stream and allocates its output
with torch, which the graph's memory pool serves).

An eager call skips the dispatcher: a custom_op call costs tens of microseconds of Python
dispatch, more than the whole budget of this layer. Calls the dispatcher must see --
inside torch.compile, under a TorchDispatchMode, on tensor subclasses (fake, functional),
with autograd recording -- go through the registered op, which runs the same code. A call
that wants a gradient runs the ops parallax_jit::attention_train (o plus the statistics the
backward reads, through the ABI 3 arguments) and parallax_jit::attention_backward."""
import math
from typing import Optional, Tuple

import torch

from . import _lib

if not hasattr(torch.library, "custom_op"):
    raise ImportError(f"parallax_jit.attention needs PyTorch >= 2.4 (torch.library.custom_op); "
                      f"this is torch {torch.__version__}")

_DTYPES = {torch.bfloat16: 0, torch.float16: 1}
_FAMILIES = _lib.FAMILIES
_FAMILY_NAMES = ", ".join(repr(f) for f in _FAMILIES)
_Tensor = torch.Tensor
_pack = _lib.ARGS.pack
_ARGS_SIZE = _lib.ARGS.size
_pack3 = _lib.ARGS3.pack
_ARGS3_SIZE = _lib.ARGS3.size
_pack_bwd = _lib.BACKWARD_ARGS.pack
_BWD_SIZE = _lib.BACKWARD_ARGS.size
# The raw cudaStream_t of a device's current stream, without building a torch.cuda.Stream
# object (what inductor's generated code calls, for the same reason).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or (
    lambda d: torch.cuda.current_stream(d).cuda_stream)
_dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", lambda: 0)
_is_compiling = torch.compiler.is_compiling


def _fail(exc, msg):
    raise exc("parallax_jit.attention: " + msg)


def _shape(t):
    return tuple(t.shape)


def _check(q, r, k, v, window, qk_scale, seqused_k, family, block_table):
    """Validates everything the C API cannot see (shapes, dtypes, devices, layouts) and
    returns (family, dtype, batch, q_len, kv_len, heads_q, heads_kv, head_dim, page_size,
    max_pages, device index). Runs on real and on fake tensors alike, so torch.compile
    reports these errors at trace time. The kernels' value limits (head_dim, page_size)
    are the library's to check and report. The common path reads each attribute once:
    it is most of this layer's cost per call; the messages are built only on failure."""
    fam = _FAMILIES.get(family)
    if fam is None:
        _fail(ValueError, f"family={family!r} is not one of {_FAMILY_NAMES}")
    if r is None:
        if fam:
            _fail(ValueError, f"r (the probe) is None, but family={family!r} needs it; only family='softmax' "
                              "runs without r")
        tensors = (("q", q), ("k", k), ("v", v))
    else:
        tensors = (("q", q), ("r", r), ("k", k), ("v", v))
    for name, t in tensors:
        if not isinstance(t, _Tensor):
            _fail(TypeError, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    qs, ks = q.shape, k.shape
    if len(qs) != 4 or len(ks) != 4 or v.dim() != 4 or (r is not None and r.dim() != 4):
        for name, t in tensors:
            if t.dim() != 4:
                _fail(ValueError, f"{name} must be 4-D [batch, len, heads, head_dim], got shape {_shape(t)}")
    qdt = q.dtype
    dt = _DTYPES.get(qdt)
    if dt is None:
        _fail(TypeError, f"q has dtype {qdt}; supported: torch.bfloat16, torch.float16")
    if not q.is_cuda:
        _fail(ValueError, f"q is on {q.device}; parallax_jit.attention runs on CUDA tensors")
    dev = q.get_device()
    if (k.dtype is not qdt or v.dtype is not qdt or k.get_device() != dev or v.get_device() != dev
            or (r is not None and (r.dtype is not qdt or r.get_device() != dev))):
        for name, t in tensors[1:]:
            if t.dtype is not qdt:
                _fail(TypeError, f"{name} has dtype {t.dtype} but q has {qdt}; all of q, r, k, v share one dtype")
            if t.get_device() != dev:
                _fail(ValueError, f"{name} is on {t.device} but q is on {q.device}")
    if r is not None and r.shape != qs:
        _fail(ValueError, f"r has shape {_shape(r)} but q has {_shape(q)}; r must match q")
    if v.shape != ks:
        _fail(ValueError, f"v has shape {_shape(v)} but k has {_shape(k)}; v must match k")
    B, Lq, Hq, D = qs
    kb, Lk, Hkv, Dk = ks
    if Dk != D:
        _fail(ValueError, f"k has head_dim {Dk} (shape {_shape(k)}) but q has {D} (shape {_shape(q)})")
    if Hkv < 1 or Hq % Hkv != 0:
        _fail(ValueError, f"q has {Hq} heads, not a multiple of k's {Hkv} (q {_shape(q)}, k {_shape(k)})")
    # Copying k or v would move the whole KV cache on every call: the caller decides.
    if not (k.is_contiguous() and v.is_contiguous()):
        for name, t in (("k", k), ("v", v)):
            if not t.is_contiguous():
                _fail(ValueError, f"{name} (shape {_shape(t)}, stride {t.stride()}) is not contiguous; the kernels "
                                  "read [batch, len, heads, head_dim] rows densely. Pass "
                                  f"{name}.contiguous() (a copy of the whole tensor), or keep the KV cache contiguous")
    page_size = max_pages = 0
    if block_table is not None:
        _check_index(block_table, "block_table", 2, dev, q)
        if block_table.shape[0] != B:
            _fail(ValueError, f"block_table has shape {_shape(block_table)}, but batch is {B}: it must be "
                              "[batch, max_pages]")
        page_size, max_pages = Lk, block_table.shape[1]
        kv_len = page_size * max_pages
    else:
        if kb != B:
            _fail(ValueError, f"k has batch {kb} (shape {_shape(k)}) but q has {B} (shape {_shape(q)})")
        kv_len = Lk
    if seqused_k is not None:
        _check_index(seqused_k, "seqused_k", 1, dev, q)
        if seqused_k.shape[0] != B:
            _fail(ValueError, f"seqused_k has shape {_shape(seqused_k)}, but batch is {B}: it must be [batch]")
    if window != -1 and window < 1:
        _fail(ValueError, f"window={window} must be -1 (no window) or >= 1 (keys in the window, diagonal included)")
    if qk_scale is not None and not (qk_scale > 0 and math.isfinite(qk_scale)):
        _fail(ValueError, f"qk_scale={qk_scale} must be None (1/sqrt(head_dim)) or a positive finite number")
    return fam, dt, B, Lq, kv_len, Hq, Hkv, D, page_size, max_pages, dev


def _check_index(t, name, ndim, dev, q):
    if not isinstance(t, _Tensor):
        _fail(TypeError, f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if t.dtype is not torch.int32:
        _fail(TypeError, f"{name} has dtype {t.dtype}; it must be torch.int32 (convert once with .int())")
    if t.dim() != ndim:
        _fail(ValueError, f"{name} must be {ndim}-D, got shape {_shape(t)}")
    if t.get_device() != dev:
        _fail(ValueError, f"{name} is on {t.device} but q is on {q.device}")
    if not t.is_contiguous():
        _fail(ValueError, f"{name} (shape {_shape(t)}, stride {t.stride()}) is not contiguous")


def _run(q, r, k, v, causal, window, qk_scale, seqused_k, family, block_table):
    fam, dt, B, Lq, kv_len, Hq, Hkv, D, page_size, max_pages, dev = _check(
        q, r, k, v, window, qk_scale, seqused_k, family, block_table)
    lib = _lib._library or _lib.load()
    if block_table is not None and lib.abi < 2:
        _fail(RuntimeError, f"block_table needs a libparallax with args ABI 2; {lib!r} reads ABI {lib.abi}")
    # q and r are one step's activations: a copy is cheap and what a caller slicing them
    # out of a fused projection wants.
    if not q.is_contiguous():
        q = q.contiguous()
    if fam == 0:
        r_ptr = 0
    else:
        if not r.is_contiguous():
            r = r.contiguous()
        r_ptr = r.data_ptr()
    o = torch.empty_like(q)  # q is contiguous here, so o is too
    if B == 0 or Lq == 0:
        return o
    lib.attention(lib.engine(dev),
                  _pack(_ARGS_SIZE, fam, dt, B, Lq, kv_len, Hq, Hkv, D, 1 if causal else 0, window,
                        qk_scale or 0.0, q.data_ptr(), r_ptr, k.data_ptr(), v.data_ptr(), o.data_ptr(),
                        0 if seqused_k is None else seqused_k.data_ptr(),
                        0 if block_table is None else block_table.data_ptr(), page_size, max_pages),
                  _raw_stream(dev))
    return o


@torch.library.custom_op("parallax_jit::attention", mutates_args=())
def _op(q: torch.Tensor, r: Optional[torch.Tensor], k: torch.Tensor, v: torch.Tensor, causal: bool = True,
        window: int = -1, qk_scale: Optional[float] = None, seqused_k: Optional[torch.Tensor] = None,
        family: str = "parallax", block_table: Optional[torch.Tensor] = None) -> torch.Tensor:
    return _run(q, r, k, v, causal, window, qk_scale, seqused_k, family, block_table)


@_op.register_fake
def _fake(q, r, k, v, causal=True, window=-1, qk_scale=None, seqused_k=None, family="parallax",
          block_table=None):
    _check(q, r, k, v, window, qk_scale, seqused_k, family, block_table)
    return q.new_empty(q.shape)


# ---- training: a forward that also writes what the backward reads, and the backward.
# Separate ops from parallax_jit::attention so that inference keeps its schema, its
# single output and its ABI 2 argument block (one struct.pack of 112 bytes per call).

def _dense(t):
    """t as the kernels read it: contiguous and 16-byte aligned (a contiguous view at an odd
    offset into a larger buffer, as a gradient can be, is not)."""
    if t.is_contiguous() and t.data_ptr() % 16 == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _check_train(q, r, k, v, window, qk_scale, seqused_k, family):
    return _check(q, r, k, v, window, qk_scale, seqused_k, family, None)


def _train_library():
    lib = _lib._library or _lib.load()
    if lib.abi < _lib.BACKWARD_ABI:
        _fail(RuntimeError, f"a gradient needs a libparallax with args ABI {_lib.BACKWARD_ABI} "
                            f"(plx_attention_backward); {lib!r} reads ABI {lib.abi}. Use a newer library, or "
                            "run without grad (torch.no_grad(), or inputs that do not require grad)")
    return lib


def _pack_train(fam, dt, B, Lq, kv_len, Hq, Hkv, D, causal, window, qk_scale, q, r, k, v, o, seqused_k,
                stats, barv):
    """plx_attention_args, ABI 3, of a training forward (and of its backward, which reads
    the same arguments). q, r contiguous; r None for softmax; barv None unless parallax."""
    return _pack3(_ARGS3_SIZE, fam, dt, B, Lq, kv_len, Hq, Hkv, D, 1 if causal else 0, window, qk_scale or 0.0,
                  q.data_ptr(), 0 if fam == 0 else r.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(),
                  0 if seqused_k is None else seqused_k.data_ptr(), 0, 0, 0,
                  stats.data_ptr(), 0 if barv is None else barv.data_ptr())


def _train_outputs(q, fam, B, Lq, Hq):
    """o, stats (fp32 [batch, heads_q, q_len, 4]), barv (like q for parallax, else empty):
    the same allocation for real and fake tensors."""
    return (q.new_empty(q.shape), q.new_empty((B, Hq, Lq, 4), dtype=torch.float32),
            q.new_empty(q.shape if fam == 1 else (0,)))


@torch.library.custom_op("parallax_jit::attention_train", mutates_args=())
def _train_op(q: torch.Tensor, r: Optional[torch.Tensor], k: torch.Tensor, v: torch.Tensor, causal: bool = True,
              window: int = -1, qk_scale: Optional[float] = None, seqused_k: Optional[torch.Tensor] = None,
              family: str = "parallax") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    fam, dt, B, Lq, kv_len, Hq, Hkv, D, _, _, dev = _check_train(q, r, k, v, window, qk_scale, seqused_k, family)
    lib = _train_library()
    q = _dense(q)
    r = _dense(r) if fam else None
    o, stats, barv = _train_outputs(q, fam, B, Lq, Hq)
    if B == 0 or Lq == 0:
        return o, stats, barv
    lib.attention(lib.engine(dev),
                  _pack_train(fam, dt, B, Lq, kv_len, Hq, Hkv, D, causal, window, qk_scale, q, r, k, v, o,
                              seqused_k, stats, barv if fam == 1 else None),
                  _raw_stream(dev))
    return o, stats, barv


@_train_op.register_fake
def _train_fake(q, r, k, v, causal=True, window=-1, qk_scale=None, seqused_k=None, family="parallax"):
    fam, _, B, Lq, _, Hq, *_ = _check_train(q, r, k, v, window, qk_scale, seqused_k, family)
    return _train_outputs(q, fam, B, Lq, Hq)


@torch.library.custom_op("parallax_jit::attention_backward", mutates_args=())
def _backward_op(dout: torch.Tensor, q: torch.Tensor, r: Optional[torch.Tensor], k: torch.Tensor, v: torch.Tensor,
                 o: torch.Tensor, stats: torch.Tensor, barv: torch.Tensor, causal: bool, window: int,
                 qk_scale: Optional[float], seqused_k: Optional[torch.Tensor],
                 family: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dr (empty for softmax), dk, dv of one attention_train call."""
    fam, dt, B, Lq, kv_len, Hq, Hkv, D, _, _, dev = _check_train(q, r, k, v, window, qk_scale, seqused_k, family)
    lib = _train_library()
    q = _dense(q)  # a copy again where the forward copied one
    r = _dense(r) if fam else None
    dout = _dense(dout)  # e.g. the expanded ones of a .sum()
    dq, dr, dk, dv = _backward_outputs(q, r, k, v, fam)
    if B == 0 or Lq == 0 or kv_len == 0:  # nothing launched: no key was seen, no gradient flows
        for t in (dq, dr, dk, dv):
            t.zero_()
        return dq, dr, dk, dv
    lib.attention_backward(
        lib.engine(dev),
        _pack_train(fam, dt, B, Lq, kv_len, Hq, Hkv, D, causal, window, qk_scale, q, r, k, v, o, seqused_k, stats,
                    barv if fam == 1 else None),
        _pack_bwd(_BWD_SIZE, dout.data_ptr(), o.data_ptr(), stats.data_ptr(), barv.data_ptr() if fam == 1 else 0,
                  dq.data_ptr(), dr.data_ptr() if fam else 0, dk.data_ptr(), dv.data_ptr()),
        _raw_stream(dev))
    return dq, dr, dk, dv


def _backward_outputs(q, r, k, v, fam):
    return (q.new_empty(q.shape), r.new_empty(r.shape) if fam else q.new_empty((0,)), k.new_empty(k.shape),
            v.new_empty(v.shape))


@_backward_op.register_fake
def _backward_fake(dout, q, r, k, v, o, stats, barv, causal, window, qk_scale, seqused_k, family):
    fam = _check_train(q, r, k, v, window, qk_scale, seqused_k, family)[0]
    return _backward_outputs(q, r, k, v, fam)


def _setup_context(ctx, inputs, output):
    q, r, k, v, causal, window, qk_scale, seqused_k, family = inputs
    o, stats, barv = output
    # stats and barv are the backward's inputs, not results: no gradient flows into them,
    # and none is materialised for them.
    ctx.mark_non_differentiable(stats, barv)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(q, r, k, v, o, stats, barv, seqused_k)
    ctx.plx = (causal, window, qk_scale, family)


def _backward(ctx, dout, _dstats, _dbarv):
    if dout is None:
        return None, None, None, None, None, None, None, None, None
    q, r, k, v, o, stats, barv, seqused_k = ctx.saved_tensors
    causal, window, qk_scale, family = ctx.plx
    dq, dr, dk, dv = _backward_op(dout, q, r, k, v, o, stats, barv, causal, window, qk_scale, seqused_k, family)
    return dq, (None if family == "softmax" or r is None else dr), dk, dv, None, None, None, None, None


torch.library.register_autograd("parallax_jit::attention_train", _backward, setup_context=_setup_context)


def _wants_grad(q, r, k, v):
    return torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad
                                        or (isinstance(r, _Tensor) and r.requires_grad))


def attention(q, r, k, v, causal=True, window=-1, qk_scale=None, seqused_k=None, family="parallax",
              block_table=None):
    """Parallax-family attention; returns o, [batch, q_len, heads_q, head_dim], q's dtype.

    q, r: [batch, q_len, heads_q, head_dim]; k, v: [batch, kv_len, heads_kv, head_dim]
    (heads_q a multiple of heads_kv: GQA), CUDA tensors, all bf16 or all fp16, head_dim 64
    or 128. q and r may be strided views (they are copied when not contiguous); k and v
    must be contiguous. r may be None for family="softmax".
    causal: the mask is aligned to the end of the KV sequence (query i sees keys up to
    kv_len - q_len + i). window: -1, or W >= 1 keys ending at that diagonal.
    qk_scale: scales q.k (never r.k); None is 1/sqrt(head_dim).
    seqused_k: optional int32 [batch], the live KV length of each sequence (the causal
    diagonal aligns to it).
    family: "parallax", "parallax_uncentered" or "softmax".
    block_table: optional int32 [batch, max_pages] for a paged KV cache; k and v are then
    page pools [num_pages, page_size, heads_kv, head_dim] and key j of sequence b lives in
    page block_table[b, j // page_size] (give live lengths through seqused_k).

    Runs asynchronously on torch.cuda.current_stream(); errors in the arguments raise
    ValueError or TypeError before anything runs, the library's own as
    parallax_jit.ParallaxError (a RuntimeError).

    Differentiable: when grad mode is on and q, r, k or v requires grad, the forward also
    keeps the per-row statistics (and, for "parallax", the softmax mean of v) that
    plx_attention_backward reads, and o.backward() gives dq, dr, dk, dv (dk, dv summed over
    each GQA group; r gets no gradient for family="softmax"). This needs a libparallax
    with args ABI 3; paged KV (block_table) has no backward."""
    if (not _is_compiling() and type(q) is _Tensor and type(k) is _Tensor and type(v) is _Tensor
            and (r is None or type(r) is _Tensor) and _dispatch_modes() == 0
            and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad
                                                  or (r is not None and r.requires_grad)))):
        return _run(q, r, k, v, causal, window, qk_scale, seqused_k, family, block_table)
    # The dispatcher's own complaint about a non-tensor would not name the problem as _check does.
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, _Tensor):
            _fail(TypeError, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if _wants_grad(q, r, k, v):
        if block_table is not None:
            _fail(ValueError, "block_table (paged KV) has no backward, but q, r, k or v requires grad: pass "
                              "contiguous k and v [batch, kv_len, heads_kv, head_dim] without block_table, or "
                              "call under torch.no_grad() (or on detached inputs) for inference")
        return _train_op(q, r, k, v, causal, window, qk_scale, seqused_k, family)[0]
    return _op(q, r, k, v, causal, window, qk_scale, seqused_k, family, block_table)
