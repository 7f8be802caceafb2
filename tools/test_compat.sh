#!/usr/bin/env bash
# The second test leg: the core on TensorFlow 2.16 + tensorflow-io 0.37.1 (the
# `s3` extra), against a real S3 server (moto on 127.0.0.1):
#
#     ./tools/test_compat.sh                 # the subset below (tools/test.sh runs it too)
#     ./tools/test_compat.sh -k s3           # extra args go to pytest
#
# Prepares .venv-tf216 through bootstrap.sh with `pip install -e
# '.[s3,test,s3test]'` into a fresh virtualenv, so pip's resolver proves that
# the s3 extra resolves without conflicts (`pip check` too). Runs pytest on
# the modules TensorFlow's version can break: model, records, dataset,
# training, export, a two-worker fit, the Keras multi-worker fix, storage,
# the Kubernetes recipe and the S3 test, which MCNN_REQUIRE_S3=1 turns from a
# skip into a failure when it cannot run. JUnit XML goes to $COMPAT_JUNIT_XML
# (default out/test-compat.xml), which tools/test.sh adds to its summary.
set -euo pipefail

export MCNN_VENV=.venv-tf216 MCNN_EXTRAS=s3,test,s3test
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"  # cd's to the repo root

python -m pip check
python - <<'PY'
import importlib.metadata as metadata
import keras
import tensorflow as tf
assert tf.__version__.startswith("2.16."), f"compat leg needs TensorFlow 2.16, got {tf.__version__}"
print(f"test_compat: TensorFlow {tf.__version__}, Keras {keras.__version__}, "
      f"tensorflow-io {metadata.version('tensorflow-io')}", flush=True)
PY

xml="${COMPAT_JUNIT_XML:-$REPO_ROOT/out/test-compat.xml}"
mkdir -p "$(dirname "$xml")"
rm -f "$xml"
export MCNN_REQUIRE_S3=1
exec python -m pytest -p no:cacheprovider -rfEs --junitxml="$xml" \
  tests/test_model.py \
  tests/test_records.py \
  tests/test_dataset.py \
  tests/test_training.py \
  tests/test_microbatch.py \
  tests/test_export.py \
  "tests/test_multiworker.py::test_two_workers_fit_with_validation" \
  tests/test_keras_multiworker_fix.py \
  tests/test_storage.py \
  tests/test_k8s.py \
  tests/test_s3.py \
  "$@"
