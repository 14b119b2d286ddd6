#!/usr/bin/env bash
# GPU run 3a (2026-11-29): backward + stats, prefill default (wgmma) through the engine,
# plx tune on the default specs (budgeted), the tuned engine, training-step benchmark.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u +%FT%TZ
(timeout 150 build/tests/test_gpu_backward -r compact > $O/backward.log 2>&1; echo "backward rc=$?"); grep -E "failed|passed|gradient errors" $O/backward.log | tail -c 1500
(timeout 120 build/tests/test_gpu_attention -r compact "odd lengths*","sliding windows","non-causal*","fully masked*","every GQA*","seqused_k*" > $O/attn_subset.log 2>&1; echo "attention subset rc=$?"); tail -c 600 $O/attn_subset.log
(time timeout 280 build/plx tune --budget-s 160 --out $O/tune.json --csv $O/tune.csv) > $O/tune.log 2>&1; echo "tune rc=$?"; tail -c 3500 $O/tune.log
build/plx db show > $O/db.txt 2>&1; head -c 1500 $O/db.txt
(timeout 90 python3 build-run/src/tools/bench/train_step.py --lib build/libparallax.so --reps 5 > $O/train.log 2>&1; echo "train rc=$?"); tail -c 2000 $O/train.log
echo run3a-done
