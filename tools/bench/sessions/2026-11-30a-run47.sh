#!/usr/bin/env bash
# GPU run 47 (2026-11-29, sixth session): run 46 showed the TMA ring ahead for paged page 16
# at batch 1 only (1.06 of contiguous) and behind at 64 / 256 (batch, kv head) pairs
# (1.12-1.14); the default now takes TMA only for <= 16 pairs. The paged oracle cases and
# the paged rows once more against contiguous, same run.
source "$(dirname "$0")/lib.sh"
run paged 90 build/tests/test_gpu_attention -r compact "paged KV cache*"
P=1x32768x32x8,8x8192x32x8,32x4096x8x8,32x16384x8x8
for pg in 0 16 32 64; do
  timeout 40 build/plx-bench decode --family parallax --page $pg --reps 100 --shapes $P >> "$L/paged.jsonl" 2>&1
done
pack
python3 - "$L/paged.jsonl" <<'PY'
import json, sys
key = lambda r: (r['batch'], r['kv_len'], r['heads_q'], r['heads_kv'], r['d'])
pg = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
for r in pg:
    c = next((x for x in pg if x['page'] == 0 and key(x) == key(r)), None)
    print('x'.join(map(str, key(r))), 'page', r['page'], r['variant'][-30:], r['splits'], r['median_us'],
          f"{r['median_us'] / c['median_us']:.3f}" if c else '')
PY
echo "total $(( $(date +%s) - T0 ))s"
