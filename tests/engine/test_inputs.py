"""Input planning (files, folders, videos, frame ranges) and frame loading with warnings/cancel/progress."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from engine.io.inputs import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Cancelled,
    FrameRef,
    InputError,
    VideoSelection,
    expand_inputs,
    load_frames,
    natural_sort_key,
)
from tests.engine.media import make_test_image, make_test_images, read_frame_number, write_test_video


def _save(folder, name, index, size=(40, 56)):
    path = folder / name
    Image.fromarray(make_test_image(index, *size)).save(path)
    return path


@pytest.fixture
def shot(tmp_path):
    """A folder of 12 numbered PNGs (img1 .. img12), a hidden file and a stray text file."""
    folder = tmp_path / "shot"
    folder.mkdir()
    for i in range(1, 13):
        _save(folder, f"img{i}.png", i)
    _save(folder, ".img0.png", 0)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    return folder


def test_natural_sort_orders_numbers_by_value():
    names = ["img10.png", "img2.png", "IMG1.png", "img1.png", "a.png", "img02.png"]
    assert sorted(names, key=natural_sort_key) == [
        "a.png",
        "IMG1.png",
        "img1.png",
        "img02.png",
        "img2.png",
        "img10.png",
    ]


def test_extension_lists():
    assert {".jpg", ".png", ".tif", ".exr", ".webp"} <= set(IMAGE_EXTENSIONS)
    assert set(VIDEO_EXTENSIONS) == {f".{e}" for e in "mp4 mov avi mkv webm m4v mts mpg mpeg".split()}


def test_folder_expands_to_visible_images_in_natural_order(shot):
    plan = expand_inputs([str(shot)])
    assert [p.path.rsplit("/", 1)[-1] for p in plan] == [f"img{i}.png" for i in range(1, 13)]
    assert all(isinstance(p, FrameRef) and p.frame_index == -1 and math.isnan(p.timestamp_s) for p in plan)


def test_frame_range_applies_to_image_sequences(shot):
    plan = expand_inputs([str(shot)], frames=(2, 9, 3))
    assert [p.path.rsplit("/", 1)[-1] for p in plan] == ["img3.png", "img6.png", "img9.png"]
    files = [str(shot / f"img{i}.png") for i in (5, 1, 7)]  # a hand-picked list keeps its order
    plan = expand_inputs(files, frames=(1, None, 1))
    assert [p.path for p in plan] == files[1:]


def test_videos_become_selections(tmp_path, shot):
    video = write_test_video(tmp_path / "clip.mkv", make_test_images(5, 32, 48), codec="ffv1")
    plan = expand_inputs([str(video), str(shot)], frames=(1, 4, 1), target_fps=None)
    assert plan[0] == VideoSelection(str(video), 1, 4, 1, None)  # each sequence gets the range
    assert [p.path.rsplit("/", 1)[-1] for p in plan[1:]] == ["img2.png", "img3.png", "img4.png"]
    plan = expand_inputs([str(video)], target_fps=12.5)
    assert plan == [VideoSelection(str(video), 0, None, 1, 12.5)]


def test_bad_inputs_are_explained(tmp_path, shot):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_text("")
    with pytest.raises(InputError, match=r"folder '.*empty' contains no images.*\.jpg .*\.png"):
        expand_inputs([str(empty)])
    videos_only = tmp_path / "clips"
    videos_only.mkdir()
    (videos_only / "take1.mov").write_bytes(b"")
    with pytest.raises(InputError, match="take1.mov.*select the video itself"):
        expand_inputs([str(videos_only)])
    with pytest.raises(InputError, match="does not exist"):
        expand_inputs([str(tmp_path / "nowhere.jpg")])
    with pytest.raises(InputError, match="notes.txt.*not a supported file type.*mp4"):
        expand_inputs([str(shot / "notes.txt")])
    with pytest.raises(InputError, match="No inputs"):
        expand_inputs([])
    with pytest.raises(InputError, match="selects none of the 12 images"):
        expand_inputs([str(shot)], frames=(20, None, 1))
    with pytest.raises(InputError, match="frame step"):
        expand_inputs([str(shot)], frames=(0, None, 0))
    with pytest.raises(InputError, match="end frame must be after"):
        expand_inputs([str(shot)], frames=(4, 2, 1))
    with pytest.raises(InputError, match="not both"):
        expand_inputs([str(shot)], frames=(0, None, 2), target_fps=5.0)


def test_load_frames_images_and_video_together(tmp_path, shot):
    video = write_test_video(tmp_path / "clip.mkv", make_test_images(10, 32, 48), fps=10, codec="ffv1")
    progress = []
    loaded = load_frames(
        [str(shot / "img3.png"), str(shot / "img4.png"), str(video)],
        frames=(0, None, 2),
        on_progress=lambda done, total, message: progress.append((done, total, message)),
    )
    assert [r.frame_index for r in loaded.refs] == [-1, 0, 2, 4, 6, 8]
    assert [read_frame_number(im) for im in loaded.images] == [3, 0, 2, 4, 6, 8]
    np.testing.assert_allclose([r.timestamp_s for r in loaded.refs[1:]], [0.0, 0.2, 0.4, 0.6, 0.8], atol=1e-3)
    assert loaded.original_sizes.tolist() == [[40, 56]] + [[32, 48]] * 5
    assert [p[:2] for p in progress] == [(i, 6) for i in range(1, 7)]
    assert "clip.mkv frame 8" in progress[-1][2]
    assert loaded.warnings == []


def test_unreadable_images_are_skipped_with_a_warning_or_refused(shot):
    (shot / "img5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    loaded = load_frames([str(shot)])
    assert len(loaded.images) == 11
    assert "img5.png" not in [r.path.rsplit("/", 1)[-1] for r in loaded.refs]
    assert len(loaded.warnings) == 1 and "img5.png" in loaded.warnings[0]
    with pytest.raises(InputError, match="img5.png"):
        load_frames([str(shot)], skip_unreadable=False)


def test_no_usable_frame_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"nope")
    with pytest.raises(InputError, match="None of the inputs gave a usable frame.*a.jpg"):
        load_frames([str(tmp_path / "a.jpg")])


def test_broken_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(InputError, match="bad.mp4"):
        load_frames([str(bad)])


def test_cancel_between_frames(shot):
    calls = []
    with pytest.raises(Cancelled):
        load_frames(
            [str(shot)],
            should_cancel=lambda: len(calls) >= 3,
            on_progress=lambda done, total, message: calls.append(done),
        )
    assert calls == [1, 2, 3]  # stopped right after the third frame, before decoding a fourth


def test_target_fps_with_stills_warns_and_transform_shrinks_frames(shot):
    loaded = load_frames([str(shot)], target_fps=5.0, transform=lambda im: im[::2, ::2].copy())
    assert len(loaded.images) == 12
    assert loaded.images[0].shape == (20, 28, 3)
    assert loaded.original_sizes[0].tolist() == [40, 56]  # sizes as decoded
    assert any("applies to videos only" in w for w in loaded.warnings)
