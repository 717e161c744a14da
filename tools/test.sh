#!/usr/bin/env bash
# Run every check: lint, the engine tests (parity with the official DA3 included when ../shared is
# beside the project), then the whole Blender suite on each Blender we test — 4.2 LTS (our minimum),
# 4.5 LTS and the newest 5.x — each in its own process and venv without torch; the tests that need the
# real engine start it with the engine's Python (.venv), named by DA3_ENGINE_PYTHON.
# Extra arguments go to every pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
for v in .venv .venv-blender42 .venv-blender4 .venv-blender5; do
  [ -x "$v/bin/python" ] || { tools/bootstrap.sh; break; }
done
.venv/bin/python tools/fetch_wheels.py >/dev/null
PY=.venv/bin/python
"$PY" -m ruff check .
"$PY" -m ruff format --check .
SECONDS=0
"$PY" -m pytest tests/engine -q "$@"
echo "engine tests: ${SECONDS} s"
export DA3_ENGINE_PYTHON="$PWD/.venv/bin/python"
summary=()
for v in .venv-blender42 .venv-blender4 .venv-blender5; do
  SECONDS=0
  version=$("$v/bin/python" -c 'import bpy; print(bpy.app.version_string)' 2>/dev/null | tail -n 1)
  echo "== Blender suite on Blender $version ($v)"
  log=$(mktemp)
  set +e
  timeout 1800 "$v/bin/python" -m pytest tests/blender -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  summary+=("Blender $version: $(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -n 1 | tr -d '=') (${SECONDS} s)")
  rm -f "$log"
  [ "$rc" -eq 0 ] || { printf '%s\n' "${summary[@]}"; exit "$rc"; }
done
printf '%s\n' "${summary[@]}"
