"""The extension installs, registers everything, and keeps torch out of Blender's process."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import tomllib
import zipfile

import bpy

from .conftest import MODULE_NAME, ROOT, run_python


def test_installs_as_an_extension_and_has_a_user_folder(ext, sub):
    assert ext.__name__ == MODULE_NAME
    prefs = sub("preferences")
    assert prefs.get_prefs() is not None
    path = prefs.user_folder("results")
    assert "extensions" in path and path.endswith("results")


def test_every_operator_and_panel_registers(ext, sub):
    idnames = sub("idnames")
    operators = [v for k, v in vars(idnames).items() if k.isupper() and isinstance(v, str) and "." in v]
    assert len(operators) >= 9
    for idname in operators:
        module, name = idname.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises when not registered
    panels = [v for k, v in vars(idnames).items() if k.startswith("PANEL_") and v.startswith("VIEW3D_PT")]
    for panel in panels:
        cls = getattr(bpy.types, panel)
        assert cls.bl_category == "Reconstruct" and cls.bl_space_type == "VIEW_3D"
    assert hasattr(bpy.types.Scene, "da3")


def test_file_import_menu_lists_the_bundle_importer(ext, sub):
    menu = sub("operators.import_bundle").menu_import
    assert menu in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()


def test_manifest_matches_the_engine_version():
    with open(ROOT / "blender_manifest.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    from engine.version import ENGINE_VERSION

    assert manifest["id"] == "da3_reconstruct" and manifest["name"] == "DA3 Reconstruct"
    assert manifest["version"] == ENGINE_VERSION
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"files", "network"}


def test_blender_side_never_imports_torch(ext):
    """Import every module of the extension except the engine's torch modules, with torch blocked."""
    assert sys.modules.get("torch") is None  # blocked by conftest, never replaced by a real import
    # The engine process's own modules may import torch; the developer folders are not shipped.
    skip = ("engine.model", "engine.pipeline", "engine.process.worker", "engine.cli", "engine.jobs.still")
    skip += ("engine.render",)  # splat renders: the engine side only
    skip += ("engine.geometry.fusion",)  # TSDF fusion runs in the engine (GPU geometry), never in Blender
    skip += ("tests", "tools", "benchmarks")
    imported = []
    for info in pkgutil.walk_packages(ext.__path__, prefix=f"{ext.__name__}."):
        relative = info.name[len(ext.__name__) + 1 :]
        if relative.startswith(skip):
            continue
        importlib.import_module(info.name)
        imported.append(relative)
    for needed in ("session.service", "scene.importer", "operators.reconstruct", "panels.reconstruct"):
        assert needed in imported
    assert sys.modules.get("torch") is None


def test_built_zips_carry_their_own_uv_and_install_and_enable_in_a_clean_blender(tmp_path):
    """Build one zip per platform with this Blender's own extension tool (it validates each), then install
    this platform's zip in a fresh bpy process: the add-on enables and the bundled uv runs."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        build_extension = importlib.import_module("build_extension")
    finally:
        sys.path.remove(str(ROOT / "tools"))
    zips = build_extension.build(tmp_path / "dist")
    manifest = build_extension.manifest()
    assert set(zips) == set(manifest["platforms"]) >= {"linux-x64", "windows-x64", "macos-arm64"}
    for platform_name, zip_file in zips.items():
        with zipfile.ZipFile(zip_file) as archive:
            wheels = [n for n in archive.namelist() if n.endswith(".whl")]
            packed = tomllib.loads(archive.read("blender_manifest.toml").decode())
        assert len(wheels) == 1 and wheels[0].startswith("wheels/uv-"), (platform_name, wheels)
        generated = packed["build"]["generated"]  # what the split build wrote for this platform
        assert generated["platforms"] == [platform_name] and generated["wheels"] == [f"./{wheels[0]}"]
    zip_path = zips[build_extension.this_platform()]
    user = tmp_path / "user"
    code = f"""
import os, sys
os.environ["BLENDER_USER_RESOURCES"] = {str(user)!r}
sys.modules["torch"] = None
import bpy, addon_utils
bpy.ops.extensions.package_install_files(filepath={str(zip_path)!r}, repo="user_default", enable_on_install=True)
name = "bl_ext.user_default.da3_reconstruct"
loaded = addon_utils.check(name)[1]
ok = loaded and hasattr(bpy.types, "VIEW3D_PT_da3_reconstruct") and hasattr(bpy.ops.da3, "reconstruct")
import importlib, subprocess
uv = importlib.import_module(name + ".session.engine_setup").find_uv()
print("UV", uv, subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip(), flush=True)
addon_utils.disable(name)
print("INSTALLED" if ok else "MISSING", flush=True)
os._exit(0)
"""
    out = run_python(code, env={**__import__("os").environ, "PYTHONPATH": ""})
    assert "INSTALLED" in out.stdout, out.stdout + out.stderr
    uv_line = next(line for line in out.stdout.splitlines() if line.startswith("UV "))
    assert str(user) in uv_line and "uv 0.13" in uv_line, uv_line  # the bundled uv, installed by Blender
    installed = user / "extensions" / "user_default" / "da3_reconstruct"
    assert (installed / "blender_manifest.toml").is_file() and (
        installed / "engine" / "process" / "client.py"
    ).is_file()
    assert not (installed / "tests").exists() and not (installed / ".venv").exists()
