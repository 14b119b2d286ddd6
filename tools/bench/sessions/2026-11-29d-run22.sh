#!/usr/bin/env bash
# GPU run 22 (2026-11-29, fourth session): the wgmma backward's pipelined consumer loop
# (mma wgmma-pipe; legal except the probe families at d 128) against the oracle with the
# plain loop, the shipped variants (stages 4, both loops), the training step (parallax
# plain s4; softmax plain vs pipelined), and Nsight Compute on the parallax d 128 kernel.
source "$(dirname "$0")/lib.sh"
run bwd_wgmma 150 build/tests/test_gpu_backward -r compact "[wgmma]"
run bwd_shipped 200 build/tests/test_gpu_backward -r compact "[shipped]"
export PLX_BACKWARD_TILE=128,32,12,4
for m in wgmma wgmma-pipe; do for fam in parallax softmax; do
  [ $m/$fam = wgmma-pipe/parallax ] && continue
  PLX_BACKWARD_MMA=$m run "train_${m}_$fam" 90 python3 tools/bench/train_step.py --family $fam \
    --lib build/libparallax.so --reps 5 --no-check
  echo "$m $fam"; grep '^| 1' "$L/train_${m}_$fam.log"
done; done
s=$(date +%s)
PLX_BACKWARD_MMA=wgmma timeout 150 ncu --clock-control none --set full --import-source no -k regex:backward_sm90 -c 1 \
  -o "$L/prof_bwd" python3 tools/bench/train_step.py --lib build/libparallax.so --reps 1 --no-check \
  --shapes 1x16384x16x8 > "$L/ncu_bwd.log" 2>&1
echo "ncu bwd rc=$? $(( $(date +%s) - s ))s"
ncu --import "$L/prof_bwd.ncu-rep" --page details > "$L/details_bwd.txt" 2>&1
ncu --import "$L/prof_bwd.ncu-rep" --page source --csv --print-source sass > "$L/sass_bwd.csv" 2>&1
ncu --import "$L/prof_bwd.ncu-rep" --page raw --csv > "$L/raw_bwd.csv" 2>&1
grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued' "$L/details_bwd.txt" | head
rm -f "$L/prof_bwd.ncu-rep"; pack
echo "total $(( $(date +%s) - T0 ))s"
