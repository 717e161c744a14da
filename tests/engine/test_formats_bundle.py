"""Result bundle: round trip, atomic completion (manifest last), incomplete folders, no pickle."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.formats.bundle import (
    ARRAYS_FILE,
    MANIFEST_FILE,
    Bundle,
    BundleError,
    BundleNotFound,
    BundleWriter,
    IncompleteBundle,
    is_complete,
    read_bundle,
    read_manifest,
    write_bundle,
)
from engine.version import ENGINE_VERSION

ROOT = Path(__file__).resolve().parents[2]
N, H, W, M, K = 3, 6, 8, 5, 9


def arrays(seed: int = 0, gaussians: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    out = {
        "images": rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8),
        "depth": rng.uniform(0.5, 9, (N, H, W)).astype(np.float32),
        "conf": rng.uniform(1, 5, (N, H, W)).astype(np.float32),
        "sky": rng.random((N, H, W)) > 0.8,
        "extrinsics": rng.normal(size=(N, 3, 4)).astype(np.float32),
        "intrinsics": np.repeat(np.array([[9.0, 0, 4], [0, 9, 3], [0, 0, 1]], np.float32)[None], N, 0),
        "source_paths": ["/clips/shot.mov", "/clips/shot.mov", "C:\\photos\\é.jpg"],
        "frame_indices": np.array([10, 20, -1]),
        "timestamps_s": np.array([0.4, 0.8, np.nan]),
        "original_sizes": np.array([[1080, 1920]] * N),
    }
    if gaussians:
        out.update(
            gs_means=rng.normal(size=(M, 3)),
            gs_scales=rng.uniform(0.01, 0.1, (M, 3)),
            gs_rotations=rng.normal(size=(M, 4)),
            gs_harmonics=rng.normal(size=(M, 3, K)),
            gs_opacities=rng.uniform(0, 1, M),
        )
    return out


META = {
    "is_metric": True,
    "units": "metre",
    "scale_factor": 1.5,
    "model_id": "depth-anything/DA3NESTED-GIANT-LARGE",
    "options": {"process_res": 504, "ref_view_strategy": "middle"},
    "timings": {"network": 1.25},
    "ref_view_idx": 1,
}


def test_round_trip_keeps_every_key_with_documented_dtypes(tmp_path):
    src = arrays()
    folder = write_bundle(tmp_path / "job", src, META)
    b = read_bundle(folder)
    assert isinstance(b, Bundle) and b.num_views == N and b.image_size == (H, W)
    np.testing.assert_array_equal(b.images, src["images"])
    for key, dtype in [("depth", np.float32), ("conf", np.float32), ("extrinsics", np.float32)]:
        assert getattr(b, key).dtype == dtype
        np.testing.assert_array_equal(getattr(b, key), src[key].astype(dtype))
    assert b.sky.dtype == np.bool_ and np.array_equal(b.sky, src["sky"])
    assert b.source_paths == tuple(src["source_paths"])
    assert b.frame_indices.dtype == np.int64 and list(b.frame_indices) == [10, 20, -1]
    assert b.timestamps_s.dtype == np.float64 and np.isnan(b.timestamps_s[2])
    assert b.original_sizes.dtype == np.int32 and b.original_sizes.shape == (N, 2)
    assert b.is_metric is True and b.units == "metre" and b.scale_factor == 1.5
    assert b.model_id == META["model_id"] and b.options == META["options"] and b.timings == META["timings"]
    assert b.engine_version == ENGINE_VERSION and b.ref_view_idx == 1
    g = b.gaussians
    assert g is not None and g.sh.shape == (M, 3, K) and g.means.dtype == np.float32
    np.testing.assert_allclose(g.opacities, src["gs_opacities"], rtol=1e-6)
    assert b.files == ()


def test_memory_mapped_read_gives_the_same_arrays(tmp_path):
    src = arrays(1)
    src["depth"] = (
        np.random.default_rng(0).uniform(1, 2, (N, 96, 128)).astype(np.float32)
    )  # big enough to map
    src["images"] = np.zeros((N, 96, 128, 3), np.uint8)
    for k in ("conf", "sky"):
        src.pop(k)
    folder = write_bundle(tmp_path / "job", src, {"is_metric": False})
    a, b = read_bundle(folder), read_bundle(folder, mmap=True)
    assert isinstance(b.depth, np.memmap)
    for key in ("images", "depth", "extrinsics", "intrinsics", "frame_indices", "timestamps_s"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.source_paths == b.source_paths and b.conf is None and b.sky is None
    assert b.units == "relative" and np.isnan(b.scale_factor) and b.ref_view_idx is None


def test_defaults_for_optional_per_view_data(tmp_path):
    src = {k: arrays()[k] for k in ("images", "depth", "extrinsics", "intrinsics")}
    b = read_bundle(write_bundle(tmp_path / "b", src))
    assert b.source_paths == ("",) * N
    assert list(b.frame_indices) == [-1] * N and np.isnan(b.timestamps_s).all()
    np.testing.assert_array_equal(b.original_sizes, [[H, W]] * N)
    assert b.conf is None and b.gaussians is None and b.options == {} and b.units == "relative"


def test_manifest_is_written_last_and_describes_the_bundle(tmp_path):
    folder = tmp_path / "job"
    with BundleWriter(folder) as bw:
        bw.write_arrays(arrays(), META)
        assert not (folder / MANIFEST_FILE).exists()
        with pytest.raises(IncompleteBundle, match="manifest.json is missing"):
            read_bundle(folder)
        (bw.path("previews/depth_0000.png")).write_bytes(b"png")
        bw.add_file("previews/depth_0000.png")
        bw.add_file("notes.txt", source=_text_file(tmp_path / "src.txt"))
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["format"] == "da3-bundle" and manifest["schema_version"] == 1
    assert manifest["engine_version"] == ENGINE_VERSION and manifest["created"]
    sizes = {f["name"]: f["size"] for f in manifest["files"]}
    assert sizes[ARRAYS_FILE] == (folder / ARRAYS_FILE).stat().st_size
    assert sizes["previews/depth_0000.png"] == 3
    summary = manifest["summary"]
    assert (summary["num_views"], summary["height"], summary["width"]) == (N, H, W)
    assert summary["units"] == "metre" and summary["model_id"] == META["model_id"]
    assert summary["num_gaussians"] == M
    b = read_bundle(folder)
    assert set(b.files) == {"previews/depth_0000.png", "notes.txt"}
    assert b.file("notes.txt").read_text() == "hello"
    assert not list(folder.glob("*.partial"))


def _text_file(path: Path) -> Path:
    path.write_text("hello")
    return path


def test_extra_folder_is_listed_file_by_file(tmp_path):
    colmap = tmp_path / "colmap_src" / "sparse" / "0"
    colmap.mkdir(parents=True)
    (colmap / "cameras.bin").write_bytes(b"1234")
    (colmap / "images.bin").write_bytes(b"12")
    folder = write_bundle(tmp_path / "job", arrays(), META, extra_files={"colmap": tmp_path / "colmap_src"})
    b = read_bundle(folder)
    assert set(b.files) == {"colmap/sparse/0/cameras.bin", "colmap/sparse/0/images.bin"}


def test_failure_inside_the_writer_leaves_an_incomplete_bundle(tmp_path):
    folder = tmp_path / "job"
    with pytest.raises(RuntimeError):
        with BundleWriter(folder) as bw:
            bw.write_arrays(arrays(), META)
            raise RuntimeError("engine crashed")
    assert (folder / ARRAYS_FILE).exists() and not is_complete(folder)
    with pytest.raises(IncompleteBundle):
        read_bundle(folder)


def test_rewriting_a_bundle_makes_it_incomplete_until_finished(tmp_path):
    folder = write_bundle(tmp_path / "job", arrays(), META)
    assert is_complete(folder)
    bw = BundleWriter(folder)
    assert not is_complete(folder)
    bw.write_arrays(arrays(2), META)
    bw.finish()
    np.testing.assert_array_equal(read_bundle(folder).depth, arrays(2)["depth"])


def test_truncated_arrays_are_detected(tmp_path):
    folder = write_bundle(tmp_path / "job", arrays(), META)
    npz = folder / ARRAYS_FILE
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompleteBundle, match="truncated"):
        read_bundle(folder)
    # a truncated archive whose size the manifest agrees with still fails cleanly
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][0]["size"] = npz.stat().st_size
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IncompleteBundle, match="cannot be read"):
        read_bundle(folder)


def test_manifest_listing_a_missing_file(tmp_path):
    folder = write_bundle(
        tmp_path / "job", arrays(), META, extra_files={"notes.txt": _text_file(tmp_path / "n")}
    )
    (folder / "notes.txt").unlink()
    with pytest.raises(IncompleteBundle, match="'notes.txt' is listed but missing"):
        read_bundle(folder)


def test_damaged_foreign_or_future_manifests(tmp_path):
    folder = write_bundle(tmp_path / "job", arrays(), META)
    good = (folder / MANIFEST_FILE).read_text()
    (folder / MANIFEST_FILE).write_text(good[:20])
    with pytest.raises(IncompleteBundle, match="damaged"):
        read_manifest(folder)
    manifest = json.loads(good)
    manifest["schema_version"] = 99
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="Update the DA3 Reconstruct extension"):
        read_bundle(folder)
    manifest.update(schema_version=1, format="something-else")
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a da3-bundle"):
        read_bundle(folder)
    with pytest.raises(FileNotFoundError):
        read_bundle(tmp_path / "nowhere")
    assert issubclass(BundleNotFound, FileNotFoundError)


def test_no_pickle_anywhere(tmp_path):
    folder = write_bundle(tmp_path / "job", arrays(), META)
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:  # plain numpy can read every member
        assert all(npz[k].dtype != object for k in npz.files)
        assert npz["source_paths"].dtype.kind == "U" and npz["units"].dtype.kind == "U"
    # a tampered archive with a pickled object member is refused, not unpickled
    evil = tmp_path / "evil"
    good = write_bundle(evil, arrays(), META)
    np.savez(
        good / ARRAYS_FILE, **{**dict(np.load(good / ARRAYS_FILE)), "model_id": np.array([{"a": 1}], object)}
    )
    manifest = json.loads((good / MANIFEST_FILE).read_text())
    manifest["files"][0]["size"] = (good / ARRAYS_FILE).stat().st_size
    (good / MANIFEST_FILE).write_text(json.dumps(manifest))
    for mmap in (False, True):
        with pytest.raises(BundleError):
            read_bundle(good, mmap=mmap)


def test_members_are_stored_uncompressed(tmp_path):
    folder = write_bundle(tmp_path / "job", arrays(), META)
    with zipfile.ZipFile(folder / ARRAYS_FILE) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": np.zeros((N, H, W, 3), np.float32)}, "uint8"),
        ({"depth": np.zeros((N, H, W + 1))}, "depth must have shape"),
        ({"extrinsics": np.zeros((N, 3, 3))}, "world-to-camera"),
        ({"gs_means": None}, "Gaussians need all"),
        ({"mystery": np.zeros(3)}, "unknown bundle keys"),
        ({"source_paths": ["a"]}, "source_paths must list"),
    ],
)
def test_bad_input_is_explained(tmp_path, change, message):
    src = {**arrays(), **change}
    with pytest.raises(BundleError, match=message):
        write_bundle(tmp_path / "job", src, META)
    assert not is_complete(tmp_path / "job")


def test_bad_meta_is_explained(tmp_path):
    with pytest.raises(BundleError, match="units"):
        write_bundle(tmp_path / "a", arrays(), {"units": "feet"})
    with pytest.raises(BundleError, match="metre"):
        write_bundle(tmp_path / "b", arrays(), {"is_metric": True, "units": "relative"})
    with pytest.raises(BundleError, match="ref_view_idx"):
        write_bundle(tmp_path / "c", arrays(), {"ref_view_idx": N})
    with pytest.raises(BundleError, match="bad extra file name"):
        write_bundle(tmp_path / "d", arrays(), {}, extra_files={"../x": tmp_path})


def test_formats_and_geometry_import_with_numpy_alone():
    """Blender loads these modules: they must not pull in PIL, trimesh, torch or the test readers."""
    code = (
        "import sys\n"
        "for name in ('PIL', 'trimesh', 'torch', 'plyfile', 'pycolmap', 'cv2', 'bpy', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        "import engine.formats.bundle, engine.formats.ply, engine.formats.gaussians_ply\n"
        "import engine.formats.colmap, engine.formats.glb, engine.formats.previews\n"
        "import engine.geometry.cameras, engine.geometry.unproject, engine.geometry.filters\n"
        "import engine.geometry.sim3\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
