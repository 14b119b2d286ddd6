#!/usr/bin/env bash
# GPU run 40 (2026-11-29, sixth session): KvLoader prefetches the block-table line 8 tiles
# ahead into L1 (commit 4e4e851, never run: runs 37-39 put page 16's extra time in the
# table lookups). build-exp/E1 holds plx-bench and test_gpu_attention with the prefetch;
# build-run is main without it. The whole attention suite on E1 (also the first GPU run of
# the sm_80 kernels after the cp_async_ring refactor), then decode A/B, twice, alternating.
source "$(dirname "$0")/lib.sh"
run attn_e1 280 build-exp/E1/test_gpu_attention -r compact "[gpu]"
D=$L/decode_prefetch.jsonl; : > "$D"
V=plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_k16_sm90a
for rep in 1 2; do
  for bin in build/plx-bench build-exp/E1/plx-bench; do
    tag=$( [ "$bin" = build/plx-bench ] && echo main || echo prefetch )
    for S in 1x32768x32x8 8x8192x32x8; do
      for pg in 0 16 32 64; do
        P=$( [ $pg = 0 ] && echo "" || echo "--page $pg" )
        timeout 60 $bin decode --family parallax --shapes $S $P --reps 100 \
          | sed "s/^{/{\"rep\":$rep,\"tag\":\"$tag\",/" >> "$D" 2>&1
      done
    done
    for pg in 16 32; do
      timeout 60 $bin decode --family parallax --shapes 1x32768x32x8 --page $pg --page-order linear --reps 100 \
        --variant $V | sed "s/^{/{\"rep\":$rep,\"tag\":\"$tag-forced16\",/" >> "$D" 2>&1
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
