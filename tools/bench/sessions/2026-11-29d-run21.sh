#!/usr/bin/env bash
# GPU run 21 (2026-11-29, fourth session): wgmma descriptors as one add per k-step
# (sm90::desc_at, every Sw128Tile user), the backward's consumers instantiated per
# warpgroup (uniform descriptors) and its producer's whole-tile copies. Oracle suites
# first (backward under PLX_BACKWARD_MMA=wgmma, prefill), then the training step (ring
# depth 3 and 4) and the prefill table with torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run bwd_wgmma 120 build/tests/test_gpu_backward -r compact "[wgmma]"
PLX_BACKWARD_MMA=wgmma run bwd_all_wgmma 150 build/tests/test_gpu_backward -r compact "[gpu][backward]"
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
for t in 128,32,12,3 128,32,12,4; do
  PLX_BACKWARD_MMA=wgmma PLX_BACKWARD_TILE=$t run "train_$t" 90 python3 tools/bench/train_step.py \
    --lib build/libparallax.so --reps 5 --no-check
  echo "tile $t"; grep '^| 1' "$L/train_$t.log"
done
P128=1x4096x16x8,1x16384x16x8,8x4096x16x8
P64=2x8192x32x8x64
J=$L/prefill.jsonl; : > "$J"
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P128,$P64 --reps 10 | sed 's/^{/{"tag":"torch",/' >> "$J" 2>&1
for f in parallax softmax; do timeout 60 build/plx-bench prefill --family $f --shapes $P128,$P64 --reps 10 \
  | sed 's/^{/{"tag":"default",/' >> "$J" 2>&1; done
prefill_table "$J" | sort -k2,2 -k3,3 -k4,4n -k5,5n > "$L/prefill_table.txt"; pack
cat "$L/prefill_table.txt"
echo "total $(( $(date +%s) - T0 ))s"
