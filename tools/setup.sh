#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine and builds parallax-jit into build/.
# Installs only what is missing (Debian packages), so a second run is just the build.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
dpkg -s libfmt-dev >/dev/null 2>&1 || need+=(libfmt-dev)
dpkg -s libyaml-cpp-dev >/dev/null 2>&1 || need+=(libyaml-cpp-dev)
dpkg -s catch2 >/dev/null 2>&1 || need+=(catch2)
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -e /usr/local/cuda/include/cuda.h ] && [ -z "${CUDAToolkit_ROOT:-}" ] && ! command -v nvcc >/dev/null; then
  echo "setup: the CUDA toolkit (NVRTC, cuda.h) is required: install CUDA 12.4+ or set CUDAToolkit_ROOT" >&2
  exit 1
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
