#!/usr/bin/env bash
# Issue 6: "two plx tune runs on the same GPU pick the same winner, or winners whose times
# differ by less than the measured noise", and "plx explore shows predicted and measured
# side by side" -- on the GPU.
#
#   1. plx tune (default specs, default budget) into cache dir A, with --out and --csv;
#   2. the same into cache dir B. Separate dirs because a tune merges into the database it
#      finds and keeps the faster winner per bucket: one file cannot hold two runs. B gets
#      a copy of A's compile cache (cubins only, no tuning/), so it does not spend its
#      time recompiling; its ceilings are measured afresh, as on a new machine;
#   3. plx db compare on the two databases (exit 0: every bucket agrees);
#   4. plx explore, measured, on a few buckets of the default decode spec and of the
#      wgmma prefill spec (the tuner's representative shapes, so the tables can be read
#      against the databases), --json.
# Run from the repository root with the plx binary in build-run/ (carried); everything
# lands in $OUT. Budget: ~3 min per tune on the H200, under a minute for the rest.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p "$O"
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main
A=/tmp/plx-tune-A B=/tmp/plx-tune-B
rm -rf "$A" "$B"; mkdir -p "$A" "$B"
date -u +%FT%TZ
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv 2>&1 | tee "$O/gpu_before.csv"
build/plx --version

# timed LABEL LOG CMD...: runs CMD with its output in $O/LOG, prints its wall time and exit
# status, returns the status.
timed() {
  local label=$1 log=$O/$2; shift 2
  local t0; t0=$(date +%s.%N)
  "$@" > "$log" 2>&1; local rc=$?
  awk -v l="$label" -v a="$t0" -v b="$(date +%s.%N)" -v rc=$rc 'BEGIN { printf "%s: %.1f s wall, rc=%d\n", l, b - a, rc }' \
    | tee -a "$O/wall_times.txt"
  return $rc
}
: > "$O/wall_times.txt"

timed "tune A" tune_A.log env PLX_CACHE_DIR=$A timeout 240 build/plx tune --out "$O/tune_A.json" \
  --csv "$O/tune_A.csv"
tail -n 8 "$O/tune_A.log"
for d in "$A"/*; do [ "$(basename "$d")" = tuning ] || cp -a "$d" "$B/"; done  # cubins, not the database
timed "tune B" tune_B.log env PLX_CACHE_DIR=$B timeout 240 build/plx tune --out "$O/tune_B.json" \
  --csv "$O/tune_B.csv"
tail -n 8 "$O/tune_B.log"

DA=$(ls "$A"/tuning/v1/*.json 2>/dev/null | head -n 1)
DB=$(ls "$B"/tuning/v1/*.json 2>/dev/null | head -n 1)
if [ -n "$DA" ] && [ -n "$DB" ]; then
  cp "$DA" "$O/db_A.json"; cp "$DB" "$O/db_B.json"
  timed "db compare" compare.log build/plx db compare "$O/db_A.json" "$O/db_B.json" --json "$O/compare.json"
  grep -E '^(note|no bucket|[0-9]+ buckets? kept)' "$O/compare.log"
  sed -n '/^only in [AB] (/,/^$/p' "$O/compare.log" | head -n 40             # one-sided buckets
  grep -E '^\S+\s+(tied|disagree)\s' "$O/compare.log" | head -n 40  # rows that differ
  tail -n 1 "$O/compare.log"
else
  echo "no database in A ($DA) or B ($DB): see tune_A.log / tune_B.log"
fi

# Measured explore: parallax bf16 d128 causal, no window; decode at the tuner's batch 1
# and 32 x 8192 keys (buckets bh8/bh256_kv8192_g4), prefill (wgmma) at q = kv 1024, 8192.
export PLX_CACHE_DIR=$A  # its ceilings and cubins
timed "explore decode" explore_decode.log timeout 60 build/plx explore specs/decode_sm90.yaml --family parallax \
  --dtype bf16 --head-dim 128 --mask causal --window -1 --batch 1,32 --kv-len 8192 --json "$O/explore_decode.json"
cat "$O/explore_decode.log"
timed "explore prefill wgmma" explore_prefill_wgmma.log timeout 60 build/plx explore \
  specs/prefill_sm90_wgmma.yaml --family parallax --dtype bf16 --head-dim 128 --mask causal --kv-len 1024,8192 \
  --json "$O/explore_prefill_wgmma.json"
cat "$O/explore_prefill_wgmma.log"

nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>&1 | tee "$O/gpu_after.csv"
echo; cat "$O/wall_times.txt"
echo tune-twice-done
