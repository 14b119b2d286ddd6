#!/usr/bin/env bash
# Builds and runs every test. [gpu] tests skip, saying so, on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
