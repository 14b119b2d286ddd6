#!/usr/bin/env bash
# Issue 8 on the H200: the *installed* examples/decode against this build's plx::Engine,
# byte for byte, plus the example's time per step and the CI test's GPU branch
# (tests/test_install). Prints one PASS/FAIL line per check; exit 1 if any failed.
#
#   tools/bench/sessions/2026-11-29-example-gpu.sh [batch kv_capacity steps]  (8 8192 20)
#
# Run from the repository root with the prebuilt build carried in build-run/ (these
# files of a `ninja -C build`, kept at their paths under build/, about 7 MB):
#   CMakeCache.txt cmake_install.cmake tests/cmake_install.cmake libparallax.so
#   libparallax.so.0 libparallax.so.0.1.0 plx plx-bench parallaxConfig.cmake
#   parallaxConfigVersion.cmake parallax.pc tests/test_install
# The machine needs cmake, ninja, a C++ compiler and the CUDA toolkit (the example links
# cudart); not yaml-cpp, fmt or Catch2, which are inside the binaries already.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p "$O"
B=${1:-8} L=${2:-8192} S=${3:-20}
# The install rules and test_install name the tree the binaries were built in by absolute
# path: link that path to this checkout and its build/ to build-run/.
cache=build-run/CMakeCache.txt
[ -f $cache ] || { echo "FAIL no $cache (carry the prebuilt build as build-run/)"; exit 1; }
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' $cache)
bin=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' $cache)
[ -e "$src" ] || { mkdir -p "$(dirname "$src")"; ln -s "$PWD" "$src"; }
[ -e "$bin" ] || ln -s "$PWD/build-run" "$bin"
cd "$src" || exit 1
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
export PLX_SOURCE_DIR=$src PLX_CACHE_DIR=${PLX_CACHE_DIR:-/tmp/plx-cache}
unset PLX_TUNE  # a tune inside the first call would run another variant than the one printed
rc=0
ok() { echo "PASS $*"; }
no() { echo "FAIL $*"; rc=1; }
# step NAME CMD...: runs CMD with its output in $O/NAME.log; on failure shows its end.
step() {
  local name=$1; shift
  if "$@" > "$O/$name.log" 2>&1; then ok "$name"; else no "$name (rc $?, $O/$name.log)"; tail -n 20 "$O/$name.log"; fi
}

date -u +%FT%TZ
if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; fi
echo "tree $src, build $bin, cache $PLX_CACHE_DIR"
ldd "$bin/libparallax.so" > "$O/ldd.txt" 2>&1
if grep -Eq 'not found|yaml|fmt' "$O/ldd.txt"; then no "libparallax.so's libraries:"; cat "$O/ldd.txt"
else ok "libparallax.so: every needed library found, no yaml-cpp or fmt"; fi

P=/tmp/plx-prefix X=/tmp/plx-decode
rm -rf $P $X
step install cmake --install "$bin" --prefix $P
step example-build bash -c "cmake -S examples/decode -B $X -G Ninja -DCMAKE_PREFIX_PATH=$P && cmake --build $X"
step example-run $X/plx-decode "$B" "$L" "$S" --dump "$O/example-o.bin"
grep -E '^(device|variant|first call|mean|output checksum|wrote)' "$O/example-run.log"

# The same output from this build's engine, pinned to the variant the example ran.
V=$(sed -n 's/^variant: \([^ ]*\).*/\1/p' "$O/example-run.log")
step engine-run "$bin/plx-bench" example-decode --batch "$B" --kv "$L" --variant "${V:-none}" --dump "$O/engine-o.bin"
grep '^{' "$O/engine-run.log"
if [ ! -f "$O/example-o.bin" ] || [ ! -f "$O/engine-o.bin" ]; then no "no output to compare"
elif cmp "$O/example-o.bin" "$O/engine-o.bin"; then ok "example output == engine output, bitwise ($V, $(stat -c %s "$O/engine-o.bin") bytes)"
else no "example output differs from the engine's ($V)"; fi
if grep -q "\"chosen\":\"$V\"" "$O/engine-run.log"; then ok "the engine chooses the example's variant"
else no "the engine chooses another variant than the example's $V"; fi

# The CI test on a GPU: its own temporary prefix, the examples built and run, and the
# decode example (2 x 1024, 4 steps) against the in-process engine.
step test_install "$bin/tests/test_install"
grep -E 'bitwise equal|test cases|All tests passed' "$O/test_install.log"
echo "example-gpu done rc=$rc"
exit $rc
