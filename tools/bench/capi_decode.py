"""Parallax decode through the C API (libparallax.so via ctypes) on torch tensors, checked
against an fp64 reference and timed next to torch SDPA softmax decode (FLASH_ATTENTION and
CUDNN_ATTENTION backends) in the same run. Comparison tooling only: the product never
imports torch.

  python3 tools/bench/capi_decode.py [--lib build/libparallax.so] [--shapes 1x4096x32x8,32x8192x32x8]
"""
import argparse, ctypes, json, math
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

PLX_SOFTMAX, PLX_PARALLAX, PLX_PARALLAX_UNCENTERED = 0, 1, 2
PLX_BF16, PLX_FP16 = 0, 1


class Args(ctypes.Structure):  # include/parallax/parallax.h, ABI 2
    _fields_ = [("struct_size", ctypes.c_int), ("variant", ctypes.c_int), ("dtype", ctypes.c_int),
                ("batch", ctypes.c_int), ("q_len", ctypes.c_int), ("kv_len", ctypes.c_int),
                ("heads_q", ctypes.c_int), ("heads_kv", ctypes.c_int), ("head_dim", ctypes.c_int),
                ("causal", ctypes.c_int), ("window_left", ctypes.c_int), ("qk_scale", ctypes.c_float),
                ("q", ctypes.c_void_p), ("r", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
                ("o", ctypes.c_void_p), ("seqused_k", ctypes.c_void_p), ("block_table", ctypes.c_void_p),
                ("page_size", ctypes.c_int), ("max_pages", ctypes.c_int)]


def reference(q, r, k, v, scale):
    """fp64 Parallax decode (parallax-math.md 2.1), [B, 1, H, D] inputs, GQA by repeat."""
    B, T, HQ, D = q.shape
    g = HQ // k.shape[2]
    q, r = q.double().transpose(1, 2), r.double().transpose(1, 2)
    k = k.double().repeat_interleave(g, 2).transpose(1, 2)
    v = v.double().repeat_interleave(g, 2).transpose(1, 2)
    p = torch.softmax(scale * q @ k.transpose(-1, -2), -1)
    u = r @ k.transpose(-1, -2)
    t = (p * u).sum(-1, keepdim=True)
    o = (p * (1 + t - u)) @ v
    return o.transpose(1, 2)


def time_us(fn, reps, copies):
    for i in range(5):
        fn(i % copies)
    torch.cuda.synchronize()
    ms = []
    for i in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(80000)  # the GPU is busy while the host enqueues: time GPU work
        e0.record(); fn(i % copies); e1.record(); e1.synchronize()
        ms.append(e0.elapsed_time(e1))
    ms.sort()
    return 1e3 * ms[len(ms) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build/libparallax.so")
    ap.add_argument("--shapes", default="1x4096x32x8,1x32768x32x8,8x8192x32x8,32x8192x32x8,32x16384x8x8")
    ap.add_argument("--reps", type=int, default=100)
    a = ap.parse_args()
    lib = ctypes.CDLL(a.lib)
    lib.plx_engine_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    lib.plx_attention.argtypes = [ctypes.c_void_p, ctypes.POINTER(Args), ctypes.c_void_p]
    lib.plx_last_error.restype = ctypes.c_char_p
    eng = ctypes.c_void_p()
    if lib.plx_engine_create(ctypes.byref(eng), 0) != 0:
        raise SystemExit("plx_engine_create: " + lib.plx_last_error().decode())
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    print("| B | L | Hq | Hkv | plx (C API) us | cuDNN us | FA2 us | plx/cuDNN | rel err vs fp64 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in a.shapes.split(","):
        B, L, HQ, HKV = map(int, s.split("x"))
        D = 128
        kvb = 2 * B * L * HKV * D * 2
        copies = max(1, min(32, 2 * l2 // kvb + 1))
        def rms(x):
            return x / x.float().pow(2).mean(-1, keepdim=True).sqrt().to(x.dtype)
        sets = []
        for _ in range(copies):
            q = rms(torch.randn(B, 1, HQ, D, device="cuda", dtype=torch.bfloat16))
            r = rms(torch.randn(B, 1, HQ, D, device="cuda", dtype=torch.bfloat16))
            k = rms(torch.randn(B, L, HKV, D, device="cuda", dtype=torch.bfloat16))
            v = torch.randn(B, L, HKV, D, device="cuda", dtype=torch.bfloat16)
            o = torch.full((B, 1, HQ, D), float("nan"), device="cuda", dtype=torch.bfloat16)
            sets.append((q, r, k, v, o))
        stream = torch.cuda.current_stream().cuda_stream

        def plx(i):
            q, r, k, v, o = sets[i]
            x = Args(ctypes.sizeof(Args), PLX_PARALLAX, PLX_BF16, B, 1, L, HQ, HKV, D, 1, -1, 0.0,
                     q.data_ptr(), r.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), None, None, 0, 0)
            if lib.plx_attention(eng, ctypes.byref(x), stream) != 0:
                raise SystemExit("plx_attention: " + lib.plx_last_error().decode())

        plx(0)
        torch.cuda.synchronize()
        q, r, k, v, o = sets[0]
        ref = reference(q, r, k, v, 1 / math.sqrt(D))
        err = ((o.double() - ref).norm() / ref.norm()).item()
        nan = torch.isnan(o).any().item()
        t_plx = time_us(plx, a.reps, copies)
        times = {}
        for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("fa2", SDPBackend.FLASH_ATTENTION)):
            with sdpa_kernel(be):
                f = lambda i: torch.nn.functional.scaled_dot_product_attention(
                    sets[i][0].transpose(1, 2), sets[i][2].transpose(1, 2), sets[i][3].transpose(1, 2),
                    enable_gqa=HQ != HKV)
                try:
                    times[name] = time_us(f, a.reps, copies)
                except Exception as e:  # backend refuses the shape
                    times[name] = float("nan")
        print(f"| {B} | {L} | {HQ} | {HKV} | {t_plx:.1f} | {times['cudnn']:.1f} | {times['fa2']:.1f} | "
              f"{t_plx / times['cudnn']:.2f} | {err:.2e}{' NaN!' if nan else ''} |", flush=True)
        print(json.dumps(dict(B=B, L=L, HQ=HQ, HKV=HKV, plx_us=t_plx, **times, rel_err=err, nan=nan)), flush=True)


if __name__ == "__main__":
    main()
