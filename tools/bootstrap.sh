#!/usr/bin/env bash
# Create the developer virtualenv (.venv, Python 3.11) with everything the tests, benchmarks and the
# demo need: torch (the CPU wheel pip finds on this machine), Blender 4.5 LTS as a module (bpy),
# the engine's runtime requirements and the third-party readers the tests check our files with.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DA3_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  PY=${PYTHON:-}
  if [ -z "$PY" ]; then
    for cand in python3.11 python3; do
      if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        PY=$cand; break
      fi
    done
  fi
  [ -n "$PY" ] || { echo "bootstrap: Python 3.11 is needed (bpy 4.5 wheels are cp311 only)" >&2; exit 1; }
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements-dev.txt
echo "bootstrap: $VENV ready ($("$VENV/bin/python" -c 'import torch, bpy; print("torch", torch.__version__, "| Blender", bpy.app.version_string)'))"
