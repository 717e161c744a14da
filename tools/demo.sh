#!/usr/bin/env bash
# The demo: build and install the extension in a headless Blender (the newest 5.x), reconstruct a scene
# with the real engine (.venv's Python), save out/demo/demo.blend and out/demo/demo.png. Options go to
# tools/demo.py (--model FOLDER_OR_HUB_ID, --generated-checkpoint, --images DIR, --process-res N, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
BLENDER_VENV=${DA3_BLENDER_VENV:-.venv-blender5}
for v in .venv "$BLENDER_VENV"; do
  [ -x "$v/bin/python" ] || { tools/bootstrap.sh; break; }
done
exec timeout 3600 "$BLENDER_VENV/bin/python" tools/demo.py --engine-python "$PWD/.venv/bin/python" "$@"
