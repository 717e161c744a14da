"""Build the extension zip with Blender's own extension tool, and validate it.

    python tools/build_extension.py [--output-dir dist]

Uses ``blender_ext.py``, the standalone script behind ``blender --command extension build/validate``
that ships inside the PyPI ``bpy`` package (found without importing bpy). It fetches the wheels the
manifest lists (``tools/fetch_wheels.py``), validates the manifest (with Blender's list of valid tags),
builds one zip per platform, ``dist/da3_reconstruct-<version>-<platform>.zip``, each with only its own
wheels (``--split-platforms``) and honouring the manifest's ``[build]`` excludes, then validates every
zip. Exit code 0 only when all of it passes.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import platform
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BuildError(RuntimeError):
    """The extension did not validate or build; the message has the tool's output."""


def blender_tools() -> tuple[Path, Path]:
    """(blender_ext.py, tags.py) from the installed bpy package."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise BuildError("The bpy package is not installed: pip install -r requirements-dev.txt")
    bpy_dir = Path(spec.origin).parent
    ext = sorted(
        glob.glob(str(bpy_dir / "*" / "scripts" / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"))
    )
    tags = sorted(
        glob.glob(str(bpy_dir / "*" / "scripts" / "modules" / "_bpy_internal" / "extensions" / "tags.py"))
    )
    if not ext or not tags:
        raise BuildError(f"blender_ext.py or tags.py not found under {bpy_dir}")
    return Path(ext[-1]), Path(tags[-1])


def this_platform() -> str:
    """Blender's name for the platform this runs on (``linux-x64``, ``macos-arm64``, ``windows-x64``…)."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    system = {"darwin": "macos"}.get(system, system)
    return f"{system}-{ {'x86_64': 'x64', 'amd64': 'x64', 'aarch64': 'arm64'}.get(machine, machine) }"


def manifest(source: Path = ROOT) -> dict:
    with open(source / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv[1:3])} failed (exit code {proc.returncode}):\n{output}")
    return output


def build(
    output_dir: str | os.PathLike = ROOT / "dist", source: Path = ROOT, python: str = sys.executable
) -> dict[str, Path]:
    """Fetch the wheels, validate, build one zip per platform and validate each; returns
    ``{platform: zip}``. Raises BuildError."""
    ext, tags = blender_tools()
    data = manifest(source)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _run([python, str(source / "tools" / "fetch_wheels.py")])
    _run([python, str(ext), "validate", "--valid-tags", str(tags), str(source)])
    build_argv = [python, str(ext), "build", "--source-dir", str(source), "--output-dir", str(output_dir)]
    _run(build_argv + ["--split-platforms"])
    zips = {}
    for name in data["platforms"]:
        zip_path = output_dir / f"{data['id']}-{data['version']}-{name.replace('-', '_')}.zip"
        if not zip_path.is_file():
            found = ", ".join(p.name for p in output_dir.glob("*.zip")) or "no zip"
            raise BuildError(f"the build reported success but {zip_path.name} is missing ({found})")
        _run([python, str(ext), "validate", "--valid-tags", str(tags), str(zip_path)])
        zips[name] = zip_path
    return zips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir", default=str(ROOT / "dist"), help="where the zip goes (default: dist/)"
    )
    args = parser.parse_args(argv)
    try:
        zips = build(args.output_dir)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, zip_path in zips.items():
        print(f"built and validated {zip_path} for {name} ({zip_path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
