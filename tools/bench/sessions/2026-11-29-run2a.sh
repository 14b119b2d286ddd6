#!/usr/bin/env bash
# GPU run 2a (2026-11-29): helpers' GPU tests (wgmma prefill, tuner, python op, backward).
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u +%FT%TZ
(PLX_VERBOSE=1 timeout 150 build/tests/test_gpu_prefill_sm90 "[gpu],[bench]" > $O/prefill_sm90.log 2>&1; echo "prefill_sm90 rc=$?")
grep -vE "^(ok  |   launch)" $O/prefill_sm90.log | tail -c 3000
(timeout 60 build/tests/test_measure "[gpu]" -s > $O/measure.log 2>&1; echo "measure rc=$?"); grep -iE "warn|ceiling|TB/s|TFLOP|passed|failed" $O/measure.log | head -20
(timeout 90 build/tests/test_cli "[gpu]" > $O/cli.log 2>&1; echo "cli rc=$?"); tail -5 $O/cli.log
(timeout 60 build/tests/test_c_api > $O/capi.log 2>&1; echo "capi rc=$?"); tail -2 $O/capi.log
(timeout 120 python3 python/tests/test_attention.py > $O/py.log 2>&1; echo "py rc=$?"); tail -8 $O/py.log
(timeout 60 python3 tools/bench/torch_op_overhead.py --lib build/libparallax.so > $O/py_overhead.log 2>&1; echo "overhead rc=$?"); tail -12 $O/py_overhead.log
(timeout 120 build/tests/test_gpu_backward > $O/backward.log 2>&1; echo "backward rc=$?"); tail -c 2500 $O/backward.log
echo run2a-done
