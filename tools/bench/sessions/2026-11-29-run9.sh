#!/usr/bin/env bash
# GPU run 9 (2026-11-29, second session): run 8's script, unchanged, on the build with the
# producer fast path (whole K/V tiles: one cp.async and one address add per row).
exec bash "$(dirname "$0")/2026-11-29-run8.sh" "$@"
