"""Blender 4.2 … 5.x through one compatibility module (``scene/compat.py``), on whichever Blender runs.

The same tests run on every Blender the suite runs on (tools/test.sh: 4.2 LTS, 4.5 LTS, newest 5.x).
"""

from __future__ import annotations

import re
import warnings

import bpy
import numpy as np
import pytest

from tests.engine.media import make_test_images, write_test_video

from .bundles import write_wall_bundle
from .conftest import ROOT, draw


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """12 frames of 96×64 (lossless, 24 fps)."""
    folder = tmp_path_factory.mktemp("movie")
    return str(write_test_video(folder / "numbers.mkv", make_test_images(12, 64, 96), fps=24))


# Names that differ between Blender versions: only the compatibility module may spell them.
VERSION_SPECIFIC = (
    r"bpy\.app\.version",
    r"\.frame_final_(start|end)\b",
    r"\.animation_offset_(start|end)\b",
    r"\bsequences(_all)?\b",
    r"\.use_nodes\b",
    r"""\[["']Socket_""",
    r"\.fcurves\.new\b",
    r"\bchannelbag\b",
    r"\.content_(start|end|duration|trim_start|trim_end)\b",
    r"\.(left|right)_handle\b",
    r"\bproperties\.inputs\b",
)


def test_only_the_compatibility_module_branches_on_blender_versions():
    offenders = []
    for folder in ("scene", "operators", "panels", "preferences"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "compat.py":
                continue
            text = path.read_text(encoding="utf-8")
            for pattern in VERSION_SPECIFIC:
                for match in re.finditer(pattern, text):
                    line = text.count("\n", 0, match.start()) + 1
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not offenders, offenders


def test_point_size_and_confidence_read_back_through_the_module_and_the_panel_draws_them(
    clean_scene, sub, tmp_path
):
    importer, compat, panels = sub("scene.importer"), sub("scene.compat"), sub("panels.reconstruct")
    nodes = sub("scene.nodes")
    result = importer.import_bundle(bpy.context, write_wall_bundle(tmp_path / "wall", n=2))
    modifier = result.points.modifiers[nodes.MODIFIER_NAME]
    size = compat.modifier_input_value(modifier, "Point Size")
    assert 0 < size < 0.01  # the importer's relative point size
    assert compat.modifier_input_value(modifier, "Min Confidence") == 0.0
    assert compat.modifier_input_value(modifier, "Scene Size") == np.float32(result.points["da3_scene_size"])
    assert compat.modifier_input_value(modifier, "Material").name == sub("scene.materials").POINT_MATERIAL

    compat.set_modifier_input(modifier, "Min Confidence", 0.25)
    compat.set_modifier_input(modifier, "Point Size", 2 * size)
    assert compat.modifier_input_value(modifier, "Min Confidence") == np.float32(0.25)
    assert compat.modifier_input_value(modifier, "Point Size") == np.float32(2 * size)

    bpy.context.view_layer.objects.active = result.points
    layout = draw(panels.VIEW3D_PT_da3_display)  # checks every drawn property against RNA
    assert len(layout.texts("prop")) == 2
    for name in ("Point Size", "Min Confidence"):  # what the panel draws is the value the module reads
        data, prop = compat.modifier_input_owner(modifier, name)
        assert data.path_resolve(prop) == compat.modifier_input_value(modifier, name)


def test_node_trees_and_keys_without_deprecated_api(clean_scene, sub):
    compat, animation = sub("scene.compat"), sub("scene.animation")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # 5.x warns on names it will remove in 6.0
        material = bpy.data.materials.new("probe")
        tree = compat.ensure_node_tree(material)
        assert tree is not None and tree == material.node_tree
        world = bpy.data.worlds.new("probe")
        assert compat.ensure_node_tree(world) is not None
        obj = bpy.data.objects.new("keyed", None)
        new_fcurve = compat.fcurve_factory(obj)
        frames = np.arange(1, 6, dtype=np.float32)
        animation.set_keys(new_fcurve, "location", frames, np.stack([frames, 2 * frames, 3 * frames], 1))
        assert len(compat.fcurves_of(obj)) == 3
        keyed, values = animation.key_values(obj, "location", 3)
    assert keyed.tolist() == frames.tolist() and values[:, 2].tolist() == (3 * frames).tolist()


def test_strip_timing_reads_the_same_placement_under_either_name(clean_scene, sub, movie):
    compat = sub("scene.compat")
    editor = clean_scene.sequence_editor_create()
    strip = (editor.strips if hasattr(editor, "strips") else editor.sequences).new_movie(
        "plate", movie, channel=1, frame_start=10
    )
    timing = compat.strip_timing(strip)
    assert (timing.start, timing.first, timing.trim_start) == (10.0, 10, 0)
    assert timing.end - timing.first == timing.length
    assert [s.name for s in compat.sequencer_strips(clean_scene)] == ["plate"]
