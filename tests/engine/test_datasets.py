"""Datasets for 3DGS/SuGaR/gsplat and nerfstudio/DN-Splatter, written from a bundle of a synthetic scene
with known geometry: read back by pycolmap (COLMAP) and field by field (transforms.json, the maps), in
the frame of a floor-aligned, scaled root; portable; written whole or not at all."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pycolmap
import pytest
from PIL import Image

from engine.errors import JobCancelled
from engine.formats.bundle import read_bundle, write_bundle
from engine.formats.datasets import (
    SIDECAR_FILE,
    DatasetError,
    DatasetSidecar,
    export_dataset,
    read_sidecar,
    source_from_bundle,
)
from engine.formats.datasets.png import write_png
from engine.geometry.cameras import quaternion_wxyz_to_matrix

N, H, W = 3, 24, 32  # processed grid
ORIG = (48, 64)  # original photos (H, W): exactly 2× the grid
PLANE_Z = 4.0  # the scene: the plane z = 4 of the bundle frame (the reference camera looks at it)


def _root(scale: float = 2.5) -> np.ndarray:
    """A floor-aligned, scaled root: a rotation, a uniform scale and a move."""
    m = np.eye(4)
    m[:3, :3] = scale * quaternion_wxyz_to_matrix(np.array([0.9, 0.3, -0.2, 0.1]))
    m[:3, 3] = [0.5, -1.0, 2.0]
    return m


def _scene(tmp_path, *, with_sky: bool = True, write_photos: bool = True):
    """A bundle of N views of the plane z = PLANE_Z (depth exact per pixel), photos on disk at ORIG."""
    K = np.array([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    ext = np.zeros((N, 3, 4))
    for i in range(N):
        angle = 0.1 * (i - 1)
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
        centre = np.array([0.3 * (i - 1), 0.1 * i, 0.0])
        ext[i, :, :3] = rot
        ext[i, :, 3] = -rot @ centre
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    depth = np.zeros((N, H, W), np.float32)
    for i in range(N):  # world ray of each pixel: X = C + z · Rᵀ ray; on the plane where X_z = PLANE_Z
        rot, centre = ext[i, :, :3], -ext[i, :, :3].T @ ext[i, :, 3]
        direction = rays @ rot  # (H, W, 3) Rᵀ ray
        depth[i] = (PLANE_Z - centre[2]) / direction[..., 2]
    sky = np.zeros((N, H, W), bool)
    if with_sky:
        sky[:, :3, :] = True  # the top rows are sky
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    paths = []
    for i in range(N):
        path = tmp_path / "photos" / f"photo {i}.png"
        path.parent.mkdir(exist_ok=True)
        if write_photos:
            Image.fromarray(np.repeat(np.repeat(images[i], 2, 0), 2, 1)).save(path)
        paths.append(str(path))
    k_orig = np.repeat(K[None], N, 0)
    k_orig[:, :2] *= 2.0
    folder = tmp_path / "bundle"
    write_bundle(
        folder,
        {
            "images": images,
            "depth": depth,
            "conf": np.ones((N, H, W), np.float32),
            "sky": sky,
            "extrinsics": ext.astype(np.float32),
            "intrinsics": np.repeat(K[None], N, 0).astype(np.float32),
            "intrinsics_original": k_orig.astype(np.float32),
            "source_paths": paths,
            "original_sizes": np.tile(ORIG, (N, 1)),
        },
        {"is_metric": True, "model_id": "synthetic"},
    )
    return read_bundle(folder)


def _export(tmp_path, tool, root=None, **kw):
    bundle = _scene(tmp_path, **kw)
    source = source_from_bundle(bundle, max_points=500)
    target = tmp_path / f"data_{tool}"
    sidecar = export_dataset(tool, target, source, _root() if root is None else root, root_name="Scene Root")
    return bundle, source, target, sidecar


def _apply(m, xyz):
    return xyz @ m[:3, :3].T + m[:3, 3]


def test_3dgs_dataset_reads_in_pycolmap_in_the_roots_frame(tmp_path):
    bundle, source, target, sidecar = _export(tmp_path, "3dgs")
    root = _root()
    rec = pycolmap.Reconstruction(str(target / "sparse" / "0"))
    assert sorted(p.name for p in (target / "sparse" / "0").iterdir()) == [
        "cameras.bin",
        "depth_params.json",
        "images.bin",
        "points3D.bin",
    ]  # binary only: no .txt beside the .bin
    by_name = {im.name: im for im in rec.images.values()}
    assert (
        sorted(by_name) == sorted(source.image_names) == sorted(p.name for p in (target / "images").iterdir())
    )
    for i, name in enumerate(source.image_names):
        image = by_name[name]
        cam = rec.cameras[image.camera_id]
        assert cam.model == pycolmap.CameraModelId.PINHOLE and (cam.height, cam.width) == ORIG
        k = bundle.intrinsics_original[i]
        np.testing.assert_allclose(cam.params, [k[0, 0], k[1, 1], k[0, 2], k[1, 2]], rtol=1e-6)
        # the camera centre is the root-applied bundle centre; the viewing axes are turned by the root
        pose = image.cam_from_world()
        r_b, t_b = (
            bundle.extrinsics[i, :, :3].astype(np.float64),
            bundle.extrinsics[i, :, 3].astype(np.float64),
        )
        centre = _apply(root, -r_b.T @ t_b)
        np.testing.assert_allclose(-pose.rotation.matrix().T @ pose.translation, centre, atol=1e-6 * 10)
        rot = root[:3, :3] / np.cbrt(np.linalg.det(root[:3, :3]))
        np.testing.assert_allclose(pose.rotation.matrix(), r_b @ rot.T, atol=1e-6)
    # seed points are the bundle's points put through the root, and dataset_to_root brings them back
    xyz = np.array([rec.points3D[j + 1].xyz for j in range(len(source.points_xyz))])
    np.testing.assert_allclose(xyz, _apply(root, source.points_xyz), atol=1e-9 * 100)
    back = _apply(sidecar.dataset_to_root, xyz)
    np.testing.assert_allclose(
        back, source.points_xyz, rtol=1e-6, atol=1e-6 * np.abs(source.points_xyz).max()
    )
    # the seeds lie on the plane z = PLANE_Z of the bundle frame
    np.testing.assert_allclose(back[:, 2], PLANE_Z, atol=1e-4)
    # every observation reprojects onto its 2D point
    for point in list(rec.points3D.values())[:50]:
        for el in point.track.elements:
            image = rec.images[el.image_id]
            np.testing.assert_allclose(
                image.project_point(point.xyz), image.points2D[el.point2D_idx].xy, atol=1e-6
            )


def test_3dgs_inverse_depth_and_depth_params_give_the_scaled_depth(tmp_path):
    bundle, source, target, sidecar = _export(tmp_path, "3dgs")
    scale = np.cbrt(np.linalg.det(_root()[:3, :3]))
    params = json.loads((target / "sparse" / "0" / "depth_params.json").read_text())
    assert set(params) == {n.rsplit(".", 1)[0] for n in source.image_names}
    for i, name in enumerate(source.image_names):
        stem = name.rsplit(".", 1)[0]
        png = np.asarray(Image.open(target / "depths" / f"{stem}.png"))
        assert png.dtype in (np.uint16, np.int32) and png.shape == ORIG  # graphdeco reads value / 2**16
        inverse = png.astype(np.float64) / 2**16 * params[stem]["scale"] + params[stem]["offset"]
        truth = 1.0 / (scale * np.repeat(np.repeat(bundle.depth[i], 2, 0), 2, 1))
        sky = np.repeat(np.repeat(bundle.sky[i], 2, 0), 2, 1)
        assert np.all(png[sky] == 0)  # sky: infinitely far
        np.testing.assert_allclose(inverse[~sky], truth[~sky], rtol=2e-4)
    assert sidecar.depth_scale == pytest.approx(params[stem]["scale"] / 2**16)


def test_nerfstudio_dataset_schema_field_by_field(tmp_path):
    bundle, source, target, sidecar = _export(tmp_path, "nerfstudio")
    root = _root()
    scale = np.cbrt(np.linalg.det(root[:3, :3]))
    meta = json.loads((target / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and meta["k1"] == meta["k2"] == meta["p1"] == meta["p2"] == 0
    k = bundle.intrinsics_original[0]
    assert (meta["w"], meta["h"]) == (ORIG[1], ORIG[0])  # shared intrinsics at the top
    np.testing.assert_allclose(
        [meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]], k[[0, 1, 0, 1], [0, 1, 2, 2]], rtol=1e-6
    )
    assert meta["ply_file_path"] == "sparse_pc.ply" and meta["depth_unit_scale_factor"] == 1e-3
    assert [f["file_path"] for f in meta["frames"]] == sorted(f["file_path"] for f in meta["frames"])
    for i, fr in enumerate(meta["frames"]):
        c2w = np.array(fr["transform_matrix"])
        assert c2w.shape == (4, 4)
        r_b, t_b = (
            bundle.extrinsics[i, :, :3].astype(np.float64),
            bundle.extrinsics[i, :, 3].astype(np.float64),
        )
        np.testing.assert_allclose(c2w[:3, 3], _apply(root, -r_b.T @ t_b), atol=1e-5)
        # OpenGL: the camera looks down its −Z; that axis is the bundle camera's +Z turned by the root
        rot = root[:3, :3] / scale
        np.testing.assert_allclose(-c2w[:3, 2], rot @ r_b[2], atol=1e-6)
        np.testing.assert_allclose(-c2w[:3, 1], rot @ r_b[1], atol=1e-6)  # OpenCV y is down
        stem = fr["file_path"].split("/")[1].rsplit(".", 1)[0]
        assert fr["depth_file_path"] == f"depths/{stem}.png" and fr["mask_path"] == f"masks/{stem}.png"
        depth = (
            np.asarray(Image.open(target / fr["depth_file_path"])).astype(np.float64)
            * meta["depth_unit_scale_factor"]
        )
        truth = scale * np.repeat(np.repeat(bundle.depth[i], 2, 0), 2, 1)
        sky = np.repeat(np.repeat(bundle.sky[i], 2, 0), 2, 1)
        np.testing.assert_allclose(depth[~sky], truth[~sky], atol=1e-3)
        mask = np.asarray(Image.open(target / fr["mask_path"]))
        assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255} and np.all((mask == 0) == sky)
        normals = np.asarray(Image.open(target / "normals_from_pretrain" / f"{stem}.png")).astype(np.float64)
        n_gl = normals / 255.0 * 2 - 1  # DN-Splatter omnidata: OpenGL camera frame
        inner = n_gl[10:-4, 4:-4]
        # the plane's normal, seen from the camera: the world −Z (toward the cameras) in camera axes
        n_cv = r_b @ np.array([0.0, 0.0, -1.0])
        np.testing.assert_allclose(inner.reshape(-1, 3).mean(0), n_cv * [1, -1, -1], atol=0.02)
    ply = (target / "sparse_pc.ply").read_bytes()
    assert b"property float x" in ply and b"property uchar red" in ply
    assert sidecar.depth_scale == 1e-3 and sidecar.scale_to_metres == pytest.approx(1 / scale)


def test_sidecar_schema_and_round_trip(tmp_path):
    bundle, source, target, sidecar = _export(tmp_path, "nerfstudio")
    data = json.loads((target / SIDECAR_FILE).read_text())
    assert set(data) == {
        "format", "version", "tool", "bundle", "bundle_id", "root_name",
        "dataset_to_root", "scale_to_metres", "depth_scale",
    }  # fmt: skip
    assert data["format"] == "da3-dataset" and data["version"] == 1 and data["tool"] == "nerfstudio"
    assert data["bundle"] == str(bundle.folder.resolve()) and data["bundle_id"] == "bundle"
    assert data["root_name"] == "Scene Root"
    np.testing.assert_allclose(np.array(data["dataset_to_root"]) @ _root(), np.eye(4), atol=1e-12)
    again = read_sidecar(target)
    assert isinstance(again, DatasetSidecar) and again.to_dict() == data


@pytest.mark.parametrize("tool", ["3dgs", "nerfstudio"])
def test_a_copied_dataset_still_loads_without_the_bundle_and_the_photos(tmp_path, tool):
    _, source, target, _ = _export(tmp_path, tool)
    moved = tmp_path / "elsewhere" / "dataset"
    shutil.copytree(target, moved, symlinks=True)
    for gone in (target, tmp_path / "bundle", tmp_path / "photos"):
        shutil.rmtree(gone)
    files = [p for p in moved.rglob("*")]
    assert not any(p.is_symlink() for p in files)
    if tool == "3dgs":
        rec = pycolmap.Reconstruction(str(moved / "sparse" / "0"))
        for image in rec.images.values():
            assert Image.open(moved / "images" / image.name).size == (ORIG[1], ORIG[0])
            assert (moved / "depths" / (image.name.rsplit(".", 1)[0] + ".png")).is_file()
    else:
        meta = json.loads((moved / "transforms.json").read_text())
        assert (moved / meta["ply_file_path"]).is_file()
        for fr in meta["frames"]:
            for key in ("file_path", "depth_file_path", "mask_path"):
                assert (moved / fr[key]).is_file(), fr[key]
        assert len(list((moved / "normals_from_pretrain").iterdir())) == N


def test_processed_images_stand_in_when_the_photos_are_gone(tmp_path):
    bundle = _scene(tmp_path, write_photos=False)
    source = source_from_bundle(bundle, max_points=100)
    target = tmp_path / "data"
    export_dataset("3dgs", target, source, np.eye(4))
    rec = pycolmap.Reconstruction(str(target / "sparse" / "0"))
    cam = next(iter(rec.cameras.values()))
    assert (cam.height, cam.width) == (H, W)  # the bundle's own images, with their own cameras
    np.testing.assert_allclose(cam.params, bundle.intrinsics[0][[0, 1, 0, 1], [0, 1, 2, 2]], rtol=1e-6)
    image = np.asarray(Image.open(target / "images" / source.image_names[1]))
    np.testing.assert_array_equal(image, bundle.images[1])


def test_cancel_and_failure_leave_nothing_and_keep_an_earlier_dataset(tmp_path):
    bundle = _scene(tmp_path)
    source = source_from_bundle(bundle, max_points=100)
    target = tmp_path / "data"
    export_dataset("nerfstudio", target, source, _root())
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    calls = []

    def cancel_at_third():
        calls.append(1)
        if len(calls) == 3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        export_dataset("3dgs", target, source, _root(), check_cancel=cancel_at_third)
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before  # the earlier one is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "data", "photos"]  # no staging left
    calls.clear()
    with pytest.raises(JobCancelled):
        export_dataset("3dgs", tmp_path / "new", source, _root(), check_cancel=cancel_at_third)
    assert not (tmp_path / "new").exists()


def test_refusals_say_what_to_do(tmp_path):
    bundle = _scene(tmp_path)
    source = source_from_bundle(bundle, max_points=100)
    stretched = np.diag([1.0, 2.0, 1.0, 1.0])
    with pytest.raises(DatasetError, match="non-uniform scale"):
        export_dataset("3dgs", tmp_path / "a", source, stretched)
    with pytest.raises(DatasetError, match="mirrored"):
        export_dataset("3dgs", tmp_path / "a", source, np.diag([-1.0, 1.0, 1.0, 1.0]))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.docx").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        export_dataset("3dgs", busy, source, np.eye(4))
    assert (busy / "thesis.docx").read_text() == "mine"
    with pytest.raises(DatasetError, match="does not exist"):
        export_dataset("3dgs", tmp_path / "no" / "such" / "dir", source, np.eye(4))
    # an earlier dataset is replaced, with the trainers' downscaled copies, but not a run trained inside it
    for tool in ("3dgs", "nerfstudio"):
        trained = tmp_path / f"trained-{tool}"
        export_dataset(tool, trained, source, np.eye(4))
        (trained / "images_2").mkdir()
        export_dataset(tool, trained, source, np.eye(4))  # every entry is the export's own
        assert not (trained / "images_2").exists()
        (trained / "outputs" / "run").mkdir(parents=True)
        (trained / "outputs" / "run" / "splat.ply").write_text("hours of training")
        with pytest.raises(DatasetError, match="also outputs .*move them"):
            export_dataset(tool, trained, source, np.eye(4))
        assert (trained / "outputs" / "run" / "splat.ply").read_text() == "hours of training"


def test_png_writer_reads_back_in_pil(tmp_path):
    rng = np.random.default_rng(1)
    for array in (
        rng.integers(0, 65536, (7, 5), dtype=np.uint16),
        rng.integers(0, 256, (6, 9), dtype=np.uint8),
        rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),
    ):
        write_png(tmp_path / "a.png", array)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), array)
