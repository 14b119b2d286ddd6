#!/usr/bin/env bash
# GPU run 25 (2026-11-29, fourth session): ping-pong turns for the wgmma backward's
# consumers (mma wgmma-pp) against the default loop: oracle cases, then the training step
# (parallax and softmax, d 128 and d 64) with each, torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run bwd_wgmma 150 build/tests/test_gpu_backward -r compact "[wgmma]"
S=1x4096x16x8,1x16384x16x8,2x8192x32x8x64
for fam in parallax softmax; do for m in default wgmma-pp; do
  if [ $m = default ]; then unset PLX_BACKWARD_MMA; else export PLX_BACKWARD_MMA=$m; fi
  run "train_${fam}_$m" 120 python3 tools/bench/train_step.py --family $fam --shapes $S --lib build/libparallax.so \
    --reps 10 --no-check
  echo "$fam $m"; grep '^| ' "$L/train_${fam}_$m.log" | grep -v '| B'
done; done
echo "total $(( $(date +%s) - T0 ))s"
