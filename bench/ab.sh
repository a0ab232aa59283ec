#!/usr/bin/env bash
# A/B timing of two kura binaries on one tree, alternating runs, on tmpfs: a save into an
# empty store, then a restore into an empty directory.
#   bench/ab.sh OLD_KURA NEW_KURA DATASET_DIR [RUNS]
# DATASET_DIR is a tree to cache (e.g. one bench.py generated under --work). Prints each
# binary's sorted save and restore times; compare the medians.
set -euo pipefail
old="$1" new="$2" data="$3" runs="${4:-7}"
w=/dev/shm/kura-ab
rm -rf "$w"; mkdir -p "$w/ws"
cp -a "$data" "$w/ws/data"
cd "$w/ws"
export KURA_PROGRESS_SECONDS=0
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
for _ in $(seq "$runs"); do
  for b in old new; do
    bin=$old; [ "$b" = new ] && bin=$new
    rm -rf "$w/store"
    export KURA_STORE="file://$w/store"
    echo "$b-save $(secs "$bin" save --key k --path data)"
    mv data data.orig
    echo "$b-restore $(secs "$bin" restore --key k --path data)"
    rm -rf data; mv data.orig data
  done
done | sort -k1,1 -k2,2n | awk '{a[$1]=a[$1]" "$2} END {for (k in a) print k ":" a[k]}' | sort
rm -rf "$w"
