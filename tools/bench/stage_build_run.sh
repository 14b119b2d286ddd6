#!/usr/bin/env bash
# Copies what a GPU session needs from a build folder into build-run/ (ignored by git), the
# one folder the device tool carries (64 MiB limit): the CLI, the benchmark, the library
# with its install files, and the GPU test executables. Usage: stage_build_run.sh [BUILD]
set -euo pipefail
src=${1:-build}
cd "$(dirname "$0")/../.."
rm -rf build-run; mkdir -p build-run/tests
cp -a "$src"/{plx,plx-bench,CMakeCache.txt,cmake_install.cmake,parallax.pc} build-run/
cp -a "$src"/libparallax.so* "$src"/parallaxConfig*.cmake build-run/
for t in test_gpu_prefill_sm90 test_gpu_attention test_gpu_backward test_backward_tune test_c_api test_install test_cli test_measure \
         cmake_install.cmake; do
  cp -a "$src/tests/$t" build-run/tests/
done
du -sh build-run
