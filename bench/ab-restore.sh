#!/usr/bin/env bash
# A/B restore timing of two kura binaries on one entry, alternating runs, on tmpfs:
#   bench/ab-restore.sh OLD_KURA NEW_KURA DATASET_DIR [RUNS]
# DATASET_DIR is a tree to cache (e.g. one bench.py generated under --work). Prints each
# binary's sorted restore times; compare the medians.
set -euo pipefail
old="$1" new="$2" data="$3" runs="${4:-7}"
w=/dev/shm/kura-ab
rm -rf "$w"; mkdir -p "$w/ws" "$w/store"
cp -a "$data" "$w/ws/data"
cd "$w/ws"
export KURA_STORE="file://$w/store" KURA_PROGRESS_SECONDS=0
"$old" save --key k --path data >/dev/null 2>&1
for _ in $(seq "$runs"); do
  for b in old new; do
    bin=$old; [ "$b" = new ] && bin=$new
    rm -rf data
    s=$(date +%s.%N); "$bin" restore --key k --path data >/dev/null 2>&1; e=$(date +%s.%N)
    echo "$b $(echo "$e - $s" | bc)"
  done
done | sort -k1,1 -k2,2n | awk '{a[$1]=a[$1]" "$2} END {for (k in a) print k ":" a[k]}'
rm -rf "$w"
