#!/usr/bin/env bash
# GPU run 26 (2026-11-29, fourth session): backward tuning (branch tune-bwd, merged): its
# [gpu] cases, the CLI's backward tune, then a focused `plx tune` of the parallax and
# softmax d 128 GQA-2 buckets of specs/backward_sm90_wgmma.yaml and the training step with
# the tuned winners, torch SDPA in the same run.
source "$(dirname "$0")/lib.sh"
run bwd_tune_gpu 200 build/tests/test_backward_tune -r compact "[gpu]"
run cli_bwd 200 build/tests/test_cli -r compact "[gpu][cli][backward]"
run tune 300 build/plx tune specs/backward_sm90_wgmma.yaml \
  --buckets 'backward_parallax_bf16_d128_causal_bh8_*_g2_*,backward_softmax_bf16_d128_causal_bh8_*_g2_*' \
  --budget-s 30 --out "$L/bwd-tune.json"
tail -25 "$L/tune.log"
build/plx db show > "$L/db.txt" 2>&1; grep backward_ "$L/db.txt" | head -20
run train 120 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 10 --no-check
grep '^| ' "$L/train.log"
echo "total $(( $(date +%s) - T0 ))s"
