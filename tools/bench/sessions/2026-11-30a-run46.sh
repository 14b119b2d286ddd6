#!/usr/bin/env bash
# GPU run 46 (2026-11-29, sixth session): main after merging decode-tma2 (TMA ring with a
# producer warp; the cp.async kernel's code moved too) with paged decode under 64-key pages
# defaulting to TMA, 4 stages, on sm_90a. The whole attention suite (every shipped variant,
# TMA ones included, contiguous and paged; the paged cases take the new default), the C
# API, then issue 4's decode grid with torch's cuDNN/FA2 decode in the same run and the
# paged rows (pages 16, 32, 64) against the contiguous cache, twice.
source "$(dirname "$0")/lib.sh"
run attn 330 build/tests/test_gpu_attention -r compact "[gpu]"
run c_api 60 build/tests/test_c_api -r compact
ref="1x4096x16x8,1x4096x32x8,1x32768x16x8,1x32768x32x8,1x131072x16x8,1x131072x32x8,8x8192x16x8,8x8192x32x8"
ref="$ref,32x8192x16x8,32x8192x32x8,64x4096x16x8,64x4096x32x8,128x2048x16x8,128x2048x32x8,16x32768x16x8,16x32768x32x8"
mha="1x512x8x8,1x1024x8x8,1x4096x8x8,1x16384x8x8,32x512x8x8,32x1024x8x8,32x4096x8x8,32x16384x8x8"
shapes="$ref,$mha,4x8192x32x8x64,32x4096x8x8x64"
G=$L/grid.jsonl; : > "$G"
for fam in parallax softmax; do timeout 120 build/plx-bench decode --family $fam --shapes "$shapes" --reps 100 >> "$G" 2>&1; done
timeout 120 python3 tools/bench/torch_baseline.py decode --shapes "$shapes" --reps 100 >> "$G" 2>&1
pack
P=1x32768x32x8,8x8192x32x8,32x4096x8x8,32x16384x8x8
for rep in 1 2; do
  for pg in 0 16 32 64; do
    timeout 60 build/plx-bench decode --family parallax --page $pg --reps 100 --shapes $P \
      | sed "s/^{/{\"rep\":$rep,/" >> "$L/paged.jsonl" 2>&1
  done
done
pack
python3 - "$G" "$L/paged.jsonl" <<'PY'
import json, sys, math
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
key = lambda r: (r['batch'], r['kv_len'], r['heads_q'], r['heads_kv'], r['d'])
ours = {(r['family'], key(r)): r for r in rows if r.get('impl') == 'plx'}
base = {(r.get('impl'), key(r)): r for r in rows if r.get('impl') != 'plx' and 'median_us' in r}
print('backends seen:', sorted({b for b, _ in base}))
for fam in ('parallax', 'softmax'):
    rs = []
    for (f, k), r in sorted(ours.items()):
        if f != fam: continue
        c = next((base[(b, k)] for b in ('sdpa_cudnn',) if (b, k) in base), None)
        if not c: continue
        x = r['median_us'] / c['median_us']; rs.append(x)
        print(fam, 'x'.join(map(str, k)), r.get('splits'), r['median_us'], c['median_us'], f"{x:.3f}", r.get('GBps'))
    if rs: print(fam, 'geomean', f"{math.exp(sum(map(math.log, rs)) / len(rs)):.3f}", 'max', f"{max(rs):.3f}", 'n', len(rs))
pg = [json.loads(l) for l in open(sys.argv[2]) if l.startswith('{')]
for r in pg:
    c = next((x for x in pg if x['rep'] == r['rep'] and x['page'] == 0 and key(x) == key(r)), None)
    print('paged', r['rep'], 'x'.join(map(str, key(r))), 'page', r['page'], r['variant'][-30:], r['splits'], r['median_us'],
          f"{r['median_us'] / c['median_us']:.3f}" if c else '')
PY
echo "total $(( $(date +%s) - T0 ))s"
