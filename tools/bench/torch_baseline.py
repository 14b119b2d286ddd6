"""Softmax baselines for docs/PERFORMANCE.md, timed the same way as plx-bench (CUDA events,
median of --reps, cold-L2 rotating buffers): PyTorch SDPA with the FlashAttention-2 backend
and with the cuDNN backend. Comparison only; the product never imports torch.

  python3 tools/bench/torch_baseline.py decode --batch 1,8,32 --kv 1024,4096,16384 --heads-q 32 --heads-kv 8
"""
import argparse, json
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

p = argparse.ArgumentParser()
p.add_argument("op", choices=["decode", "prefill"])
p.add_argument("--batch", default="1,8,32")
p.add_argument("--kv", default="1024,4096,16384")
p.add_argument("--heads-q", type=int, default=32)
p.add_argument("--heads-kv", type=int, default=8)
p.add_argument("--d", type=int, default=128)
p.add_argument("--q-len", type=int, default=1)
p.add_argument("--reps", type=int, default=200)
p.add_argument("--dtype", default="bf16")
p.add_argument("--shapes", default="", help="BxLxHqxHkv[xD],... instead of --batch x --kv")
a = p.parse_args()
dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
l2 = torch.cuda.get_device_properties(0).L2_cache_size

if a.shapes:
    shapes = []
    for t in a.shapes.split(","):
        f = [int(x) for x in t.split("x")]
        shapes.append((f[0], f[1], f[2], f[3], f[4] if len(f) > 4 else a.d))
else:
    shapes = [(B, L, a.heads_q, a.heads_kv, a.d) for B in map(int, a.batch.split(",")) for L in map(int, a.kv.split(","))]

for B, L, HQ, HKV, D in shapes:
        a.heads_q, a.heads_kv, a.d = HQ, HKV, D
        T = a.q_len if a.op == "decode" else L
        # [B, H, T, D] views of [B, T, H, D] storage, like the engine's layout
        qb = B * T * a.heads_q * a.d * 2
        kvb = B * L * a.heads_kv * a.d * 2
        copies = max(1, min(64, (2 * l2) // (2 * qb + 2 * kvb) + 1))
        sets = []
        for _ in range(copies):
            q = torch.randn(B, T, a.heads_q, a.d, device="cuda", dtype=dt).transpose(1, 2)
            k = torch.randn(B, L, a.heads_kv, a.d, device="cuda", dtype=dt).transpose(1, 2)
            v = torch.randn(B, L, a.heads_kv, a.d, device="cuda", dtype=dt).transpose(1, 2)
            sets.append((q, k, v))
        for name, backend in (("sdpa_flash2", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    run = lambda s: torch.nn.functional.scaled_dot_product_attention(
                        s[0], s[1], s[2], is_causal=(a.op == "prefill"), enable_gqa=a.heads_q != a.heads_kv)
                    for i in range(10):
                        run(sets[i % copies])
                    torch.cuda.synchronize()
                    ms = []
                    for i in range(a.reps):
                        e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True)
                        # ~40 us of GPU spin first, so the events time the GPU, not the
                        # host's dispatch (plx-bench does the same).
                        torch.cuda._sleep(80000)
                        e0.record(); run(sets[i % copies]); e1.record(); e1.synchronize()
                        ms.append(e0.elapsed_time(e1))
                ms.sort()
                med = 1e3 * ms[len(ms) // 2]
                print(json.dumps(dict(op=a.op, impl=name, family="softmax", dtype=a.dtype, batch=B, q_len=T, kv_len=L,
                                      heads_q=a.heads_q, heads_kv=a.heads_kv, d=a.d, median_us=round(med, 2),
                                      p10_us=round(1e3 * ms[len(ms) // 10], 2))), flush=True)
            except Exception as e:  # a backend that refuses the shape
                print(json.dumps(dict(op=a.op, impl=name, batch=B, kv_len=L, error=str(e)[:200])), flush=True)
