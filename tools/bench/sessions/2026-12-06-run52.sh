#!/usr/bin/env bash
# GPU run 52 (2026-12-06, seventh session). Issue 5's d 64 shape (2 x 8192 x 32/8) sat at
# 516-529 TFLOP/s against its 520 bar in runs 48-51 with the 3-consumer plain loop (the
# pipelined loop does not fit 152 registers). Now that the pipelined loop sums rows on the
# tensor cores, the 2-consumer pipelined d 64 variants against the default, twice, with
# torch in the same run. Carry build-run.
# Run 53 (the same script with VARIANTS set, see the session's PERFORMANCE notes): three
# consumers with block_n 64, where the pipelined loop fits 152 registers, and 3-4 stages.
source "$(dirname "$0")/lib.sh"
S=2x8192x32x8x64
J=$L/d64.jsonl; : > "$J"
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $S --reps 10 | sed 's/^{/{"tag":"torch",/' >> "$J" 2>&1
for rep in 1 2; do
  timeout 60 build/plx-bench prefill --family parallax --shapes $S --reps 10 | sed "s/^{/{\"tag\":\"default$rep\",/" >> "$J" 2>&1
  for v in ${VARIANTS:-m64_n128_w12_s2_k1_wgmma-pipe m64_n128_w12_s3_k1_wgmma-pipe m64_n128_w12_s3_k1_wgmma-pipe-pp m64_n128_w12_s2_k1_wgmma-pipe-pp}; do
    timeout 60 build/plx-bench prefill --family parallax --shapes $S --reps 10 --variant plx_prefill_parallax_bf16_d64_causal_${v}_sm90a \
      | sed "s/^{/{\"tag\":\"$v$rep\",/" >> "$J" 2>&1
  done
  pack
done
prefill_table "$J" | sort -k1,1 > "$L/d64_table.txt"; pack; cat "$L/d64_table.txt"
echo "total $(( $(date +%s) - T0 ))s"
