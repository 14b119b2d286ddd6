#!/usr/bin/env bash
# GPU run 44 (2026-11-29, sixth session): paged decode stages block-table entries into
# shared memory with cp.async, kAhead tiles early (kv_loader.cuh; run 43's ncu put page
# 16's extra time on the first use of page numbers read into registers). The whole
# attention suite (every shipped variant now also paged), then decode A/B against main's
# plx-bench (build-exp/main), twice, and the #4 decode grid against torch's cuDNN/FA decode.
source "$(dirname "$0")/lib.sh"
run attn 300 build/tests/test_gpu_attention -r compact "[gpu]"
D=$L/decode_staged_table.jsonl; : > "$D"
for rep in 1 2; do
  for tag in main staged; do
    bin=$( [ $tag = main ] && echo build-exp/main/plx-bench || echo build/plx-bench )
    for args in "--shapes 1x32768x32x8" "--shapes 1x32768x32x8 --page 16" "--shapes 1x32768x32x8 --page 16 --page-order linear" \
                "--shapes 1x32768x32x8 --page 32" "--shapes 1x32768x32x8 --page 64" \
                "--shapes 8x8192x32x8" "--shapes 8x8192x32x8 --page 16" "--shapes 8x8192x32x8 --page 64"; do
      timeout 60 $bin decode --family parallax $args --reps 100 | sed "s/^{/{\"rep\":$rep,\"tag\":\"$tag\",/" >> "$D" 2>&1
    done
  done
  pack
done
python3 - "$D" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): print(l.strip()[:200]); continue
    r = json.loads(l)
    print(r['rep'], r['tag'], r['batch'], r['kv_len'], 'page', r.get('page'), r.get('page_order', ''), 'splits', r.get('splits'), r['median_us'])
PY
echo "total $(( $(date +%s) - T0 ))s"
