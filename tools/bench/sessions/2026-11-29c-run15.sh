#!/usr/bin/env bash
# GPU run 15 (2026-11-29, third session): run 14's script (the persistent Hopper prefill
# against the oracle in both grid modes, the backward suite, the A/B on the issue-5 shapes
# with torch SDPA in the same run) on the build that also copies the next item's Q under
# the current item's last tile, then the training-step benchmark.
source "$(dirname "$0")/2026-11-29c-run14.sh"
run train_step 120 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5
tail -n 4 "$L/train_step.log"
