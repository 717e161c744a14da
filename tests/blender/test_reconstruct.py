"""The Reconstruct operator end to end: the modal path driven with fake timer and Esc events.

Background mode has no event loop (timers never fire and INVOKE runs execute), so the tests call the
same ``begin`` the operator's ``invoke`` calls and then feed ``modal_step`` TIMER and ESC events, as
Blender's window manager would. Real jobs run in the real engine process (``python -m engine serve``
with this venv's Python, which has torch) on a generated da3-small checkpoint; cancel, crash and error
paths use the scripted fake engine (tests/fakes/fake_engine.py).
"""

from __future__ import annotations

import sys
import time
import types

import bpy
import numpy as np
import pytest

from tests.fakes.fake_engine import fake_engine_argv, fake_env

from .bundles import write_wall_bundle
from .conftest import ENGINE_PYTHON, draw

TIMER = types.SimpleNamespace(type="TIMER", value="NOTHING")
ESC = types.SimpleNamespace(type="ESC", value="PRESS")
MOUSE = types.SimpleNamespace(type="MOUSEMOVE", value="NOTHING")


class FakeOperator:
    """What modal_step needs from an operator: a place for the timer and a report() that records."""

    def __init__(self):
        self._timer = None
        self.reports: list[tuple[set, str]] = []

    def report(self, level, text):
        self.reports.append((level, text))


def drive(sub, op, *, timeout=120.0, on_tick=None) -> set[str]:
    """Feed timer events to the modal step until the job ends; ``on_tick(i)`` runs before each event."""
    reconstruct = sub("operators.reconstruct")
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        event = on_tick(i) if on_tick else None
        result = reconstruct.modal_step(op, bpy.context, event or TIMER)
        if result != {"RUNNING_MODAL"} and result != {"PASS_THROUGH"}:
            return result
        i += 1
        time.sleep(0.02)
    raise AssertionError("the job did not end in time")


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """Three small synthetic photos: a textured wall seen from three positions."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    wall = (rng.random((60, 120, 3)) * 255).astype(np.uint8)
    paths = []
    for i in range(3):
        path = folder / f"IMG_{i + 1:04d}.png"
        Image.fromarray(wall[6:54, 8 * i : 8 * i + 64]).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def job_settings(clean_scene, prefs, photos, checkpoint):
    """Scene settings for a small job on the generated checkpoint, the engine Python = this venv's."""
    s = clean_scene.da3
    for path in photos:
        s.images.add().path = path
    s.model = "CUSTOM"
    s.custom_model = str(checkpoint)
    s.process_res = 56
    prefs.engine_python = ENGINE_PYTHON
    prefs.device = "cpu"
    return s


def _objects() -> set[str]:
    return {o.name for o in bpy.data.objects}


def test_modal_operator_runs_a_real_job_and_imports_it(job_settings, sub):
    reconstruct = sub("operators.reconstruct")
    runtime = sub("operators.runtime")
    panels = sub("panels.reconstruct")
    started = time.monotonic()
    job = reconstruct.begin(bpy.context)
    assert time.monotonic() - started < 1.0  # returns at once: the engine starts in the background
    op = FakeOperator()
    seen = []

    def watch(_i):
        layout = draw(panels.VIEW3D_PT_da3_reconstruct)
        seen.extend(layout.texts("progress"))
        return MOUSE if _i == 1 else None  # other events pass through to Blender

    assert drive(sub, op, on_tick=watch) == {"FINISHED"}, op.reports
    assert any("/" in text for text in seen)  # stage with frame counts, e.g. "Reading images 2/3"

    root = next(o for o in bpy.data.objects if o.get("da3_job") == job.job)
    points = next(c for c in root.children if c.type == "MESH")
    cameras = [c for c in root.children if c.type == "CAMERA"]
    assert len(points.data.vertices) > 100 and len(cameras) == 3
    assert {"Color", "confidence", "view_index"} <= set(points.data.attributes.keys())
    # Cameras are built for the original 64×48 photos, each with its photo as the background.
    assert bpy.context.scene.render.resolution_x == 64 and bpy.context.scene.render.resolution_y == 48
    assert cameras[0].data.background_images[0].image.filepath.endswith(".png")
    assert "Imported" in op.reports[-1][1]
    status = runtime.service().status()
    assert status.kind == "ready" and "CPU" in status.text and "da3-small" in status.text
    assert sys.modules.get("torch") is None  # Blender's process never imported torch


def test_unload_frees_the_model(job_settings, sub):
    reconstruct = sub("operators.reconstruct")
    runtime = sub("operators.runtime")
    reconstruct.begin(bpy.context)
    assert drive(sub, FakeOperator()) == {"FINISHED"}
    assert bpy.ops.da3.unload_model() == {"FINISHED"}
    deadline = time.monotonic() + 30
    while runtime.service().loaded_model is not None and time.monotonic() < deadline:
        runtime.service().pump()
        time.sleep(0.05)
    assert runtime.service().loaded_model is None
    assert "no model loaded" in runtime.service().status().text
    assert not bpy.ops.da3.unload_model.poll()


def _fake(sub, script, **extra):
    sub("operators.runtime").set_engine_override(fake_engine_argv(), fake_env(script, **extra))


