#!/usr/bin/env bash
# GPU run 7 (2026-11-29, second session): issue 6's two tunes + db compare + measured explore
# (2026-11-29-tune-twice.sh), the training step now that training forwards run the wgmma
# kernel, then Nsight Compute on the wgmma prefill (where do the consumer warps stall?).
# Carry build-run/; logs come back as one tarball after every step.
set -uo pipefail
O=${OUT:-/tmp/out}; L=/tmp/logs; mkdir -p $O $L
[ -e /work/main ] || { mkdir -p /work; ln -s "$PWD" /work/main; }
cd /work/main; [ -e build ] || ln -s build-run build
export PLX_SOURCE_DIR=/work/main PLX_CACHE_DIR=/tmp/plx-cache
pack() { tar czf $O/logs.tgz -C $L .; }
t0=$(date +%s); date -u +%FT%TZ | tee $L/date.txt
OUT=$L/tune timeout 450 bash tools/bench/sessions/2026-11-29-tune-twice.sh > $L/tune_twice.log 2>&1
echo "tune-twice rc=$?"; tail -40 $L/tune_twice.log; pack
timeout 60 python3 tools/bench/train_step.py --lib build/libparallax.so --reps 5 > $L/train_step.jsonl 2>&1
echo "train_step rc=$?"; cat $L/train_step.jsonl | cut -c1-300; pack
for fam in softmax; do
  timeout 50 ncu --clock-control none --set full --import-source no -k regex:prefill_sm90 -s 2 -c 1 -o $L/prof_$fam \
    build/plx-bench prefill --family $fam --shapes 8x4096x16x8 --reps 3 > $L/ncu_$fam.log 2>&1
  echo "ncu $fam rc=$? $(( $(date +%s) - t0 ))s"; tail -3 $L/ncu_$fam.log
  ncu --import $L/prof_$fam.ncu-rep --page details > $L/details_$fam.txt 2>&1
  ncu --import $L/prof_$fam.ncu-rep --page source --csv --print-source sass > $L/sass_$fam.csv 2>&1
  grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Stall|Warp Cycles Per Issued|Tensor' $L/details_$fam.txt | head -30
  rm -f $L/prof_$fam.ncu-rep; pack
done
echo "total $(( $(date +%s) - t0 ))s"
