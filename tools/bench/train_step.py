"""One attention training step (forward with statistics + backward) of Parallax through the
C API (libparallax.so via ctypes), next to torch SDPA softmax forward + backward (cuDNN and
FlashAttention-2 backends) of the same shape in the same run; plus the gradient errors of
the Parallax step against an fp32 torch autograd reference (max-norm relative, the
authors' metric: |x - ref| / max|ref| per element, median and max). Comparison tooling
only: the product never imports torch.

  python3 tools/bench/train_step.py [--lib build/libparallax.so] [--shapes 1x4096x16x8,1x16384x16x8]
                                    [--family parallax] [--reps 10] [--no-check] [--order rounds|sequential]
The steps (ours, cuDNN, FA2) are timed in rounds, one of each per round in rotating order,
and plx/cuDNN is the median of the per-round ratios; --order sequential times all reps of
ours, then all of cuDNN's, then FA2's (the method before 2026-11-29, kept to compare).
Shapes are BxLxHQxHKV[xD] (D = 128 unless given), causal, bf16 (issue 7's bar shapes by default).
"""
import argparse, ctypes, json, math
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

FAMILIES = {"softmax": 0, "parallax": 1, "parallax_uncentered": 2}
PLX_BF16 = 0


class Args(ctypes.Structure):  # include/parallax/parallax.h, ABI 3
    _fields_ = [("struct_size", ctypes.c_int), ("variant", ctypes.c_int), ("dtype", ctypes.c_int),
                ("batch", ctypes.c_int), ("q_len", ctypes.c_int), ("kv_len", ctypes.c_int),
                ("heads_q", ctypes.c_int), ("heads_kv", ctypes.c_int), ("head_dim", ctypes.c_int),
                ("causal", ctypes.c_int), ("window_left", ctypes.c_int), ("qk_scale", ctypes.c_float),
                ("q", ctypes.c_void_p), ("r", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
                ("o", ctypes.c_void_p), ("seqused_k", ctypes.c_void_p), ("block_table", ctypes.c_void_p),
                ("page_size", ctypes.c_int), ("max_pages", ctypes.c_int),
                ("stats", ctypes.c_void_p), ("barv", ctypes.c_void_p)]


class BwdArgs(ctypes.Structure):  # plx_backward_args
    _fields_ = [("struct_size", ctypes.c_int), ("dout", ctypes.c_void_p), ("o", ctypes.c_void_p),
                ("stats", ctypes.c_void_p), ("barv", ctypes.c_void_p), ("dq", ctypes.c_void_p),
                ("dr", ctypes.c_void_p), ("dk", ctypes.c_void_p), ("dv", ctypes.c_void_p)]


def reference_grads(fam, q, r, k, v, dout, scale):
    """fp32 autograd of parallax-math.md 2.2 (o = sum_j p_j (1 + t - u_j) v_j), causal,
    one kv head's group at a time so that L = 16384 fits. Inputs [B, L, H, D]."""
    B, L, HQ, D = q.shape
    HKV = k.shape[2]
    G = HQ // HKV
    grads = [torch.zeros(x.shape, dtype=torch.float32, device=x.device) for x in (q, r, k, v)]
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    for b in range(B):
        for hk in range(HKV):
            hs = slice(hk * G, (hk + 1) * G)
            qq = q[b, :, hs].float().transpose(0, 1).requires_grad_()   # [G, L, D]
            rr = r[b, :, hs].float().transpose(0, 1).requires_grad_()
            kk = k[b, :, hk].float().requires_grad_()                    # [L, D]
            vv = v[b, :, hk].float().requires_grad_()
            s = (scale * qq @ kk.T).masked_fill(~mask, float("-inf"))
            p = torch.softmax(s, -1)
            if fam == "softmax":
                w = p
            else:
                u = rr @ kk.T
                t = (p * u).sum(-1, keepdim=True) if fam == "parallax" else 0.0
                w = p * (1 + t - u)
            o = w @ vv
            o.backward(dout[b, :, hs].float().transpose(0, 1))
            grads[0][b, :, hs] = qq.grad.transpose(0, 1)
            if fam != "softmax":
                grads[1][b, :, hs] = rr.grad.transpose(0, 1)
            grads[2][b, :, hk] = kk.grad
            grads[3][b, :, hk] = vv.grad
            del s, p, w, o
    return grads


def errors(got, ref):
    e = (got.float() - ref).abs().flatten() / ref.abs().max().clamp_min(1e-30)
    return {"q50": e.median().item(), "max": e.max().item(), "nan": bool(torch.isnan(got).any().item())}


def time_once(fn):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(200000)  # the GPU is busy while the host enqueues: time GPU work
    e0.record(); fn(); e1.record(); e1.synchronize()
    return e0.elapsed_time(e1)


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ms = sorted(time_once(fn) for _ in range(reps))
    return ms[len(ms) // 2]


def time_rounds(fns, reps):
    """Median ms of each of fns, timed in rounds: every round times each fn once, starting
    with a different one each round. The clock and temperature of the card drift over a
    run (cuDNN's step moved 6.5-7.2 ms between runs when it was timed after ours); rounds
    give every contender the same conditions. Also the median of the per-round ratios
    fns[0] / fns[1]."""
    for fn in fns:
        for _ in range(2):
            fn()
    torch.cuda.synchronize()
    ms = [[] for _ in fns]
    ratios = []
    for rep in range(reps):
        order = [(rep + i) % len(fns) for i in range(len(fns))]
        t = {}
        for i in order:
            t[i] = time_once(fns[i])
            ms[i].append(t[i])
        ratios.append(t[0] / t[1])
    med = lambda xs: sorted(xs)[len(xs) // 2]
    return [med(x) for x in ms], med(ratios)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build/libparallax.so")
    ap.add_argument("--shapes", default="1x4096x16x8,1x16384x16x8")
    ap.add_argument("--family", default="parallax", choices=sorted(FAMILIES))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-check", action="store_true", help="skip the fp32 autograd reference")
    ap.add_argument("--order", default="rounds", choices=["rounds", "sequential"])
    a = ap.parse_args()
    lib = ctypes.CDLL(a.lib)
    lib.plx_engine_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    lib.plx_attention.argtypes = [ctypes.c_void_p, ctypes.POINTER(Args), ctypes.c_void_p]
    lib.plx_attention_backward.argtypes = [ctypes.c_void_p, ctypes.POINTER(Args), ctypes.POINTER(BwdArgs),
                                           ctypes.c_void_p]
    lib.plx_last_error.restype = ctypes.c_char_p
    if lib.plx_abi_version() < 3:
        raise SystemExit(f"{a.lib} reads ABI {lib.plx_abi_version()}; the backward needs ABI 3")
    eng = ctypes.c_void_p()
    if lib.plx_engine_create(ctypes.byref(eng), 0) != 0:
        raise SystemExit("plx_engine_create: " + lib.plx_last_error().decode())
    fam = a.family
    print(f"| B | L | Hq | Hkv | plx fwd ms | plx bwd ms | plx step ms | cuDNN step ms | FA2 step ms | "
          f"plx/cuDNN | grad err q50 (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in a.shapes.split(","):
        dims = list(map(int, s.split("x")))
        B, L, HQ, HKV = dims[:4]
        D = dims[4] if len(dims) > 4 else 128
        dev, bf = "cuda", torch.bfloat16
        torch.manual_seed(L + HQ)

        def rms(x):
            return x / x.float().pow(2).mean(-1, keepdim=True).sqrt().to(x.dtype)
        q = rms(torch.randn(B, L, HQ, D, device=dev, dtype=bf))
        r = rms(torch.randn(B, L, HQ, D, device=dev, dtype=bf))
        k = rms(torch.randn(B, L, HKV, D, device=dev, dtype=bf))
        v = torch.randn(B, L, HKV, D, device=dev, dtype=bf)
        dout = torch.randn(B, L, HQ, D, device=dev, dtype=bf)
        nan = float("nan")
        o = torch.full_like(q, nan)
        barv = torch.full_like(q, nan)
        stats = torch.full((B, HQ, L, 4), nan, device=dev, dtype=torch.float32)
        dq, dr = torch.full_like(q, nan), torch.full_like(r, nan)
        dk, dv = torch.full_like(k, nan), torch.full_like(v, nan)
        stream = torch.cuda.current_stream().cuda_stream
        fa = Args(ctypes.sizeof(Args), FAMILIES[fam], PLX_BF16, B, L, L, HQ, HKV, D, 1, -1, 0.0,
                  q.data_ptr(), r.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), None, None, 0, 0,
                  stats.data_ptr(), barv.data_ptr())
        ba = BwdArgs(ctypes.sizeof(BwdArgs), dout.data_ptr(), o.data_ptr(), stats.data_ptr(), barv.data_ptr(),
                     dq.data_ptr(), dr.data_ptr(), dk.data_ptr(), dv.data_ptr())

        def fwd():
            if lib.plx_attention(eng, ctypes.byref(fa), stream) != 0:
                raise SystemExit("plx_attention: " + lib.plx_last_error().decode())

        def bwd():
            if lib.plx_attention_backward(eng, ctypes.byref(fa), ctypes.byref(ba), stream) != 0:
                raise SystemExit("plx_attention_backward: " + lib.plx_last_error().decode())

        def step():
            fwd(); bwd()

        step()
        torch.cuda.synchronize()
        errs = {}
        if not a.no_check:
            ref = reference_grads(fam, q, r, k, v, dout, 1 / math.sqrt(D))
            names = ("dq", "dk", "dv") if fam == "softmax" else ("dq", "dr", "dk", "dv")
            got = {"dq": dq, "dr": dr, "dk": dk, "dv": dv}
            full = {"dq": ref[0], "dr": ref[1], "dk": ref[2], "dv": ref[3]}
            errs = {n: errors(got[n], full[n]) for n in names}
            del ref, full
            torch.cuda.empty_cache()
        t_fwd, t_bwd = time_ms(fwd, a.reps), time_ms(bwd, a.reps)

        qt = q.transpose(1, 2).detach().requires_grad_()
        kt = k.transpose(1, 2).detach().requires_grad_()
        vt = v.transpose(1, 2).detach().requires_grad_()
        gt = dout.transpose(1, 2)

        def sdpa_step(be):
            def run():
                with sdpa_kernel(be):
                    out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True,
                                                                           enable_gqa=HQ != HKV)
                torch.autograd.grad(out, (qt, kt, vt), gt)
            return run

        contenders = [("plx", step)]
        for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("fa2", SDPBackend.FLASH_ATTENTION)):
            try:
                sdpa_step(be)()
                contenders.append((name, sdpa_step(be)))
            except Exception as e:  # the backend refuses the shape
                print(f"# {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        fns = [fn for _, fn in contenders]
        if a.order == "rounds":
            meds, ratio = time_rounds(fns, a.reps)
        else:
            meds = [time_ms(fn, a.reps) for fn in fns]
            ratio = meds[0] / meds[1] if len(meds) > 1 else nan
        times = {"cudnn": nan, "fa2": nan}
        times.update({name: m for (name, _), m in zip(contenders, meds)})
        t_step = times.pop("plx")
        if len(contenders) < 2 or contenders[1][0] != "cudnn":
            ratio = nan
        worst = max((e["q50"] for e in errs.values()), default=nan)
        worst_max = max((e["max"] for e in errs.values()), default=nan)
        any_nan = any(e["nan"] for e in errs.values())
        print(f"| {B} | {L} | {HQ} | {HKV}{'' if D == 128 else f' (d {D})'} | {t_fwd:.2f} | {t_bwd:.2f} | {t_step:.2f} | {times['cudnn']:.2f} | "
              f"{times['fa2']:.2f} | {ratio:.2f} | {worst:.2e} ({worst_max:.2e})"
              f"{' NaN!' if any_nan else ''} |", flush=True)
        print(json.dumps(dict(kind="train_step", family=fam, B=B, L=L, HQ=HQ, HKV=HKV, D=D, causal=True,
                              dtype="bf16", plx_fwd_ms=t_fwd, plx_bwd_ms=t_bwd, plx_step_ms=t_step,
                              cudnn_step_ms=times["cudnn"], fa2_step_ms=times["fa2"], plx_over_cudnn=ratio, grad_err=errs)), flush=True)


if __name__ == "__main__":
    main()
