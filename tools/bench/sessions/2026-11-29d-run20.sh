#!/usr/bin/env bash
# GPU run 20 (2026-11-29, fourth session): (1) the wgmma backward's ring depth and block_m
# through PLX_BACKWARD_TILE on the training step (no gradient check: timing only); (2)
# Nsight Compute on the wgmma backward at 1 x 16384 (where the step misses its bar); (3)
# the prepared Nsight Compute run on the persistent prefill (2026-11-30-ncu-prefill.sh).
source "$(dirname "$0")/lib.sh"
export PLX_BACKWARD_MMA=wgmma
for t in 128,32,12,2 128,32,12,3 128,32,12,4 64,32,8,4; do
  PLX_BACKWARD_TILE=$t run "train_$t" 90 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5 --no-check
  echo "tile $t"; grep '^| 1' "$L/train_$t.log"
done
s=$(date +%s)
timeout 150 ncu --clock-control none --set full --import-source no -k regex:backward_sm90 -c 1 -o "$L/prof_bwd" \
  python3 tools/bench/train_step.py --lib build/libparallax.so --reps 1 --no-check --shapes 1x16384x16x8 \
  > "$L/ncu_bwd.log" 2>&1
echo "ncu bwd rc=$? $(( $(date +%s) - s ))s"
ncu --import "$L/prof_bwd.ncu-rep" --page details > "$L/details_bwd.txt" 2>&1
ncu --import "$L/prof_bwd.ncu-rep" --page source --csv --print-source sass > "$L/sass_bwd.csv" 2>&1
ncu --import "$L/prof_bwd.ncu-rep" --page raw --csv > "$L/raw_bwd.csv" 2>&1
grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Registers|Shared Memory Config' \
  "$L/details_bwd.txt" | head -20
rm -f "$L/prof_bwd.ncu-rep"; pack
unset PLX_BACKWARD_MMA
bash tools/bench/sessions/2026-11-30-ncu-prefill.sh
echo "total $(( $(date +%s) - T0 ))s"
