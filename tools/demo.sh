#!/usr/bin/env bash
# Trains the M-CNN on the bundled testdata/ and evaluates it:
#
#     ./tools/demo.sh [MODEL_DIR]        # default: out/demo
#
# Sets up .venv on first use (see tools/bootstrap.sh).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"  # cd's to the repo root

model_dir="${1:-out/demo}"

mcnn-train --model_dir="$model_dir"
mcnn-evaluate --model_dir="$model_dir"

cat <<MSG

Demo finished. Results in $model_dir/:
  metrics.jsonl   per-epoch training and validation metrics
  *.png           plots (learning curves, confusion matrix)
  checkpoints/    training checkpoints (resume by re-running mcnn-train)
  export/         exported SavedModel for inference
MSG
ls -1 "$model_dir"
