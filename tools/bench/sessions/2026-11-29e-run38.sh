#!/usr/bin/env bash
# GPU run 38 (2026-11-29, fifth session): run 37 showed page 16 with a linear block table
# (the contiguous cache's exact layout) still 9% slower than contiguous, so the scatter is
# not the cause. Split count or paging path? The same kernel at fixed split counts
# (variant k16 / k24 / k33) on the contiguous cache and on page 16 / 64, linear order.
source "$(dirname "$0")/lib.sh"
D=$L/decode_splits.jsonl; : > "$D"
P=plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3
for rep in 1 2; do
  for k in 16 24 33; do
    timeout 60 build/plx-bench decode --family parallax --shapes 1x32768x32x8 --reps 100 --variant ${P}_k${k}_sm90a \
      | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
    for pg in 16 64; do
      timeout 60 build/plx-bench decode --family parallax --shapes 1x32768x32x8 --page $pg --page-order linear --reps 100 \
        --variant ${P}_k${k}_sm90a | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
    done
  done
  pack
done
python3 - "$D" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): print(l.strip()[:200]); continue
    r = json.loads(l)
    print(r['rep'], 'page', r['page'], r['page_order'], 'splits', r['splits'], r['median_us'])
PY
echo "total $(( $(date +%s) - T0 ))s"
