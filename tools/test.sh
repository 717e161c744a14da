#!/usr/bin/env bash
# Run every check: lint, the engine tests (parity with the official DA3 included when ../shared is
# beside the project), then the Blender tests in their own process (bpy must never see torch).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DA3_VENV:-.venv}
[ -x "$VENV/bin/python" ] || tools/bootstrap.sh
PY="$VENV/bin/python"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m pytest tests/engine -q "$@"
if [ -d tests/blender ] && ls tests/blender/test_*.py >/dev/null 2>&1; then
  timeout 1800 "$PY" -m pytest tests/blender -q "$@"
fi
