#!/usr/bin/env bash
# The demo: build and install the extension in a headless Blender, reconstruct a scene with the real
# engine, save out/demo/demo.blend and out/demo/demo.png. Options go to tools/demo.py
# (--model FOLDER_OR_HUB_ID, --generated-checkpoint, --images DIR, --process-res N, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DA3_VENV:-.venv}
[ -x "$VENV/bin/python" ] || tools/bootstrap.sh
exec timeout 3600 "$VENV/bin/python" tools/demo.py "$@"
