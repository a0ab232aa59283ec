#!/usr/bin/env bash
# kura/restore_cache: the native step's order (each key a prefix, newest match wins).
set -euo pipefail
if ! command -v kura >/dev/null; then
  echo "kura/restore_cache: warning: kura is not installed (see the kura/install step); no cache is restored" >&2
  exit 0
fi
if [ -n "${KURA_PARAM_STORE:-}" ]; then export KURA_STORE="$KURA_PARAM_STORE"; fi
keys=()
while IFS= read -r k; do
  if [ -n "${k// /}" ]; then keys+=("$k"); fi
done <<< "${KURA_PARAM_KEY:-}
${KURA_PARAM_KEYS:-}"
if [ "${#keys[@]}" -eq 0 ]; then
  echo "kura/restore_cache: give key or keys" >&2
  exit 2
fi
# No paths, as in the native step: each entry goes back to the paths it was saved from.
exec kura restore --keys "${keys[@]}"
