#!/usr/bin/env bash
# kura/save_cache: an existing key is kept (first writer wins), as in the native step.
set -euo pipefail
if ! command -v kura >/dev/null; then
  echo "kura/save_cache: warning: kura is not installed (see the kura/install step); the cache is not saved" >&2
  exit 0
fi
if [ -n "${KURA_PARAM_STORE:-}" ]; then export KURA_STORE="$KURA_PARAM_STORE"; fi
args=()
while IFS= read -r p; do
  if [ -n "${p// /}" ]; then args+=(--path "$p"); fi
done <<< "${KURA_PARAM_PATHS:-}"
if [ -n "${KURA_PARAM_FORMAT:-}" ]; then args+=(--format "$KURA_PARAM_FORMAT"); fi
if [ -z "${KURA_PARAM_KEY:-}" ]; then
  echo "kura/save_cache: the key parameter is empty; set it to a key template such as v1-deps-{{ checksum \"package-lock.json\" }}" >&2
  exit 2
fi
exec kura save --key "$KURA_PARAM_KEY" "${args[@]}"
