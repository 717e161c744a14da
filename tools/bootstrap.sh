#!/usr/bin/env bash
# Create the development virtualenvs and fetch the wheels the extension bundles:
#   .venv           Python 3.11: the engine (torch, the CPU wheel pip finds on this machine), its tests,
#                   benchmarks and the readers the tests check our files with (requirements-dev.txt)
#   .venv-blender4  Python 3.11: Blender 4.5 LTS as a module (requirements-blender4.txt), no torch
#   .venv-blender42 Python 3.11: Blender 4.2 LTS, our minimum (requirements-blender42.txt), no torch
#   .venv-blender5  Python 3.13: the newest Blender 5.x (requirements-blender5.txt), no torch
#   wheels/         uv for every platform the extension ships for (tools/fetch_wheels.py)
# Interpreters: PYTHON311 / PYTHON313 override the search (python3.11, python3.13, pyenv's versions).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # find_python 3.11 -> an interpreter of that version
  local want=$1 cand
  for cand in "python$want" "$HOME"/.pyenv/versions/"$want".*/bin/python"$want" /root/.pyenv/versions/"$want".*/bin/python"$want" python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$want')" 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

make_venv() {  # make_venv DIR PYTHON REQUIREMENTS
  local dir=$1 py=$2 req=$3
  [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q -r "$req"
}

PY311=${PYTHON311:-$(find_python 3.11)} || { echo "bootstrap: Python 3.11 is needed (the engine, bpy 4.x)" >&2; exit 1; }
PY313=${PYTHON313:-$(find_python 3.13)} || { echo "bootstrap: Python 3.13 is needed (bpy 5.x)" >&2; exit 1; }

make_venv .venv "$PY311" requirements-dev.txt
make_venv .venv-blender4 "$PY311" requirements-blender4.txt
make_venv .venv-blender42 "$PY311" requirements-blender42.txt
make_venv .venv-blender5 "$PY313" requirements-blender5.txt
.venv/bin/python tools/fetch_wheels.py
echo "bootstrap: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
for v in .venv-blender42 .venv-blender4 .venv-blender5; do
  echo "bootstrap: $v ready ($("$v/bin/python" -c 'import sys, bpy; print("Blender", bpy.app.version_string, "| Python", sys.version.split()[0])' 2>/dev/null | tail -n 1))"
done
