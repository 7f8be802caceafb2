#!/usr/bin/env bash
# Trains the M-CNN on the bundled testdata/ and evaluates it:
#
#     ./tools/demo.sh [MODEL_DIR]        # default: out/demo
#
# Sets up .venv on first use (see tools/bootstrap.sh).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"  # cd's to the repo root

# Relative paths are relative to the repo root (bootstrap.sh cd's there).
model_dir="${1:-out/demo}"

# configs/demo.flags: the recipe scaled to the small demo set (see the file).
mcnn-train --flagfile=configs/demo.flags --model_dir="$model_dir"
mcnn-evaluate --model_dir="$model_dir"

# Lists what the run produced, wherever under MODEL_DIR it ended up.
show() {
  local label="$1"
  shift
  local found
  found="$(find "$model_dir" "$@" 2>/dev/null | sort | head -n 20)"
  printf '  %-13s %s\n' "$label" "${found:-(none found)}" | sed '2,$s/^/                /'
}

echo
case "$model_dir" in
  /*) echo "Demo finished. Results under $model_dir:" ;;
  *) echo "Demo finished. Results under $REPO_ROOT/$model_dir:" ;;
esac
show "metrics:" -name 'metrics.jsonl'
show "plots:" -name '*.png'
show "checkpoints:" -maxdepth 2 \( -name 'checkpoints' -o -name '*.keras' -o -name '*.weights.h5' \)
show "export:" -maxdepth 1 -name 'export*'
