"""``--export 3dgs`` and ``--export nerfstudio`` end to end (random weights): each dataset is a folder of
the bundle listed in its manifest, in the frame Blender gives the root, and loads with its reader."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
from PIL import Image

from engine.formats.bundle import read_bundle
from engine.formats.datasets import ENGINE_TO_BLENDER, read_sidecar
from tests.engine.media import make_test_image, make_test_images, write_test_video
from tests.engine.test_cli import run_engine


def test_cli_exports_both_datasets_of_stills_in_the_roots_frame(small_checkpoint, tmp_path):
    stills = tmp_path / "stills"
    stills.mkdir()
    for i in range(3):
        Image.fromarray(make_test_image(i, 96, 128)).save(stills / f"photo {i}.png")
    out = tmp_path / "out"
    done = run_engine(
        "reconstruct", stills, "--out", out, "--model", small_checkpoint, "--process-res", 112,
        "--export", "3dgs,nerfstudio", "--dataset-points", 2000, "--device", "cpu", "--offline",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    b = read_bundle(out)
    assert "3dgs/sparse/0/cameras.bin" in b.files and "nerfstudio/transforms.json" in b.files
    assert (
        "3dgs/da3_dataset.json" in b.files and "nerfstudio/normals_from_pretrain/00000_photo_0.png" in b.files
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left
    # 3dgs: pycolmap reads it; cameras are the bundle's put through the axis turn of Blender's root
    rec = pycolmap.Reconstruction(str(out / "3dgs" / "sparse" / "0"))
    assert len(rec.images) == 3 and 0 < len(rec.points3D) <= 2000
    side = read_sidecar(out / "3dgs")
    np.testing.assert_allclose(side.dataset_to_root, np.linalg.inv(ENGINE_TO_BLENDER), atol=1e-12)
    assert side.tool == "3dgs" and side.bundle == str(out) and side.scale_to_metres is None
    for image in rec.images.values():
        i = int(image.name[:5])
        cam = rec.cameras[image.camera_id]
        np.testing.assert_allclose(
            cam.params, b.intrinsics_original[i][[0, 1, 0, 1], [0, 1, 2, 2]], rtol=1e-6
        )
        centre = -image.cam_from_world().rotation.matrix().T @ image.cam_from_world().translation
        back = side.dataset_to_root[:3, :3] @ centre + side.dataset_to_root[:3, 3]
        r, t = b.extrinsics[i, :, :3].astype(np.float64), b.extrinsics[i, :, 3].astype(np.float64)
        np.testing.assert_allclose(back, -r.T @ t, atol=1e-5)
        assert (out / "3dgs" / "images" / image.name).read_bytes() == (stills / f"photo {i}.png").read_bytes()
        assert (out / "3dgs" / "depths" / image.name).is_file()
    params = json.loads((out / "3dgs" / "sparse" / "0" / "depth_params.json").read_text())
    assert sorted(params) == ["00000_photo_0", "00001_photo_1", "00002_photo_2"]
    # nerfstudio: every referenced file is there, relative
    meta = json.loads((out / "nerfstudio" / "transforms.json").read_text())
    assert len(meta["frames"]) == 3 and (out / "nerfstudio" / meta["ply_file_path"]).is_file()
    for fr in meta["frames"]:
        assert (out / "nerfstudio" / fr["file_path"]).is_file()
        assert (out / "nerfstudio" / fr["depth_file_path"]).is_file()


def test_cli_dataset_of_a_video_shot_has_no_depth_and_says_so(small_checkpoint, tmp_path):
    video = write_test_video(tmp_path / "clip.mkv", make_test_images(6, 96, 128), fps=25)
    out = tmp_path / "out"
    done = run_engine(
        "reconstruct", video, "--out", out, "--model", small_checkpoint, "--process-res", 112,
        "--chunk-size", "4", "--overlap", "2", "--export", "3dgs", "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "depths, normals and masks are left out" in done.stderr
    b = read_bundle(out)
    rec = pycolmap.Reconstruction(str(out / "3dgs" / "sparse" / "0"))
    assert len(rec.images) == b.num_views == 6
    names = sorted(im.name for im in rec.images.values())
    assert names[0] == "00000_clip_000000.jpg"
    for name in names:
        with Image.open(out / "3dgs" / "images" / name) as im:
            assert im.size == (128, 96)
    assert not (out / "3dgs" / "depths").exists()
    side = read_sidecar(out / "3dgs")
    expected = b.world_alignment if b.world_alignment is not None else ENGINE_TO_BLENDER
    np.testing.assert_allclose(side.dataset_to_root @ expected, np.eye(4), atol=1e-9)
    assert side.depth_scale is None
