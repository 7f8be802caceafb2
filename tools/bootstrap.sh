#!/usr/bin/env bash
# Sourced by tools/demo.sh and tools/test.sh:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
#
# Run directly (./tools/bootstrap.sh) it only prepares .venv.
#
# On a fresh Debian/Ubuntu machine with Python 3.10+: creates .venv in the
# repo root, installs the package in editable mode with its test extras, and
# activates the venv. Quick when nothing changed (a stamp file newer than
# setup.cfg and pyproject.toml skips pip). Leaves REPO_ROOT set and the
# current directory at the repo root.
#
# MCNN_VENV and MCNN_EXTRAS choose another venv and extras (tools/test_compat.sh:
# MCNN_VENV=.venv-tf216 MCNN_EXTRAS=s3,test,s3test, the TensorFlow 2.16 leg).

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # Executed, not sourced: our own shell, so strict mode is safe. (When
  # sourced, the calling script's options apply.)
  set -euo pipefail
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
MCNN_VENV="${MCNN_VENV:-.venv}"
MCNN_EXTRAS="${MCNN_EXTRAS:-test,onnx}"

# Runs a command as root: directly when root, through sudo when available.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "bootstrap: need root (or sudo) to run: $*" >&2
    return 1
  fi
}

_bootstrap_python() {
  local python
  python="${PYTHON:-python3}"
  if ! command -v "$python" >/dev/null 2>&1; then
    echo "bootstrap: $python not found; install Python 3.10 or newer" >&2
    return 1
  fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "bootstrap: $python is $("$python" -V 2>&1); need Python 3.10 or newer" >&2
    return 1
  fi
  if [ ! -x "$MCNN_VENV/bin/python" ]; then
    # Debian/Ubuntu split venv (and ensurepip) into python3-venv.
    if ! "$python" -m venv --help >/dev/null 2>&1 \
        || ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
      echo "bootstrap: installing python3-venv" >&2
      as_root apt-get update -q
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    fi
    echo "bootstrap: creating $MCNN_VENV" >&2
    rm -rf "$MCNN_VENV"
    "$python" -m venv "$MCNN_VENV"
  fi
}

_bootstrap_install() {
  # The stamp names the extras: a venv installed with others is redone.
  local stamp="$MCNN_VENV/.mcnn-keras-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt setup.cfg ] && [ "$stamp" -nt pyproject.toml ] \
      && [ "$(cat "$stamp")" = "$MCNN_EXTRAS" ]; then
    return 0
  fi
  echo "bootstrap: pip install -e '.[$MCNN_EXTRAS]' into $MCNN_VENV" \
       "(first run takes a few minutes)" >&2
  "$MCNN_VENV/bin/python" -m pip install -q --upgrade pip
  "$MCNN_VENV/bin/python" -m pip install -q -e ".[$MCNN_EXTRAS]"
  echo "$MCNN_EXTRAS" >"$stamp"
}

_bootstrap_python
_bootstrap_install
# shellcheck disable=SC1091
source "$MCNN_VENV/bin/activate"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
unset -f _bootstrap_python _bootstrap_install
