#!/usr/bin/env bash
# kura/attach_workspace: every layer of the workflow, in order, under one directory.
set -euo pipefail
if ! command -v kura >/dev/null; then
  echo "kura/attach_workspace: kura is not installed (see the kura/install step); a workspace cannot be skipped" >&2
  exit 1
fi
if [ -n "${KURA_PARAM_STORE:-}" ]; then export KURA_STORE="$KURA_PARAM_STORE"; fi
if [ -z "${KURA_PARAM_AT:-}" ]; then
  echo "kura/attach_workspace: the at parameter is empty; set it to the directory to attach the workspace under" >&2
  exit 2
fi
exec kura attach --at "$KURA_PARAM_AT"
