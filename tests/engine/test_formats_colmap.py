"""COLMAP export, read back with pycolmap: cameras, poses, points, observations, image folder."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest
from PIL import Image

from engine.formats.colmap import ColmapPoints, scale_intrinsics, write_colmap
from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.filters import gather_points

N, H, W = 4, 21, 28  # processed size
ORIG = (63, 112)  # original (H, W): sx = 4, sy = 3


def scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1, 5, (N, H, W)).astype(np.float32)
    images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    K = np.repeat(np.array([[25.0, 0, W / 2], [0, 24.0, H / 2], [0, 0, 1]])[None], N, 0)
    K[3, 0, 0] = 30.0  # one view with its own focal length: a second camera
    rot = quaternion_wxyz_to_matrix(rng.normal(size=(N, 4)))
    ext = np.concatenate([rot, rng.normal(size=(N, 3, 1))], 2).astype(np.float32)
    return depth, images, K, ext


def export(folder, binary: bool, text: bool, budget: int = 400, **kw):
    depth, images, K, ext = scene()
    pts = gather_points(depth, K, ext, images, budget=budget)
    K_orig = scale_intrinsics(K, (H, W), ORIG)
    names = [f"frame_{i:04d}.jpg" for i in range(N)]
    model = write_colmap(
        folder,
        extrinsics=ext,
        intrinsics_original=K_orig,
        image_sizes=ORIG,
        image_names=names,
        points=pts,
        processed_sizes=(H, W),
        binary=binary,
        text=text,
        **kw,
    )
    return model, pts, K_orig, ext, names


@pytest.mark.parametrize(("binary", "text"), [(True, False), (False, True)], ids=["binary", "text"])
def test_pycolmap_reads_cameras_poses_and_points(tmp_path, binary, text):
    model, pts, K_orig, ext, names = export(tmp_path, binary, text)
    assert model == tmp_path / "sparse" / "0"
    suffix = ".bin" if binary else ".txt"
    assert {p.name for p in model.iterdir()} == {f"cameras{suffix}", f"images{suffix}", f"points3D{suffix}"}
    rec = pycolmap.Reconstruction(str(model))
    assert len(rec.cameras) == 2 and len(rec.images) == N and len(rec.points3D) == len(pts)
    by_name = {im.name: im for im in rec.images.values()}
    for i, name in enumerate(names):
        im = by_name[name]
        cam = rec.cameras[im.camera_id]
        assert cam.model == pycolmap.CameraModelId.PINHOLE
        assert (cam.width, cam.height) == (ORIG[1], ORIG[0])
        np.testing.assert_allclose(cam.params, K_orig[i, [0, 1, 0, 1], [0, 1, 2, 2]], rtol=1e-12)
        pose = im.cam_from_world()
        np.testing.assert_allclose(pose.rotation.matrix(), ext[i, :, :3], atol=1e-6)
        np.testing.assert_allclose(pose.translation, ext[i, :, 3], atol=1e-6)
    # point positions and colours: ids follow our order
    xyz = np.array([rec.points3D[j + 1].xyz for j in range(len(pts))])
    rgb = np.array([rec.points3D[j + 1].color for j in range(len(pts))])
    np.testing.assert_allclose(xyz, pts.xyz, atol=1e-6)
    np.testing.assert_array_equal(rgb, pts.rgb)


def test_every_observation_reprojects_onto_its_2d_point(tmp_path):
    model, pts, *_ = export(tmp_path, True, False, budget=None)
    rec = pycolmap.Reconstruction(str(model))
    assert rec.compute_num_observations() == len(pts) == N * H * W
    worst = 0.0
    for pid, point in rec.points3D.items():
        for el in point.track.elements:
            image = rec.images[el.image_id]
            uv = image.project_point(point.xyz)
            worst = max(worst, float(np.abs(uv - image.points2D[el.point2D_idx].xy).max()))
            assert image.points2D[el.point2D_idx].point3D_id == pid
    assert worst < 1e-3
    # the 2D point of processed pixel (u, v) is the centre of the matching original-resolution area
    first = rec.images[1].points2D[0].xy
    u, v = pts.pixel[pts.view == 0][0]
    np.testing.assert_allclose(first, [(u + 0.5) * 4, (v + 0.5) * 3])


def test_binary_and_text_models_agree(tmp_path):
    export(tmp_path / "both", True, True)
    export(tmp_path / "txt", False, True)
    a = pycolmap.Reconstruction(str(tmp_path / "both" / "sparse" / "0"))  # COLMAP prefers the .bin files
    b = pycolmap.Reconstruction(str(tmp_path / "txt" / "sparse" / "0"))
    for pid in (1, 57, 400):
        np.testing.assert_array_equal(a.points3D[pid].xyz, b.points3D[pid].xyz)
    for iid in a.images:
        np.testing.assert_array_equal(
            a.images[iid].cam_from_world().matrix(), b.images[iid].cam_from_world().matrix()
        )
        assert a.images[iid].num_points2D() == b.images[iid].num_points2D()


def test_multi_view_tracks(tmp_path):
    """A point seen by several images (tracks of different lengths) keeps all its observations."""
    K = np.repeat(np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])[None], 3, 0)
    ext = np.repeat(np.eye(4)[None, :3], 3, 0)
    ext[:, 0, 3] = [0.0, -0.5, -1.0]
    xyz = np.array([[0.1, 0.2, 4.0], [-0.3, 0.1, 5.0], [0.0, 0.0, 3.0]])
    # point 0 seen by 3 views, point 1 by 2, point 2 by 1
    track_point = np.array([0, 0, 0, 1, 1, 2])
    track_image = np.array([0, 1, 2, 0, 2, 1])
    cam = xyz[track_point] + ext[track_image, :, 3]
    xy = cam[:, :2] / cam[:, 2:] * 100 + [50, 40]
    pts = ColmapPoints(xyz, np.full((3, 3), 9, np.uint8), np.zeros(3), track_point, track_image, xy)
    for binary in (True, False):
        model = write_colmap(
            tmp_path / str(binary),
            extrinsics=ext,
            intrinsics_original=K,
            image_sizes=(80, 100),
            image_names=["a.png", "b.png", "c.png"],
            points=pts,
            binary=binary,
            text=not binary,
        )
        rec = pycolmap.Reconstruction(str(model))
        assert len(rec.cameras) == 1  # identical intrinsics share one camera
        assert [rec.points3D[i].track.length() for i in (1, 2, 3)] == [3, 2, 1]
        for point in rec.points3D.values():
            for el in point.track.elements:
                image = rec.images[el.image_id]
                np.testing.assert_allclose(image.project_point(point.xyz), image.points2D[el.point2D_idx].xy)


def test_images_folder_copies_files_and_writes_frames(tmp_path):
    src = tmp_path / "photos" / "IMG_1.jpg"
    src.parent.mkdir()
    Image.fromarray(np.zeros((ORIG[0], ORIG[1], 3), np.uint8)).save(src)
    frame = np.random.default_rng(0).integers(0, 256, (ORIG[0], ORIG[1], 3), dtype=np.uint8)
    depth, _, K, ext = scene()
    names = ["IMG_1.jpg", "f1.png", "f2.jpg", "sub/f3.png"]
    write_colmap(
        tmp_path / "scene",
        extrinsics=ext,
        intrinsics_original=scale_intrinsics(K, (H, W), ORIG),
        image_sizes=ORIG,
        image_names=names,
        image_sources=[src, frame, frame, None],
    )
    images = tmp_path / "scene" / "images"
    copied = images / "IMG_1.jpg"
    assert copied.is_file() and not copied.is_symlink()  # a copy: the folder works when moved
    assert copied.read_bytes() == src.read_bytes()
    np.testing.assert_array_equal(np.asarray(Image.open(images / "f1.png")), frame)  # lossless PNG
    with Image.open(images / "f2.jpg") as jpg:
        assert jpg.format == "JPEG" and jpg.size == (ORIG[1], ORIG[0])
    assert not (images / "sub" / "f3.png").exists()
    rec = pycolmap.Reconstruction(str(tmp_path / "scene" / "sparse" / "0"))
    assert len(rec.points3D) == 0 and sorted(im.name for im in rec.images.values()) == sorted(names)


def test_bad_input_is_explained(tmp_path):
    depth, _, K, ext = scene()
    kw = dict(extrinsics=ext, intrinsics_original=K, image_sizes=(H, W))
    with pytest.raises(ValueError, match="unique"):
        write_colmap(tmp_path, image_names=["a.jpg"] * N, **kw)
    with pytest.raises(ValueError, match="space"):
        write_colmap(tmp_path, image_names=["a b.jpg", "b", "c", "d"], **kw)
    with pytest.raises(ValueError, match="processed_sizes"):
        write_colmap(tmp_path, image_names=list("abcd"), points=gather_points(depth, K, ext, budget=5), **kw)
    skewed = K.copy()
    skewed[0, 0, 1] = 2.0
    with pytest.raises(ValueError, match="skew"):
        write_colmap(tmp_path, image_names=list("abcd"), **{**kw, "intrinsics_original": skewed})
    with pytest.raises(FileNotFoundError, match="not found"):
        write_colmap(
            tmp_path, image_names=list("abcd"), image_sources=[tmp_path / "nope.jpg"] + [None] * 3, **kw
        )
