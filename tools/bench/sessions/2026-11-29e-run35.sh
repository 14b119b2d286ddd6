#!/usr/bin/env bash
# GPU run 35 (2026-11-29, fifth session): Nsight Compute on wgmma-red with 8 KB bulk
# reductions at 1 x 16384 x 16/8 x 128 (the shape of the issue-7 bar), with per-instruction
# stall sampling, to see what the reductions cost.
source "$(dirname "$0")/lib.sh"
s=$(date +%s)
PLX_BACKWARD_MMA=wgmma-red timeout 200 ncu --clock-control none --set full --import-source no -k regex:backward_sm90 -c 1 \
  -o "$L/prof_red" python3 tools/bench/train_step.py --lib build/libparallax.so --reps 1 --no-check \
  --shapes 1x16384x16x8 > "$L/ncu_red.log" 2>&1
echo "ncu rc=$? $(( $(date +%s) - s ))s"
ncu --import "$L/prof_red.ncu-rep" --page details > "$L/details_red.txt" 2>&1
ncu --import "$L/prof_red.ncu-rep" --page source --csv --print-source sass > "$L/sass_red.csv" 2>&1
ncu --import "$L/prof_red.ncu-rep" --page raw --csv > "$L/raw_red.csv" 2>&1
rm -f "$L/prof_red.ncu-rep"; gzip -f "$L/sass_red.csv" "$L/raw_red.csv"; pack
grep -E 'Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|L2 Hit|Local Memory Spilling Req' \
  "$L/details_red.txt" | head -16
echo "total $(( $(date +%s) - T0 ))s"
