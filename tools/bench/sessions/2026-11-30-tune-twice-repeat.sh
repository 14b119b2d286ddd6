#!/usr/bin/env bash
# Issue 6, the between-run noise: two full `plx tune --repeat` runs into separate cache
# dirs, then `plx db compare` on their databases. Each tune races every bucket (as
# 2026-11-29-tune-twice.sh did), then re-times every winner alone in a fresh worker
# (--repeat, budget --repeat-budget-s) and stores per bucket repeat_us and per database
# repro_rel = p90 of |repeat - winner| / winner. plx db compare adds repro_rel x time to
# the noise and names the deciding term per bucket ("by"), and says how many disagreements
# the term tied and how many same winners it kept within the noise.
#
# Compared with 2026-11-29 (626/648 agreed, 22 disagreed, 169 same winners beyond noise):
# the question is whether the measured between-run term accounts for those, and what
# repro_rel is on the H200 (nothing in the code assumes a value).
#
# Run from the repository root with the plx binary in build-run/ (carried). Budget on the
# H200: ~3 min per race (2026-11-29) + the repeat pass (16 s of timing, 720 buckets at
# 0.02 s minimum, plus loading) per tune; each tune is capped at 280 s so the whole stays
# under 10 min. Everything lands in ONE tarball, $OUT/tune-twice-repeat.tar.gz (the device
# returns at most 8 files), plus its summary on stdout.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p "$O"
W=$(mktemp -d /tmp/tune-twice-repeat.XXXXXX)  # staged here, tarred into $O at the end
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main
A=/tmp/plx-tune-A B=/tmp/plx-tune-B
rm -rf "$A" "$B"; mkdir -p "$A" "$B"
REPEAT_BUDGET=${REPEAT_BUDGET:-16}
date -u +%FT%TZ | tee "$W/started.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv 2>&1 | tee "$W/gpu_before.csv"
build/plx --version | tee "$W/version.txt"

# timed LABEL LOG CMD...: runs CMD with its output in $W/LOG, prints its wall time and exit
# status, returns the status.
timed() {
  local label=$1 log=$W/$2; shift 2
  local t0; t0=$(date +%s.%N)
  "$@" > "$log" 2>&1; local rc=$?
  awk -v l="$label" -v a="$t0" -v b="$(date +%s.%N)" -v rc=$rc 'BEGIN { printf "%s: %.1f s wall, rc=%d\n", l, b - a, rc }' \
    | tee -a "$W/wall_times.txt"
  return $rc
}
: > "$W/wall_times.txt"

pack() {  # the one file that comes back
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$W/gpu_after.csv" 2>&1
  tar -C "$W" -czf "$O/tune-twice-repeat.tar.gz" . && ls -l "$O/tune-twice-repeat.tar.gz"
}
trap pack EXIT

timed "tune A --repeat" tune_A.log env PLX_CACHE_DIR=$A timeout 280 build/plx tune --repeat \
  --repeat-budget-s "$REPEAT_BUDGET" --out "$W/tune_A.json" --csv "$W/tune_A.csv"
grep -E '^(reproducibility|tuning database|tune took|repeat:)' "$W/tune_A.log"
for d in "$A"/*; do [ "$(basename "$d")" = tuning ] || cp -a "$d" "$B/"; done  # cubins, not the database
timed "tune B --repeat" tune_B.log env PLX_CACHE_DIR=$B timeout 280 build/plx tune --repeat \
  --repeat-budget-s "$REPEAT_BUDGET" --out "$W/tune_B.json" --csv "$W/tune_B.csv"
grep -E '^(reproducibility|tuning database|tune took|repeat:)' "$W/tune_B.log"

DA=$(ls "$A"/tuning/v1/*.json 2>/dev/null | head -n 1)
DB=$(ls "$B"/tuning/v1/*.json 2>/dev/null | head -n 1)
if [ -n "$DA" ] && [ -n "$DB" ]; then
  cp "$DA" "$W/db_A.json"; cp "$DB" "$W/db_B.json"
  timed "db compare" compare.log build/plx db compare "$W/db_A.json" "$W/db_B.json" --json "$W/compare.json"
  grep -E '^(A:|B:|note|no bucket|[0-9]+ buckets? kept|noise decided by|the reproducibility term)' "$W/compare.log"
  sed -n '/^only in [AB] (/,/^$/p' "$W/compare.log" | head -n 40            # one-sided buckets
  grep -E '^\S+\s+(tied|disagree)\s' "$W/compare.log" | head -n 60  # rows that differ
  tail -n 1 "$W/compare.log"
else
  echo "no database in A ($DA) or B ($DB): see tune_A.log / tune_B.log"
fi
echo; cat "$W/wall_times.txt"
echo tune-twice-repeat-done
