"""Host time per call of parallax_jit.attention against the raw C API called through ctypes,
on the same tensors, plus bitwise equality of their outputs. Issue 8's bar: the operator
adds < 20 us per call over the raw C API.

Each timed batch is enqueued behind a torch.cuda._sleep, so the GPU never holds the host
back and the wall clock counts host work only (checked: the sleep must still be running
when the batch has been enqueued, else the line says so). Batches stay well below the
launch queue's depth.

  python3 tools/bench/torch_op_overhead.py [--lib build/libparallax.so]
         [--shapes 1x1x256x8x8x128,8x1x4096x32x8x128,1x128x128x8x8x128] [--batches 30] [--batch 100]

A shape is BxLqxLkxHqxHkvxD, bf16. Paths timed:
  raw C API     ctypes.Structure filled per call + plx_attention (tools/bench/capi_decode.py's way)
  raw, prebuilt one ctypes.Structure built once, only plx_attention per call (the floor)
  parallax_jit  parallax_jit.attention(q, r, k, v) in eager mode (allocates o each call)
  torch.ops     torch.ops.parallax_jit.attention.default (the dispatcher path torch.compile uses)
"""
import argparse
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))


class Args(ctypes.Structure):  # include/parallax/parallax.h, ABI 2
    _fields_ = [("struct_size", ctypes.c_int), ("variant", ctypes.c_int), ("dtype", ctypes.c_int),
                ("batch", ctypes.c_int), ("q_len", ctypes.c_int), ("kv_len", ctypes.c_int),
                ("heads_q", ctypes.c_int), ("heads_kv", ctypes.c_int), ("head_dim", ctypes.c_int),
                ("causal", ctypes.c_int), ("window_left", ctypes.c_int), ("qk_scale", ctypes.c_float),
                ("q", ctypes.c_void_p), ("r", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
                ("o", ctypes.c_void_p), ("seqused_k", ctypes.c_void_p), ("block_table", ctypes.c_void_p),
                ("page_size", ctypes.c_int), ("max_pages", ctypes.c_int)]


def time_batches(fn, batches, batch, sleep_cycles):
    """Median, p10 and p90 of host microseconds per call, and whether the GPU ever ran dry."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    per_call, drained = [], 0
    stream = torch.cuda.current_stream()
    for _ in range(batches):
        torch.cuda._sleep(sleep_cycles)
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        t1 = time.perf_counter()
        drained += stream.query()  # True: the sleep (and the batch) already finished
        torch.cuda.synchronize()
        per_call.append((t1 - t0) / batch * 1e6)
    per_call.sort()
    n = len(per_call)
    return statistics.median(per_call), per_call[n // 10], per_call[(9 * n) // 10], drained


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default=None, help="libparallax.so (default: PARALLAX_LIB, then parallax_jit's search)")
    ap.add_argument("--shapes", default="1x1x256x8x8x128,8x1x4096x32x8x128,1x128x128x8x8x128")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100, help="calls per timed batch (each is 1-2 launches)")
    ap.add_argument("--sleep-ms", type=float, default=20.0, help="GPU sleep ahead of each batch")
    a = ap.parse_args()
    if a.lib:
        os.environ["PARALLAX_LIB"] = a.lib
    import parallax_jit
    from parallax_jit import _lib

    lib = _lib.load()
    cdll = ctypes.CDLL(lib.path)  # own function objects: the raw path owes nothing to the package
    cdll.plx_engine_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    cdll.plx_attention.argtypes = [ctypes.c_void_p, ctypes.POINTER(Args), ctypes.c_void_p]
    cdll.plx_last_error.restype = ctypes.c_char_p
    eng = ctypes.c_void_p()
    if cdll.plx_engine_create(ctypes.byref(eng), 0) != 0:
        raise SystemExit("plx_engine_create: " + cdll.plx_last_error().decode())
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    torch.cuda._sleep(10_000_000)
    e1.record()
    e1.synchronize()
    sleep_cycles = int(a.sleep_ms / e0.elapsed_time(e1) * 10_000_000)  # _sleep counts clock cycles
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {lib!r}, "
          f"{a.batches} batches x {a.batch} calls")
    print("| shape BxLqxLkxHqxHkvxD | path | host us/call (median) | p10 | p90 | over raw C API | bitwise = raw |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    ok_all = True
    for spec in a.shapes.split(","):
        B, Lq, Lk, Hq, Hkv, D = map(int, spec.split("x"))
        g = torch.Generator(device="cuda").manual_seed(0)
        q, r = (torch.randn(B, Lq, Hq, D, device="cuda", generator=g).bfloat16() for _ in range(2))
        k, v = (torch.randn(B, Lk, Hkv, D, device="cuda", generator=g).bfloat16() for _ in range(2))
        q, r, k = (x / x.float().pow(2).mean(-1, keepdim=True).sqrt().bfloat16() for x in (q, r, k))
        o_raw = torch.full_like(q, float("nan"))
        stream = torch.cuda.current_stream().cuda_stream

        def raw():
            x = Args(ctypes.sizeof(Args), 1, 0, B, Lq, Lk, Hq, Hkv, D, 1, -1, 0.0, q.data_ptr(), r.data_ptr(),
                     k.data_ptr(), v.data_ptr(), o_raw.data_ptr(), None, None, 0, 0)
            if cdll.plx_attention(eng, ctypes.byref(x), stream) != 0:
                raise SystemExit("plx_attention: " + cdll.plx_last_error().decode())

        pre = Args(ctypes.sizeof(Args), 1, 0, B, Lq, Lk, Hq, Hkv, D, 1, -1, 0.0, q.data_ptr(), r.data_ptr(),
                   k.data_ptr(), v.data_ptr(), o_raw.data_ptr(), None, None, 0, 0)
        pre_ref = ctypes.byref(pre)
        fn = cdll.plx_attention

        def raw_prebuilt():
            fn(eng, pre_ref, stream)

        attn = parallax_jit.attention
        op = torch.ops.parallax_jit.attention.default

        def pj():
            return attn(q, r, k, v)

        def ops():
            return op(q, r, k, v)

        raw()
        o_pj, o_op = pj(), ops()
        torch.cuda.synchronize()
        same = {"raw C API": True, "raw, prebuilt": True, "parallax_jit": torch.equal(o_pj, o_raw),
                "torch.ops": torch.equal(o_op, o_raw)}
        ok_all &= all(same.values()) and not torch.isnan(o_raw).any().item()
        base = None
        # Grad mode on (the default): the operator's costliest eager path, since it must
        # check that no input requires grad.
        for name, f in (("raw C API", raw), ("raw, prebuilt", raw_prebuilt), ("parallax_jit", pj),
                        ("torch.ops", ops)):
            med, p10, p90, drained = time_batches(f, a.batches, a.batch, sleep_cycles)
            if base is None:
                base = med
            over = med - base
            if name == "parallax_jit":
                worst = max(worst, over)
            note = f" (GPU ran dry in {drained} batches: raise --sleep-ms)" if drained else ""
            print(f"| {spec} | {name} | {med:.2f} | {p10:.2f} | {p90:.2f} | {over:+.2f} | "
                  f"{'yes' if same[name] else 'NO'} |{note}", flush=True)
    print(f"parallax_jit.attention host overhead over the raw C API: {worst:.2f} us per call at worst "
          f"(bar: < 20 us) -> {'PASS' if worst < 20 else 'FAIL'}; outputs bitwise equal: "
          f"{'yes' if ok_all else 'NO'}")
    return 0 if worst < 20 and ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
