#!/usr/bin/env bash
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache PYTHONUNBUFFERED=1
mkdir -p build-run/src/tools; cp -r tools/bench build-run/src/tools/
B=/work/main/build bash scratch/run2_decode.sh
(timeout 330 build/tests/test_gpu_attention -r compact > $O/gpu_attention.log 2>&1; echo "gpu_attention rc=$?"); grep -E "failed|passed|FAILED" $O/gpu_attention.log | tail -c 3000
echo run2b-done
