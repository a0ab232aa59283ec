#!/usr/bin/env bash
# Fuzz the unpacker for a bounded time: fuzz/run.sh [SECONDS] (default 300).
# The corpus starts from the hostile archives of tests/support/hostile.rs; a crash or an
# escape leaves its input in fuzz/artifacts/unpack/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
corpus="$PWD/fuzz/corpus/unpack"
mkdir -p "$corpus"
KURA_FUZZ_SEEDS="$corpus" cargo test --quiet --test extract hostile_corpus
cd fuzz
cargo +nightly fuzz run unpack "$corpus" -- -max_total_time="$secs" -rss_limit_mb=1024 -timeout=20
