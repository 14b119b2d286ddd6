#!/usr/bin/env bash
# decode part of GPU run 2: new in-kernel merge, split sweep for the heuristics.
B=${B:?}; O=${OUT:-/tmp/out}
J=$O/decode2.jsonl; : > $J
$B/tests/test_gpu_attention -r compact "*split*" > $O/split_tests.log 2>&1; echo "split tests rc=$?"; tail -2 $O/split_tests.log
S128="1x4096x8x8,1x16384x8x8,1x32768x32x8,1x131072x32x8,8x8192x32x8,2x16384x8x8"
for k in 4 8 12 16 20 24 33 48 66; do
  $B/plx-bench decode --family parallax --shapes $S128 --reps 100 --variant plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_k${k}_sm90a | sed 's/^{/{"sweep":1,/' >> $J
  $B/plx-bench decode --family parallax --shapes 4x8192x32x8x64,32x4096x8x8x64 --reps 100 --variant plx_decode_parallax_bf16_d64_causal_m8_n64_w4_s3_k${k}_sm90a | sed 's/^{/{"sweep":1,/' >> $J
done
$B/plx-bench decode --family parallax --shapes $S128,4x8192x32x8x64,32x4096x8x8x64 --reps 100 >> $J
PLX_DECODE_MERGE=kernel $B/plx-bench decode --family parallax --shapes $S128,4x8192x32x8x64,32x4096x8x8x64 --reps 100 | sed 's/^{/{"merge":"kernel",/' >> $J
python3 $B/src/tools/bench/torch_baseline.py decode --shapes $S128,4x8192x32x8x64,32x4096x8x8x64 --reps 100 >> $J 2>&1
echo decode-done
