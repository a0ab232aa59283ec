#!/usr/bin/env bash
# kura/attach_workspace: every layer of the workflow, in order, under one directory.
set -euo pipefail
if [ -n "${KURA_PARAM_STORE:-}" ]; then export KURA_STORE="$KURA_PARAM_STORE"; fi
exec kura attach --at "${KURA_PARAM_AT:?kura/attach_workspace: give at}"
