"""The two walls of the design: engine/ never touches Blender, and only the network side imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
TORCH_ALLOWED = (
    "engine/model/",
    "engine/pipeline.py",
    "engine/jobs/",
    "engine/cli.py",
    "engine/render/",  # splat renders (gsplat and our compositor): engine side only, never Blender
    "engine/geometry/fusion.py",  # geometry that runs on the GPU (TSDF fusion); Blender never loads it
)  # DESIGN.md §1


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_never_imports_blender():
    offenders = [
        str(p.relative_to(ROOT)) for p in ENGINE.rglob("*.py") if _imports(p) & {"bpy", "mathutils", "bmesh"}
    ]
    assert not offenders, f"engine modules importing Blender: {offenders}"


def test_torch_only_where_allowed():
    offenders = [
        rel
        for p in ENGINE.rglob("*.py")
        if "torch" in _imports(p) and not (rel := str(p.relative_to(ROOT))).startswith(TORCH_ALLOWED)
    ]
    assert not offenders, f"modules outside the network side importing torch: {offenders}"


def test_blender_facing_modules_import_without_torch():
    """What Blender loads (protocol, client, formats, geometry, …) imports with torch made unimportable."""
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in ENGINE.rglob("*.py")
        if not str(p.relative_to(ROOT)).startswith(TORCH_ALLOWED) and p.name != "__main__.py"
    ]
    for boundary in (
        "engine.process.protocol.__init__",
        "engine.process.client",
        "engine.formats.bundle.reader",
    ):
        assert boundary in modules  # what Blender loads: the process boundary and the formats
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['bpy'] = None\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import importlib\n"
        f"for m in {sorted(modules)!r}: importlib.import_module(m.replace('/', '.'))\n"
        "print('ok', len(sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stderr[-2000:]
