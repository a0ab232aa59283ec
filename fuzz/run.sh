#!/usr/bin/env bash
# Fuzz for a bounded time: fuzz/run.sh [SECONDS] [TARGET] (default 300 s, target unpack).
#   unpack    archives into a sandbox; the corpus starts from the hostile archives of
#             tests/support/hostile.rs. A crash or an escape leaves its input in
#             fuzz/artifacts/unpack/ and exits non-zero.
#   template  key templates: parse and render never panic, rendered keys keep the rules.
#   manifest  chunk manifests: decoding never panics, what decodes encodes back the same.
#   metadata  metadata objects: what is read is an entry with a valid key that agrees with
#             its name and reads back the same; seeded with kura's own.
#   oci_manifest  OCI manifests: what is read has a valid key and the tag it was read under.
#   cut       a save's cutter on any stream written in any pieces: the manifest reads back
#             to the stream, and a second save on it uploads nothing; seeded with GNU tar
#             streams (ustar and pax, long names, small and large files).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
target="${2:-unpack}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
corpus="$PWD/fuzz/corpus/$target"
mkdir -p "$corpus"
case "$target" in
  unpack) FUZZ_SEEDS="$corpus" cargo test --quiet --test it extract::hostile_corpus ;;
  template)
    printf 'v1-{{ .Branch }}-{{ checksum "go.sum" }}' > "$corpus/seed-checksum"
    printf '<< .Environment.NAME >>-{{ hashFiles "**/Cargo.lock" "x" }}' > "$corpus/seed-hashfiles"
    printf '{{ epoch }}-{{ arch }}-{{ os }}-{{ env "NAME" }}-`raw`' > "$corpus/seed-funcs" ;;
  manifest) FUZZ_SEEDS="$corpus" cargo test --quiet --lib real_manifests ;;
  metadata) FUZZ_SEEDS="$corpus" cargo test --quiet --lib store::parse::tests::real_metadata ;;
  oci_manifest) FUZZ_SEEDS="$corpus" cargo test --quiet --lib store::parse::tests::real_oci ;;
  cut)
    tree="$(mktemp -d)"
    mkdir -p "$tree/d/$(printf 'n%.0s' {1..120})/deep"
    for i in $(seq 1 30); do head -c $((i * 97)) /dev/urandom > "$tree/d/f$i"; done
    head -c 300000 /dev/urandom > "$tree/d/big"
    printf 'x%.0s' {1..5000} > "$tree/d/$(printf 'n%.0s' {1..120})/deep/rep"
    for format in ustar pax gnu; do
      { printf '\x01\x03\x10\x40\x07\xff\x20\x02\x50'
        tar --format=$format -C "$tree" -cf - d 2>/dev/null || true; } > "$corpus/seed-$format"
    done
    rm -rf "$tree" ;;
esac
cd fuzz
cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=1024 -timeout=20
