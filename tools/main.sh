#!/usr/bin/env bash
# The main job: build, then tune the default decode and prefill specs on this machine's GPU. Without a
# GPU, `plx tune` validates, compiles and ranks by the roofline model, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec build/plx tune "$@"
