"""Video probing and frame selection on videos written by our own test helper (PyAV)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.io.video import VideoReadError, movie_positions, probe_video, read_frames
from tests.engine.media import make_test_images, read_frame_number, write_test_video

av = pytest.importorskip("av")

H, W = 48, 64


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return make_test_images(30, H, W)


@pytest.fixture(scope="module")
def cfr_mkv(tmp_path_factory, frames):
    """30 lossless frames at 24 fps in Matroska (which does not store a frame count)."""
    return write_test_video(tmp_path_factory.mktemp("v") / "cfr.mkv", frames, fps=24, codec="ffv1")


@pytest.fixture(scope="module")
def cfr_mp4(tmp_path_factory, frames):
    return write_test_video(tmp_path_factory.mktemp("v") / "cfr.mp4", frames, fps=30, codec="libx264")


VFR_TIMES = [0.0, 0.02, 0.09, 0.1, 0.31, 0.33, 0.36, 0.52, 0.6, 0.61, 0.95, 1.0, 1.04, 1.3, 1.31]


@pytest.fixture(scope="module")
def vfr_mp4(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("v") / "vfr.mp4"
    return write_test_video(path, frames[: len(VFR_TIMES)], vfr_timestamps_s=VFR_TIMES, codec="libx264")


def test_probe_reports_size_rate_count_and_duration(cfr_mkv, cfr_mp4):
    info = probe_video(cfr_mkv)
    assert (info.width, info.height, info.frame_count, info.rotation_deg) == (W, H, 30, 0)
    assert info.fps == pytest.approx(24) and info.nominal_fps == pytest.approx(24)
    assert info.duration_s == pytest.approx(30 / 24, abs=0.01)
    info = probe_video(cfr_mp4)
    assert (info.width, info.height, info.frame_count) == (W, H, 30)
    assert info.fps == pytest.approx(30)


def test_all_frames_come_back_exact_in_order(cfr_mkv, frames):
    got = list(read_frames(cfr_mkv))
    assert [f.index for f in got] == list(range(30))
    np.testing.assert_allclose([f.timestamp_s for f in got], np.arange(30) / 24, atol=1e-3)
    for f in got:
        assert f.image.dtype == np.uint8 and f.image.shape == (H, W, 3)
        np.testing.assert_array_equal(f.image, frames[f.index])  # ffv1 is lossless


def test_range_and_stride(cfr_mp4):
    got = list(read_frames(cfr_mp4, start=3, end=17, step=4))
    assert [f.index for f in got] == [3, 7, 11, 15]
    assert [read_frame_number(f.image) for f in got] == [3, 7, 11, 15]  # the pixels are those frames
    np.testing.assert_allclose([f.timestamp_s for f in got], np.array([3, 7, 11, 15]) / 30, atol=1e-4)
    assert [f.index for f in read_frames(cfr_mp4, start=25, end=1000)] == [25, 26, 27, 28, 29]


def test_target_fps_on_constant_rate_takes_every_nth_frame(cfr_mkv):
    got = list(read_frames(cfr_mkv, target_fps=8))  # 24 fps -> every third frame
    assert [f.index for f in got] == list(range(0, 30, 3))
    assert [read_frame_number(f.image) for f in got] == list(range(0, 30, 3))
    got = list(read_frames(cfr_mkv, start=4, end=20, target_fps=12))
    assert [f.index for f in got] == list(range(4, 20, 2))


def _nearest_on_grid(times: list[float], fps: float) -> list[int]:
    """Reference: for each grid time t0 + k/fps up to the last time, the nearest frame (ties: earlier)."""
    t = np.asarray(times)
    picked: list[int] = []
    k = 0
    while t[0] + k / fps <= t[-1] + 1e-9:
        distance = np.abs(t - (t[0] + k / fps))
        best = int(np.flatnonzero(distance <= distance.min() + 1e-9)[0])
        if not picked or picked[-1] != best:
            picked.append(best)
        k += 1
    return picked


def test_variable_frame_rate_keeps_real_timestamps(vfr_mp4):
    got = list(read_frames(vfr_mp4))
    assert [f.index for f in got] == list(range(len(VFR_TIMES)))
    np.testing.assert_allclose([f.timestamp_s for f in got], VFR_TIMES, atol=1e-4)
    assert [read_frame_number(f.image) for f in got] == list(range(len(VFR_TIMES)))
    assert probe_video(vfr_mp4).frame_count == len(VFR_TIMES)


@pytest.mark.parametrize("fps", [2.0, 5.0, 10.0, 24.0])
def test_target_fps_on_variable_rate_picks_the_nearest_frames(vfr_mp4, fps):
    got = list(read_frames(vfr_mp4, target_fps=fps))
    expected = _nearest_on_grid(VFR_TIMES, fps)
    assert [f.index for f in got] == expected
    assert [read_frame_number(f.image) for f in got] == expected
    assert len({f.index for f in got}) == len(got)  # no duplicates even above the source rate


def test_display_rotation_is_applied(tmp_path, frames):
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    path = write_test_video(tmp_path / "portrait.mp4", frames[:3], codec="libx264", rotation_deg=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation_deg) == (H, W, 90)
    got = list(read_frames(path))
    assert got[0].image.shape == (W, H, 3)
    upright = np.rot90(frames[1], k=1)  # 90 degrees counter-clockwise, as the display matrix says
    assert np.abs(got[1].image.astype(int) - upright).mean() < 3  # x264 qp 0: YUV round trip only


def test_bad_paths_and_files_are_explained(tmp_path):
    with pytest.raises(VideoReadError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match="is a folder"):
        list(read_frames(tmp_path))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="junk.mp4.*damaged or not a video"):
        probe_video(junk)
    with pytest.raises(VideoReadError, match="junk.mp4"):
        list(read_frames(junk))


def test_truncated_video_reads_what_is_there_or_explains(tmp_path, frames):
    path = write_test_video(tmp_path / "cut.mkv", frames, codec="ffv1")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        got = list(read_frames(path))
    except VideoReadError as exc:
        assert "cut.mkv" in str(exc)
    else:
        assert 0 < len(got) < len(frames)
        for f in got:
            np.testing.assert_array_equal(f.image, frames[f.index])


def test_selection_that_picks_nothing_names_the_video_range(cfr_mkv):
    with pytest.raises(VideoReadError, match=r"it has 30 frames \(0-29.*starts at frame 40"):
        list(read_frames(cfr_mkv, start=40))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": -1}, "first frame"),
        ({"start": 5, "end": 5}, "end frame must be after"),
        ({"step": 0}, "frame step"),
        ({"target_fps": 0.0}, "positive number"),
        ({"step": 2, "target_fps": 10.0}, "not both"),
    ],
)
def test_bad_selection_arguments(cfr_mkv, kwargs, message):
    with pytest.raises(VideoReadError, match=message):
        list(read_frames(cfr_mkv, **kwargs))


def test_frames_by_movie_position_for_variable_frame_rate(vfr_mp4, cfr_mkv):
    """Blender numbers a movie's frames by time, round(t · fps): select by that numbering. Two frames on
    one position: the later (the one shown there); positions no frame falls on give nothing."""
    positions = movie_positions(np.array(VFR_TIMES), 10.0)
    assert positions.tolist() == [0, 0, 1, 1, 3, 3, 4, 5, 6, 6, 10, 10, 10, 13, 13]
    got = [f.index for f in read_frames(vfr_mp4, start=0, end=12, positions_fps=10.0)]
    assert got == [1, 3, 5, 6, 7, 9, 12]
    assert [f.index for f in read_frames(vfr_mp4, start=0, end=12, step=2, positions_fps=10.0)] == [
        1,
        6,
        9,
        12,
    ]
    assert [f.index for f in read_frames(vfr_mp4, start=11, positions_fps=10.0)] == [14]
    # constant frame rate: positions are the decode indices
    by_index = [f.index for f in read_frames(cfr_mkv, start=2, end=20, step=3)]
    assert [f.index for f in read_frames(cfr_mkv, start=2, end=20, step=3, positions_fps=24.0)] == by_index
    with pytest.raises(VideoReadError, match="position"):
        list(read_frames(cfr_mkv, start=2, positions_fps=24.0, target_fps=12.0))
