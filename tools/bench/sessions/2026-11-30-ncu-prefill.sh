#!/usr/bin/env bash
# Prepared for the next GPU session (not yet run). Issue 5: where the per-item overhead of
# the persistent Hopper prefill goes. On 2026-11-29 (run 17) a K/V tile took 1.87-1.92 us
# per SM on the 4096-key shapes against 1.69 us at 1 x 16384: about two tile-times per work
# item, while the snake schedule is within 0.2% of ideal by simulation. Nsight Compute on
# the Parallax default for 1 x 4096 and 8 x 4096 (and 1 x 16384 as the reference): stall
# reasons, tensor-pipe utilisation, and the SASS of the item boundary (epilogue, Q wait,
# WorkItem), one tarball. Carry build-run/.
source "$(dirname "$0")/lib.sh"
for S in 1x4096x16x8 8x4096x16x8 1x16384x16x8; do
  s=$(date +%s)
  timeout 90 ncu --clock-control none --set full --import-source no -k regex:prefill_sm90 -s 2 -c 1 \
    -o "$L/prof_$S" build/plx-bench prefill --family parallax --shapes $S --reps 3 > "$L/ncu_$S.log" 2>&1
  echo "ncu $S rc=$? $(( $(date +%s) - s ))s"
  ncu --import "$L/prof_$S.ncu-rep" --page details > "$L/details_$S.txt" 2>&1
  ncu --import "$L/prof_$S.ncu-rep" --page source --csv --print-source sass > "$L/sass_$S.csv" 2>&1
  grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Stall|Warp Cycles Per Issued|Tensor' \
    "$L/details_$S.txt" | head -30
  rm -f "$L/prof_$S.ncu-rep"; pack
done
echo "total $(( $(date +%s) - T0 ))s"
