"""Panels and preferences draw (with a recording layout) and say what a user needs to know."""

from __future__ import annotations

import bpy

from .conftest import draw, draw_preferences


def _panels(sub):
    return sub("panels.reconstruct")


def test_idle_panel_offers_reconstruct_and_says_why_it_is_disabled(clean_scene, sub):
    layout = draw(_panels(sub).VIEW3D_PT_da3_reconstruct)
    assert ("operator", "da3.reconstruct") in layout.log
    assert "Choose images first" in layout.texts()
    assert not bpy.ops.da3.reconstruct.poll()


def test_inputs_panel_counts_images_and_folder(clean_scene, sub, tmp_path):
    panels = _panels(sub)
    s = clean_scene.da3
    for name in ("a1.png", "a2.png", "a10.png"):
        (tmp_path / name).write_bytes(b"")
        s.images.add().path = str(tmp_path / name)
    layout = draw(panels.VIEW3D_PT_da3_inputs)
    assert ("operator", "da3.choose_images") in layout.log
    assert any(t.startswith("3 images: a1.png") for t in layout.texts())
    s.input_mode = "FOLDER"
    s.folder = str(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    layout = draw(panels.VIEW3D_PT_da3_inputs)
    assert "3 images in the folder" in layout.texts()


def test_choose_images_keeps_the_natural_order(clean_scene, tmp_path):
    files = [{"name": n} for n in ("f10.jpg", "f2.jpg", "notes.txt", "f1.jpg")]
    assert bpy.ops.da3.choose_images(directory=str(tmp_path), files=files) == {"FINISHED"}
    assert [i.path.rsplit("/", 1)[-1] for i in clean_scene.da3.images] == ["f1.jpg", "f2.jpg", "f10.jpg"]
    assert bpy.ops.da3.clear_images() == {"FINISHED"} and len(clean_scene.da3.images) == 0


def test_model_panel_shows_size_and_licence(clean_scene, sub):
    panels = _panels(sub)
    s = clean_scene.da3
    layout = draw(panels.VIEW3D_PT_da3_model)
    assert "DA3 Small: 137 MB · Apache-2.0" in layout.texts()  # the default model (preferences)
    assert {
        ("prop", "process_res"),
        ("prop", "metric"),
        ("prop", "use_ray_pose"),
        ("prop", "ref_view_strategy"),
    } <= set(layout.log)
    s.model = "DA3_GIANT"
    layout = draw(panels.VIEW3D_PT_da3_model)
    assert any("non-commercial" in t for t in layout.texts())
    s.model = "CUSTOM"
    assert ("prop", "custom_model") in draw(panels.VIEW3D_PT_da3_model).log


def test_import_panel_lists_what_to_import(clean_scene, sub):
    layout = draw(_panels(sub).VIEW3D_PT_da3_import)
    for name in ("import_points", "import_cameras", "camera_backgrounds", "max_points", "set_render"):
        assert ("prop", name) in layout.log


def test_display_panel_exposes_the_live_point_controls(clean_scene, sub, tmp_path):
    from .bundles import write_wall_bundle

    panels = _panels(sub)
    importer = sub("scene.importer")
    assert not panels.VIEW3D_PT_da3_display.poll(bpy.context)
    result = importer.import_bundle(bpy.context, write_wall_bundle(tmp_path / "w", n=2))
    bpy.context.view_layer.objects.active = result.points
    assert panels.VIEW3D_PT_da3_display.poll(bpy.context)
    layout = draw(panels.VIEW3D_PT_da3_display)
    assert len([k for k, _ in layout.log if k == "prop"]) == 2


def test_busy_panel_shows_progress_and_cancel(clean_scene, sub):
    service = sub("session.service")
    runtime = sub("operators.runtime")
    svc = runtime.service()
    svc.job = service.JobState(job="abc", model="m", frames=8, stage="network", current=3, total=8)
    try:
        layout = draw(_panels(sub).VIEW3D_PT_da3_reconstruct)
        assert "Running the network 3/8" in layout.texts("progress")
        assert ("operator", "da3.cancel") in layout.log
        assert svc.status().text == "Busy: Running the network 3/8"
    finally:
        svc.job = None


def test_engine_panel_status_lines(clean_scene, sub, prefs, tmp_path):
    panels = _panels(sub)
    prefs.engine_python = ""
    layout = draw(panels.VIEW3D_PT_da3_engine)
    assert any("not set up" in t for t in layout.texts())
    assert ("operator", "da3.unload_model") in layout.log
    assert not bpy.ops.da3.unload_model.poll()


def test_preferences_draw_engine_models_and_memory(ext, sub, prefs):
    layout = draw_preferences(prefs)
    texts = layout.texts()
    props = {v for k, v in layout.log if k == "prop"}
    assert {
        "engine_python",
        "model_cache",
        "default_model",
        "device",
        "keep_loaded",
        "unload_minutes",
    } <= props
    assert ("operator", "da3.setup_engine") in layout.log
    models = sub("session.models")
    for info in models.MODELS:
        assert info.label in texts
    assert any("(non-commercial)" in t for t in texts) and "6.8 GB" in texts
    assert any("Online access is off" in t for t in texts)  # bpy.app.online_access is False headless
