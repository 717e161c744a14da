"""The shape of the code: no import circles, no private names crossing modules, the walls of the design.

Imports are read from the source (every ``import`` and ``from … import``, module level or inside a
function, except those under ``if TYPE_CHECKING:``), so a lazy import that closes a circle counts too.
Two graphs are checked: the engine (``engine/``, the process Blender starts) and the Blender side (the
extension package around it: ``__init__``, ``operators/``, ``panels/``, ``scene/``, the session logic…).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
NOT_EXTENSION = ("tests", "tools", "benchmarks", "docs", "dist", "wheels", "build", "out")


def _module(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _extension_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] in NOT_EXTENSION:
            continue
        files.append(path)
    return files


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(child) for child in ast.walk(node)}
    return hidden


def _imports(path: Path, known: set[str], root: Path = ROOT) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for each import of a module of ``known``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_checking_nodes(tree)
    package = _module(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            qualified = {n: f"{target}.{n}" if target else n for n in names}
            for name in names:
                if qualified[name] in known:
                    out.append((qualified[name], [], node.lineno))
            if target in known:
                out.append((target, [n for n in names if qualified[n] not in known], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name in known]
    return out


def _graph(files: list[Path], root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    modules = {_module(p, root): p for p in files}
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        for target, names, line in _imports(path, known, root):
            if target == module:
                continue
            # a package's __init__ re-exporting from its own modules is not a circle through the package
            if not (path.name == "__init__.py" and target.startswith(module + ".")):
                graph[module].add(target)
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    private.append(f"{path.relative_to(root)}:{line}: from {target} import {name}")
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def _blender_side_files() -> list[Path]:
    return [p for p in _extension_files() if p.relative_to(ROOT).parts[0] != "engine"]


def test_no_import_circles_in_the_engine():
    cycles = _cycles(_graph(_engine_files())[0])
    assert not cycles, f"import circles in engine/: {cycles}"


def test_no_import_circles_on_the_blender_side():
    cycles = _cycles(_graph(_blender_side_files())[0])
    assert not cycles, f"import circles on the Blender side: {cycles}"


def test_no_private_names_cross_modules():
    private = _graph(_extension_files())[1]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_checker_sees_circles_and_private_imports(tmp_path):
    """The checks above are only worth something if they fail on the real thing: a circle closed by a
    lazy import inside a function, and a private name taken from a sibling module."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("from .b import _hidden\nx = 1\n")
    (pkg / "b.py").write_text("_hidden = 2\ndef f():\n    from . import c\n")
    (pkg / "c.py").write_text("from .a import x\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    graph, private = _graph(sorted(pkg.glob("*.py")), tmp_path)
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert private == ["pkg/a.py:1: from pkg.b import _hidden"]
    assert graph["pkg.d"] == set() and graph["pkg"] == set()  # type-only imports and re-exports
    assert _cycles({"a": {"b"}, "b": set()}) == []
