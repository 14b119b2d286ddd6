#!/usr/bin/env bash
# GPU run 23 (2026-11-29, fourth session): the wgmma backward's tile at d 64 (block_n 32 /
# 64, 2 or 3 consumers, plain / pipelined loop) on the training step at issue 5's d 64
# shape and 1 x 4096, against the mma.sync default and torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
S=1x4096x16x8x64,2x8192x32x8x64
run train_d64_sync 90 python3 tools/bench/train_step.py --shapes $S --lib build/libparallax.so --reps 5 --no-check
echo "mma.sync default"; grep '^| ' "$L/train_d64_sync.log" | grep -v B
for t in 128,32,12,4 128,64,12,4 192,32,16,4; do for m in wgmma wgmma-pipe; do
  [ $t/$m = 192,32,16,4/wgmma-pipe ] && continue
  PLX_BACKWARD_MMA=$m PLX_BACKWARD_TILE=$t run "train_d64_${t}_$m" 90 python3 tools/bench/train_step.py --shapes $S \
    --lib build/libparallax.so --reps 5 --no-check
  echo "$t $m"; grep '^| ' "$L/train_d64_${t}_$m.log" | grep -v B
done; done
echo "total $(( $(date +%s) - T0 ))s"