def test_esc_cancels_and_nothing_is_imported(job_settings, sub):
    _fake(sub, "slow", delay="0.05")
    reconstruct = sub("operators.reconstruct")
    before = _objects()
    reconstruct.begin(bpy.context)
    op = FakeOperator()
    assert not bpy.ops.da3.reconstruct.poll()  # one job at a time
    with pytest.raises(sub("session.service").BusyError):
        reconstruct.begin(bpy.context)
    result = drive(sub, op, on_tick=lambda i: ESC if i == 20 else None)
    assert result == {"CANCELLED"}
    assert _objects() == before
    assert "cancelled" in op.reports[-1][1].lower() and op.reports[-1][0] == {"WARNING"}


def test_cancel_button_cancels(job_settings, sub):
    _fake(sub, "slow", delay="0.05")
    sub("operators.reconstruct").begin(bpy.context)

    def press_cancel(i):
        if i == 10:
            assert bpy.ops.da3.cancel() == {"FINISHED"}

    assert drive(sub, FakeOperator(), on_tick=press_cancel) == {"CANCELLED"}
    assert not bpy.ops.da3.cancel.poll()


def test_a_crashed_engine_is_an_error_message_not_a_crash(job_settings, sub):
    _fake(sub, "crash")
    runtime = sub("operators.runtime")
    panels = sub("panels.reconstruct")
    before = _objects()
    sub("operators.reconstruct").begin(bpy.context)
    op = FakeOperator()
    assert drive(sub, op) == {"CANCELLED"}
    level, text = op.reports[-1]
    assert level == {"ERROR"} and "stopped unexpectedly" in text and "exit code 3" in text
    assert _objects() == before
    status = runtime.service().status()
    assert status.kind == "error" and "exit code 3" in status.text
    engine_panel = draw(panels.VIEW3D_PT_da3_engine)
    assert any("stopped unexpectedly" in t for t in engine_panel.texts())
    main_panel = draw(panels.VIEW3D_PT_da3_reconstruct)
    assert any("failed" in t for t in main_panel.texts())


def test_an_engine_error_imports_nothing(job_settings, sub):
    _fake(sub, "error")
    before = _objects()
    sub("operators.reconstruct").begin(bpy.context)
    op = FakeOperator()
    assert drive(sub, op) == {"CANCELLED"}
    assert "Fake failure" in op.reports[-1][1] and _objects() == before


def test_execute_waits_and_imports(job_settings, sub, tmp_path):
    """INVOKE runs execute in background mode and in scripts: it blocks until the result is imported."""
    bundle = write_wall_bundle(tmp_path / "fake_result", n=3)
    _fake(sub, "ok", bundle=str(bundle))
    assert bpy.ops.da3.reconstruct("INVOKE_DEFAULT") == {"FINISHED"}
    assert any(o.get("da3_job") for o in bpy.data.objects)


def test_engine_start_is_not_waited_for(job_settings, sub):
    _fake(sub, "ok", ready_delay="1.5")
    runtime = sub("operators.runtime")
    started = time.monotonic()
    sub("operators.reconstruct").begin(bpy.context)
    assert time.monotonic() - started < 0.5
    runtime.service().pump()
    engine = runtime.service().client.state
    assert str(engine) == "starting"
    assert runtime.service().status().kind == "busy"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s, p, tmp: s.images.clear(), "Choose images first"),
        (lambda s, p, tmp: setattr(s.images[0], "path", str(tmp / "gone.png")), "Image not found"),
        (
            lambda s, p, tmp: (setattr(s, "input_mode", "FOLDER"), setattr(s, "folder", str(tmp))),
            "holds no images",
        ),
        (lambda s, p, tmp: setattr(s, "custom_model", str(tmp)), "lacks config.json"),
        (lambda s, p, tmp: setattr(p, "engine_python", str(tmp / "python")), "does not exist"),
    ],
    ids=["no-images", "missing-image", "empty-folder", "bad-model-folder", "bad-engine-python"],
)
def test_bad_input_is_refused_before_any_process(job_settings, prefs, sub, tmp_path, change, message):
    reconstruct = sub("operators.reconstruct")
    runtime = sub("operators.runtime")
    change(job_settings, prefs, tmp_path)
    before = _objects()
    reason = reconstruct.why_not_ready(bpy.context)
    if reason is not None:  # the button is disabled and says why
        assert message in reason
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.da3.reconstruct()
    else:  # the button is enabled; pressing it reports the problem
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.da3.reconstruct()
    assert _objects() == before
    assert runtime.service().client is None or not runtime.service().client.alive


def test_resolution_snaps_to_multiples_of_14(clean_scene):
    s = clean_scene.da3
    s.process_res = 500
    assert s.process_res == 504
    s.process_res = 20
    assert s.process_res == 14


def test_opening_another_file_cancels_the_job(job_settings, sub):
    _fake(sub, "slow", delay="0.05")
    runtime = sub("operators.runtime")
    sub("operators.reconstruct").begin(bpy.context)
    bpy.ops.wm.read_homefile(use_empty=True)  # the modal operator would end here
    deadline = time.monotonic() + 30
    while runtime.service().busy and time.monotonic() < deadline:
        runtime.service().pump()
        time.sleep(0.02)
    assert runtime.service().job.outcome == "cancelled"
    assert not any(o.get("da3_job") for o in bpy.data.objects)
