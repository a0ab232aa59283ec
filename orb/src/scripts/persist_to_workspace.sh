#!/usr/bin/env bash
# kura/persist_to_workspace: this job's layer of the workflow's workspace.
set -euo pipefail
if ! command -v kura >/dev/null; then
  echo "kura/persist_to_workspace: kura is not installed (see the kura/install step); a workspace cannot be skipped" >&2
  exit 1
fi
if [ -n "${KURA_PARAM_STORE:-}" ]; then export KURA_STORE="$KURA_PARAM_STORE"; fi
args=()
while IFS= read -r p; do
  if [ -n "${p// /}" ]; then args+=(--path "$p"); fi
done <<< "${KURA_PARAM_PATHS:-}"
if [ -z "${KURA_PARAM_ROOT:-}" ]; then
  echo "kura/persist_to_workspace: the root parameter is empty; set it to the directory the paths are relative to" >&2
  exit 2
fi
exec kura persist --root "$KURA_PARAM_ROOT" "${args[@]}"
