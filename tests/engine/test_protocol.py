"""The JSON-lines protocol: every message survives the pipe; bad lines are refused with a useful message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.process import protocol as p
from engine.process.protocol import ProtocolError, decode_event, decode_request

ROOT = Path(__file__).resolve().parents[2]

FULL_OPTIONS = p.JobOptions(
    process_res=518,
    process_res_method="lower_bound_crop",
    ref_view_strategy="middle",
    use_ray_pose=True,
    infer_gs=True,
    metric=True,
    metric_model="/models/metric",
    frames=(10, None, 2),
    target_fps=12.5,
    device="cuda:1",
    dtype="bfloat16",
    exports=("points", "gaussians", "colmap"),
    skip_unreadable=True,
    max_points=500_000,
    conf_percentile=25.0,
    cameras="/shots/cams.json",
    seed=7,
    chunk_size=60,
    chunk_overlap=20,
)

REQUESTS = [
    p.ReconstructRequest(
        job="job-1", inputs=("/a/1.jpg", "/a/2.jpg"), output="/out", model="depth-anything/DA3-BASE"
    ),
    p.ReconstructRequest(
        job="job.2", inputs=("/clip.mp4",), output="/out/é ü", model="/models/x", options=FULL_OPTIONS
    ),
    p.CancelRequest(job="job-1"),
    p.UnloadRequest(),
    p.StatusRequest(),
    p.ShutdownRequest(),
]

EVENTS = [
    p.ReadyEvent(
        protocol=p.PROTOCOL_VERSION, engine="0.1.0", device="cuda", torch="2.5.1", cuda="12.4", pid=42
    ),
    p.ReadyEvent(protocol=1, engine="0.1.0", device="cpu", torch=None, cuda=None, model="/m"),
    p.ProgressEvent(job="j", stage="network", current=3, total=8, message="chunk 1/2"),
    p.LogEvent(level="warning", message="skipped 2 unreadable files", job="j"),
    p.LogEvent(level="info", message="engine-wide"),
    p.ResultEvent(
        job="j", files={"bundle": "/out/reconstruction.npz"}, summary={"frames": 3, "metric": False}
    ),
    p.FinishedEvent(job="j", summary={"seconds": 1.5, "points": 1000, "nested": {"a": [1, 2.5, None]}}),
    p.InterruptedEvent(job="j", message="Cancelled by the user."),
    p.ErrorEvent(job="j", message="Out of GPU memory.", traceback="Traceback ...\nX: y\n"),
    p.ErrorEvent(job=None, message="The engine stopped unexpectedly.", traceback="tail", exit_code=-9),
    p.StatusEvent(busy="j", model="/m", device="cuda", idle_seconds=0.0, queued=("k", "l")),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: str(m.TYPE))
def test_every_request_round_trips_through_one_json_line(message):
    line = message.encode()
    assert "\n" not in line and line.isascii()
    assert json.loads(line)["type"] == message.TYPE
    assert decode_request(line) == message
    assert (
        decode_request(line.encode("utf-8") + b"\n") == message
    )  # bytes with the newline, as read from a pipe
    assert p.Request.from_dict(message.to_dict()) == message


@pytest.mark.parametrize("message", EVENTS, ids=lambda m: str(m.TYPE))
def test_every_event_round_trips_through_one_json_line(message):
    line = message.encode()
    assert "\n" not in line and line.isascii()
    assert decode_event(line) == message
    assert p.Event.from_dict(message.to_dict()) == message


def test_every_message_type_is_covered_by_the_round_trip_tests():
    assert {str(m.TYPE) for m in REQUESTS} == set(p.RequestType)
    assert {str(m.TYPE) for m in EVENTS} == set(p.EventType)


def test_job_options_defaults_follow_da3_and_round_trip():
    options = p.JobOptions()
    assert (options.process_res, options.process_res_method, options.ref_view_strategy) == (
        504,
        "upper_bound_resize",
        "saddle_balanced",
    )
    assert p.JobOptions.from_dict(options.to_dict()) == options
    assert p.JobOptions.from_dict(json.loads(json.dumps(FULL_OPTIONS.to_dict()))) == FULL_OPTIONS


def test_options_from_python_values_are_normalised():
    options = p.JobOptions(
        exports=["points"], frames=[0, 100, np.int64(5)], target_fps=np.float32(24), seed=np.int32(3)
    )
    assert options.exports == ("points",)
    assert options.frames == (0, 100, 5) and type(options.frames[2]) is int
    assert options.target_fps == 24.0 and options.seed == 3
    request = p.ReconstructRequest(
        job="a", inputs=[Path("/x/1.png")], output=Path("/out"), model="m", options={}
    )
    assert request.inputs == ("/x/1.png",) and request.output == "/out" and request.options == p.JobOptions()


def test_new_job_ids_are_unique_and_valid():
    ids = {p.new_job_id() for _ in range(100)}
    assert len(ids) == 100
    for job in ids:
        p.CancelRequest(job=job)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "empty line"),
        ("hello", "not valid JSON"),
        ('{"type": "status"', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"job": "a"}', "no 'type'"),
        ('{"type": "explode"}', "unknown request type 'explode'"),
        ('{"type": "progress", "job": "a"}', "unknown request type 'progress'"),  # events don't go this way
        ('{"type": "cancel"}', "missing field(s) 'job'"),
        ('{"type": "cancel", "job": "a", "force": true}', "unknown field(s) 'force'"),
        ('{"type": "status", "verbose": 1}', "status takes no fields"),
        ('{"type": "cancel", "job": 12}', "cancel.job: expected string, got 12"),
        ('{"type": "cancel", "job": "a b"}', "job id"),
        ('{"type": "cancel", "job": ""}', "job id"),
    ],
)
def test_malformed_requests_are_refused_with_a_useful_message(line, expected):
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert expected in str(info.value)
    assert info.value.job is None


RECONSTRUCT = {"type": "reconstruct", "job": "j7", "inputs": ["/a.jpg"], "output": "/o", "model": "m"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"options": {"procces_res": 518}}, "unknown option 'procces_res'. Did you mean 'process_res'?"),
        ({"options": {"colour": 1}}, "Known options: process_res"),
        ({"options": {"process_res": 2}}, "process_res: must be between 14 and 4096"),
        ({"options": {"process_res": 50.5}}, "process_res: expected integer"),
        ({"options": {"use_ray_pose": 1}}, "use_ray_pose: expected boolean, got 1"),
        ({"options": {"max_points": True}}, "max_points: expected integer or null"),
        ({"options": {"frames": [5, 2, 1]}}, "frames"),
        ({"options": {"frames": [0, "end", 1]}}, "frames[1]: expected integer or null"),
        ({"options": {"frames": [0, 10]}}, "expected 3 items"),
        ({"options": {"device": "gpu"}}, "device: must be auto, cpu, mps, cuda or cuda:N"),
        ({"options": {"dtype": "int8"}}, "dtype: must be one of"),
        ({"options": {"exports": ["points", "obj"]}}, "unknown export(s) 'obj'"),
        ({"options": {"exports": ["gaussians"]}}, "'gaussians' needs infer_gs=True"),
        ({"options": {"chunk_size": 10, "chunk_overlap": 10}}, "smaller than chunk_size (10)"),
        ({"options": {"conf_percentile": 100}}, "conf_percentile: must be in [0, 100)"),
        ({"options": {"target_fps": 0}}, "target_fps: must be positive"),
        ({"inputs": []}, "at least one image"),
        ({"inputs": "/a.jpg"}, "inputs: expected list of string"),
        ({"output": ""}, "output"),
        ({"inputs": ["/a.jpg"], "extra": 1}, "unknown field(s) 'extra'"),
    ],
)
def test_a_refused_reconstruct_names_the_problem_and_keeps_its_job_id(change, expected):
    line = json.dumps({**RECONSTRUCT, **change})
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert expected in str(info.value)
    assert info.value.job == "j7"  # so the worker can still end job j7 with an error event


def test_non_finite_numbers_never_reach_the_pipe():
    for line in (
        '{"type": "progress", "job": "j", "stage": "s", "current": 1, "total": NaN}',
        '{"type": "finished", "job": "j", "summary": {"x": Infinity}}',
        '{"type": "finished", "job": "j", "summary": {"x": 1e400}}',
    ):
        with pytest.raises(ProtocolError, match="non-finite|infinity"):
            decode_event(line)
    with pytest.raises(ProtocolError, match="non-finite"):
        p.FinishedEvent(job="j", summary={"error": float("nan")})
    with pytest.raises(ProtocolError, match="non-finite"):
        p.StatusEvent(busy=None, model=None, device="cpu", idle_seconds=float("inf"))


def test_arrays_never_travel_but_numpy_scalars_do():
    with pytest.raises(ProtocolError, match="arrays never travel"):
        p.ResultEvent(job="j", files={}, summary={"depth": np.zeros((2, 2))})
    event = p.FinishedEvent(
        job="j", summary={"points": np.int64(5), "scale": np.float32(0.5), "ok": np.bool_(True)}
    )
    assert decode_event(event.encode()).summary == {"points": 5, "scale": 0.5, "ok": True}


def test_event_fields_are_checked():
    with pytest.raises(ProtocolError, match="level: must be one of"):
        p.LogEvent(level="loud", message="x")
    with pytest.raises(ProtocolError, match=">= 0"):
        p.ProgressEvent(job="j", stage="s", current=-1, total=3)
    with pytest.raises(ProtocolError, match="files.bundle: expected string"):
        p.ResultEvent(job="j", files={"bundle": 3})
    with pytest.raises(ProtocolError, match="unknown event type 'reconstruct'"):
        decode_event(json.dumps(RECONSTRUCT))
    with pytest.raises(ProtocolError, match="missing field"):
        decode_event('{"type": "ready", "protocol": 1}')


def test_terminal_events_name_the_job_they_end():
    assert p.FinishedEvent(job="j").terminal_job == "j"
    assert p.InterruptedEvent(job="j").terminal_job == "j"
    assert p.ErrorEvent(job="j", message="x").terminal_job == "j"
    assert p.ErrorEvent(job=None, message="engine").terminal_job is None
    assert p.ProgressEvent(job="j", stage="s", current=1, total=2).terminal_job is None
    assert p.ProgressEvent(job="j", stage="s", current=3, total=2).fraction == 1.0
    assert p.ProgressEvent(job="j", stage="s", current=3, total=0).fraction is None


def test_protocol_and_client_import_without_torch_or_bpy():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['bpy'] = None\n"
        "import engine.process.protocol, engine.process.client, engine.errors\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
