#!/usr/bin/env bash
# GPU run 39 (2026-11-29, fifth session): run 38 put page 16's extra 3 us at 16 splits in
# the paged path itself (page 64 at 16 splits equals the contiguous cache). Does it scale
# with the pages per 64-key tile? Pages 16 / 32 / 64 / 128 / 256, linear and shuffled, 16
# splits, against contiguous; twice.
source "$(dirname "$0")/lib.sh"
D=$L/decode_pagesizes.jsonl; : > "$D"
V=plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_k16_sm90a
for rep in 1 2; do
  timeout 60 build/plx-bench decode --family parallax --shapes 1x32768x32x8 --reps 100 --variant $V \
    | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
  for pg in 16 32 64 128 256; do
    for o in linear shuffled; do
      timeout 60 build/plx-bench decode --family parallax --shapes 1x32768x32x8 --page $pg --page-order $o --reps 100 \
        --variant $V | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
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
