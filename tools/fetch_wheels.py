"""Download the wheels the manifest lists into ``wheels/`` (uv for every platform we ship), from PyPI.

    python tools/fetch_wheels.py [--check]

The wheels are not kept in git (five platforms of uv are about 80 MB per version): the manifest's
``wheels`` list is the source of truth, and this script fetches each missing file by its exact name
(package, version and platform tag are read from the file name). ``--check`` only says what is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def listed_wheels(root: Path = ROOT) -> list[Path]:
    """The wheel files ``blender_manifest.toml`` lists, as paths under ``root``."""
    with open(root / "blender_manifest.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    return [(root / entry).resolve() for entry in manifest.get("wheels", [])]


def _spec(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, platform tags) of a wheel file name (``name-version-py-abi-platform.whl``)."""
    name, version, _python, _abi, platform = path.name[: -len(".whl")].split("-")
    return name, version, platform.split(".")


def fetch(path: Path, python: str = sys.executable) -> None:
    """Download one wheel by its exact file name into its folder."""
    name, version, platforms = _spec(path)
    with tempfile.TemporaryDirectory() as tmp:
        argv = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", tmp]
        for platform in platforms:
            argv += ["--platform", platform]
        subprocess.run(argv + [f"{name}=={version}"], check=True)
        got = Path(tmp) / path.name
        if not got.is_file():
            found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise SystemExit(f"fetch_wheels: asked for {path.name}, pip gave {found}")
        path.parent.mkdir(parents=True, exist_ok=True)
        got.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the missing wheels")
    args = parser.parse_args(argv)
    missing = [path for path in listed_wheels() if not path.is_file()]
    if args.check:
        for path in missing:
            print(f"missing {path.relative_to(ROOT)}")
        return 1 if missing else 0
    for path in missing:
        fetch(path)
        print(f"fetched {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.1f} MB)")
    if not missing:
        print("fetch_wheels: every listed wheel is present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
