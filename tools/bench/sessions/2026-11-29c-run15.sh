#!/usr/bin/env bash
# GPU run 15 (2026-11-29, third session): the persistent Hopper prefill (one CTA per SM
# walking the work items in snake order, AttnParams::persistent; the next item's Q copied under the current item's last tile) against the oracle, in
# both modes (PLX_PREFILL_GRID=items is the old one CTA per item), the training forward's
# statistics (backward suite), then the A/B of the two modes on the issue-5 shapes, twice,
# with torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run prefill_sm90 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
PLX_PREFILL_GRID=items run prefill_sm90_items 200 build/tests/test_gpu_prefill_sm90 -r compact "[gpu]"
run backward 120 build/tests/test_gpu_backward -r compact
P=1x4096x16x8,1x16384x16x8,8x4096x16x8,2x8192x32x8x64
J=$L/prefill_ab.jsonl; : > "$J"
for rep in 1 2; do for grid in items persistent; do for f in parallax softmax; do
  PLX_PREFILL_GRID=$grid timeout 60 build/plx-bench prefill --family $f --shapes $P --reps 10 \
    | sed "s/^{/{\"tag\":\"$grid-$rep\",/" >> "$J" 2>&1
done; done; done
timeout 60 python3 tools/bench/torch_baseline.py prefill --shapes $P --reps 10 >> "$J" 2>&1
prefill_table "$J"; pack
echo "total $(( $(date +%s) - T0 ))s"
run train_step 120 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5
tail -n 4 "$L/train_step.log"
