#!/usr/bin/env bash
# Prepared for the next GPU session (not yet run). Issue 4: the TMA + mbarrier K/V ring for
# sm_90a decode (templates/plx/kv_tma.cuh, names ending _tma_sm90a) against the cp.async
# ring, same binary, same run. The open bar: paged page 16 at 1 x 32768 x 32 x 8 was 1.11x
# the contiguous time (44.6 vs 40.2 us). Carry build-run/ (tools/bench/stage_build_run.sh).
#  1. correctness first, under timeout (a hang is an mbarrier that never completes):
#     the [tma] cases of test_gpu_attention (both loaders on poisoned dead rows, pages 16..256,
#     splits, windows, seqused_k, every variant of specs/decode_sm90_tma.yaml);
#  2. A/B: each shape contiguous and paged (16, 64), cp.async s3 vs TMA s3 and s4, interleaved
#     per shape so clocks and L2 state are shared; twice, to see the spread.
source "$(dirname "$0")/lib.sh"
run tma_tests 900 build/test_gpu_attention "[tma]"
b=$L/decode_tma_ab.jsonl; : > "$b"
P=plx_decode_parallax_bf16_d128_causal_m8_n64_w4
for rep in 1 2; do
  for S in 1x32768x32x8 32x16384x8x8 8x8192x32x8; do
    for pg in 0 16 64; do
      for V in ${P}_s3_kauto_sm90a ${P}_s3_kauto_tma_sm90a ${P}_s4_kauto_tma_sm90a; do
        timeout 120 build/plx-bench decode --family parallax --shapes $S --page $pg --reps 100 --variant $V \
          | sed "s/^{/{\"rep\":$rep,/" >> "$b" 2>&1
      done
    done
  done
  pack
done
# Softmax, the generator's own baseline, on the headline shape.
for pg in 0 16; do
  for V in plx_decode_softmax_bf16_d128_causal_m16_n64_w4_s3_kauto_sm90a \
           plx_decode_softmax_bf16_d128_causal_m16_n64_w4_s3_kauto_tma_sm90a; do
    timeout 120 build/plx-bench decode --family softmax --shapes 1x32768x32x8 --page $pg --reps 100 --variant $V \
      | sed 's/^{/{"rep":0,/' >> "$b" 2>&1
  done
done
pack
python3 - "$b" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
print('rep shape page variant splits median_us')
for r in rows:
    print(r.get('rep'), f"{r['batch']}x{r['kv_len']}x{r['heads_q']}x{r['heads_kv']}", r.get('page', 0),
          r['variant'].split('_w4_')[-1], r['splits'], r['median_us'])
PY
grep -v '^{' "$b" | head -20
echo "total $(( $(date +%s) - T0 ))s"
