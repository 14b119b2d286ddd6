#!/usr/bin/env bash
# GPU run 40 (2026-11-29, fifth session): KvLoader prefetches the block-table line 8 tiles
# ahead into L1 (run 39: the page-16 cost scaled with table lines per tile). The paged
# oracle cases, then pages 16-256 at the engine's split count and at 16 splits, linear and
# shuffled, against contiguous; twice.
source "$(dirname "$0")/lib.sh"
run paged_tests 120 build/tests/test_gpu_attention -r compact "paged KV cache: pages 16 to 256, shuffled, with live lengths"
run decode_split 120 build/tests/test_gpu_attention -r compact "split-KV on and off give the same answer as the oracle"
D=$L/decode_prefetch.jsonl; : > "$D"
V=plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_k16_sm90a
for rep in 1 2; do
  for S in 1x32768x32x8 8x8192x32x8; do
    timeout 60 build/plx-bench decode --family parallax --shapes $S --reps 100 | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
    for pg in 16 32 64; do
      timeout 60 build/plx-bench decode --family parallax --shapes $S --page $pg --reps 100 | sed "s/^{/{\"rep\":$rep,/" >> "$D" 2>&1
    done
  done
  for pg in 16 32; do
    for o in linear shuffled; do
      timeout 60 build/plx-bench decode --family parallax --shapes 1x32768x32x8 --page $pg --page-order $o --reps 100 \
        --variant $V | sed "s/^{/{\"rep\":$rep,\"forced\":1,/" >> "$D" 2>&1
    done
  done
  pack
done
python3 - "$D" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): print(l.strip()[:200]); continue
    r = json.loads(l)
    print(r['rep'], 'k16' if r.get('forced') else 'auto', f"{r['batch']}x{r['kv_len']}", 'page', r['page'], r['page_order'],
          'splits', r['splits'], r['median_us'])
PY
echo "total $(( $(date +%s) - T0 ))s"
