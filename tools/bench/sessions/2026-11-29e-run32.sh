#!/usr/bin/env bash
# GPU run 32 (2026-11-29, fifth session): where wgmma-red's time goes. Four builds of
# libparallax (build-exp/E*, made by patching backward_sm90.cuh and relinking):
#   E0 as committed (+ per-tile TileRegs), E1 no cp.reduce.async.bulk issued, E2 neither
#   staging stores nor reduction, E3 also no dQ/dR wgmma (E1-E3 give wrong dq/dr: timing
#   only). Training step bwd ms at 1 x 4096 and 1 x 16384, parallax d 128; E0 also with the
#   default loop and with the gradient check.
source "$(dirname "$0")/lib.sh"
S=1x4096x16x8,1x16384x16x8
run e0_default 60 python3 tools/bench/train_step.py --lib build-exp/E0/libparallax.so --reps 10 --shapes $S
PLX_BACKWARD_MMA=wgmma-red run e0_red_check 60 python3 tools/bench/train_step.py --lib build-exp/E0/libparallax.so --reps 10 --shapes $S
for e in E0 E1 E2 E3; do
  PLX_BACKWARD_MMA=wgmma-red run "red_$e" 60 python3 tools/bench/train_step.py --lib build-exp/$e/libparallax.so --reps 10 --no-check --shapes $S
done
for f in e0_default e0_red_check red_E0 red_E1 red_E2 red_E3; do echo "$f"; grep '^| ' "$L/$f.log" | grep -v '| B'; done
echo "total $(( $(date +%s) - T0 ))s"
