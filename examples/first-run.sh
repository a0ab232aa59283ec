#!/usr/bin/env bash
# kura's main job on the local store, as a CI job runs it: save a real directory (a copy of
# kura's own src/) under a templated key, restore it into its place, and compare.
#   examples/first-run.sh            (uses target/release/kura; KURA=/path/to/kura to choose)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kura="$(realpath "${KURA:-$here/target/release/kura}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KURA_STORE="file://$work/store"
cp -a "$here/src" "$work/src"
cd "$work"
# The key as a job computes it before it restores (here: from the sources it caches).
key="$("$kura" key 'demo-{{ hashFiles "src/**/*.rs" }}')"
"$kura" save --key "$key" --path src
mv src src.saved
"$kura" restore --key "$key" --restore-key demo- --path src
diff -r src.saved src
echo "kura restored src/ exactly as it was saved ($(find src -type f | wc -l) files)"
