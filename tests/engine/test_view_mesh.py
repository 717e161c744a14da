"""Per-view meshes from depth grids: pieces, cuts at discontinuities whatever the scale, UVs, masks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.unproject import depth_to_world_points
from engine.geometry.view_mesh import view_mesh

H, W, F = 48, 64, 60.0  # a 56° horizontal field of view, like a phone photo
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], np.float64)
IDENTITY = np.hstack([np.eye(3), np.zeros((3, 1))])


def _pose(seed: int = 0) -> np.ndarray:
    """A world-to-camera (3, 4) with a real rotation and translation."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    R = quaternion_wxyz_to_matrix(q / np.linalg.norm(q))
    return np.hstack([R, rng.normal(size=(3, 1))])


def _rays() -> np.ndarray:
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    return np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # (H, W, 3), z = 1


def _plane_depth(normal, distance: float) -> np.ndarray:
    """Z-depth of the camera-frame plane n·X = distance."""
    n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
    return (distance / (_rays() @ n)).astype(np.float32)


def _components(faces: np.ndarray, n: int) -> int:
    """Connected pieces of a triangle mesh (union-find over shared vertices)."""
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, c in faces:
        ra, rb, rc = find(a), find(b), find(c)
        parent[rb] = ra
        parent[find(rc)] = ra
    return len({find(i) for i in np.unique(faces)})


def _camera_centre(w2c: np.ndarray) -> np.ndarray:
    return -w2c[:3, :3].T @ w2c[:3, 3]


def _normals(mesh) -> np.ndarray:
    v = mesh.vertices.astype(np.float64)
    a, b, c = (v[mesh.faces[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


FULL = 2 * (H - 1) * (W - 1)


def test_a_fronto_parallel_plane_is_one_full_grid_facing_the_camera():
    depth = np.full((H, W), 5.0, np.float32)
    mesh = view_mesh(depth, K, IDENTITY)
    assert mesh.num_vertices == H * W and mesh.num_faces == FULL
    assert np.allclose(mesh.vertices[:, 2], 5.0)
    normals = _normals(mesh)
    assert (normals[:, 2] < 0).all()  # towards the camera at the origin (it looks along +z)
    assert np.allclose(mesh.face_areas().sum(), (W / F * 5.0) * (H / F * 5.0) * ((H - 1) * (W - 1)) / (H * W))


@pytest.mark.parametrize("grazing_deg", [45.0, 70.0, 82.0])
def test_a_plane_seen_obliquely_stays_one_piece(grazing_deg):
    # Tilted about the camera's y axis so that the ray through the image's edge meets it at grazing_deg.
    t = np.radians(grazing_deg) - np.arctan((W / 2) / F)
    normal = np.array([np.sin(t), 0.0, -np.cos(t)])
    depth = _plane_depth(normal, -3.0)
    rays = _rays() / np.linalg.norm(_rays(), axis=-1, keepdims=True)
    angles = np.degrees(np.arccos(-(rays @ normal)))
    assert (depth > 0).all() and grazing_deg - 0.5 < angles.max() < grazing_deg + 3
    mesh = view_mesh(depth, K, IDENTITY)
    assert mesh.num_faces == FULL and _components(mesh.faces, mesh.num_vertices) == 1


def _step_scene(scale: float, pose: np.ndarray):
    """Two planes parallel to the image, at 2 and 3 (× scale), split down the middle of the image."""
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, W // 2 :] = 3.0
    w2c = pose.copy()
    w2c[:, 3] *= scale
    return depth * np.float32(scale), w2c


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_a_step_between_two_planes_is_cut_whatever_the_scale(scale):
    depth, w2c = _step_scene(scale, _pose(1))
    mesh = view_mesh(depth, K, w2c)
    # Every quad but the column bridging the step, and two separate pieces.
    assert mesh.num_faces == FULL - 2 * (H - 1)
    assert _components(mesh.faces, mesh.num_vertices) == 2
    ref_depth, ref_w2c = _step_scene(1.0, _pose(1))
    reference = view_mesh(ref_depth, K, ref_w2c)
    assert np.array_equal(mesh.faces, reference.faces)
    assert np.allclose(mesh.vertices, reference.vertices * scale, rtol=1e-5, atol=1e-6 * scale)


def test_either_cut_alone_separates_the_step_and_neither_separates_a_slope():
    depth, w2c = _step_scene(1.0, IDENTITY)
    by_angle = view_mesh(depth, K, w2c, max_jump=None)
    by_jump = view_mesh(depth, K, w2c, max_jump=0.2, max_grazing_deg=None)
    uncut = view_mesh(depth, K, w2c, max_jump=None, max_grazing_deg=None)
    assert by_angle.num_faces == by_jump.num_faces == FULL - 2 * (H - 1)
    assert uncut.num_faces == FULL


def test_uvs_and_colours_land_on_the_pixel_each_vertex_projects_to():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = (4.0 + rng.random((H, W)) * 0.01).astype(np.float32)
    w2c = _pose(2)
    mesh = view_mesh(depth, K, w2c, image=image)
    cam = mesh.vertices.astype(np.float64) @ w2c[:, :3].T + w2c[:, 3]
    pix = cam @ K.T
    x, y = pix[:, 0] / pix[:, 2], pix[:, 1] / pix[:, 2]
    assert np.allclose(mesh.uv[:, 0] * W, x, atol=1e-3) and np.allclose((1 - mesh.uv[:, 1]) * H, y, atol=1e-3)
    col, row = np.floor(x).astype(int), np.floor(y).astype(int)
    assert np.array_equal(mesh.colors, image[row, col])
    # The corners of the grid sample the corner pixels' centres.
    assert mesh.uv[:, 0].min() == pytest.approx(0.5 / W) and mesh.uv[:, 1].max() == pytest.approx(1 - 0.5 / H)


def test_vertices_are_the_unprojected_pixels_in_the_world_frame():
    rng = np.random.default_rng(4)
    depth = (3.0 + rng.random((H, W))).astype(np.float32)
    w2c = _pose(5)
    mesh = view_mesh(depth, K, w2c, max_jump=None, max_grazing_deg=None)
    expected = depth_to_world_points(depth, K, w2c).reshape(-1, 3)
    assert np.allclose(mesh.vertices, expected, atol=1e-5)


def test_faces_face_the_camera_in_the_world_frame():
    depth = _plane_depth([0.3, -0.2, -1.0], -4.0)
    w2c = _pose(6)
    mesh = view_mesh(depth, K, w2c)
    v = mesh.vertices.astype(np.float64)
    centroids = v[mesh.faces].mean(axis=1)
    towards = _camera_centre(w2c) - centroids
    assert (np.einsum("ij,ij->i", _normals(mesh), towards) > 0).all()


def test_sky_invalid_and_masked_pixels_make_no_vertices():
    depth = np.full((H, W), 5.0, np.float32)
    sky = np.zeros((H, W), bool)
    sky[: H // 4] = True  # the top quarter is sky
    depth[H // 2, 10] = np.nan
    depth[H // 2, 20] = -1.0
    keep = np.ones((H, W), bool)
    keep[:, -4:] = False
    mesh = view_mesh(depth, K, IDENTITY, sky=sky, keep=keep)
    rows = np.round((1 - mesh.uv[:, 1]) * H - 0.5).astype(int)
    cols = np.round(mesh.uv[:, 0] * W - 0.5).astype(int)
    assert not sky[rows, cols].any() and keep[rows, cols].all()
    assert not {(H // 2, 10), (H // 2, 20)} & set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert mesh.num_vertices == (H - H // 4) * (W - 4) - 2


def test_least_confident_pixels_are_dropped_and_lonely_vertices_removed():
    depth = np.full((H, W), 5.0, np.float32)
    conf = np.full((H, W), 10.0, np.float32)
    conf[::2, ::2] = 1.0  # every other pixel of every other row: a quarter
    mesh = view_mesh(depth, K, IDENTITY, conf=conf, conf_percentile=30)
    rows = np.round((1 - mesh.uv[:, 1]) * H - 0.5).astype(int)
    cols = np.round(mesh.uv[:, 0] * W - 0.5).astype(int)
    assert (conf[rows, cols] == 10.0).all()
    assert np.bincount(mesh.faces.ravel(), minlength=mesh.num_vertices).min() > 0  # no unused vertex
    assert view_mesh(depth, K, IDENTITY, conf=conf, conf_percentile=0).num_faces == FULL


def test_stride_meshes_every_nth_pixel():
    depth = np.full((H, W), 5.0, np.float32)
    mesh = view_mesh(depth, K, IDENTITY, stride=4)
    gh, gw = len(range(0, H, 4)), len(range(0, W, 4))
    assert mesh.num_vertices == gh * gw and mesh.num_faces == 2 * (gh - 1) * (gw - 1)
    assert mesh.uv[:, 0].min() == pytest.approx(0.5 / W)  # still pixel centres of the full image
    assert sorted(set(np.round(mesh.uv[:, 0] * W - 0.5).astype(int))) == list(range(0, W, 4))


def test_nothing_valid_gives_an_empty_mesh_and_bad_arguments_are_refused():
    empty = view_mesh(np.zeros((H, W), np.float32), K, IDENTITY)
    assert empty.num_vertices == 0 and empty.num_faces == 0
    with pytest.raises(ValueError, match="stride"):
        view_mesh(np.ones((H, W)), K, IDENTITY, stride=0)
    with pytest.raises(ValueError, match="sky"):
        view_mesh(np.ones((H, W)), K, IDENTITY, sky=np.zeros((H, W + 1), bool))
    with pytest.raises(ValueError, match="max_grazing_deg"):
        view_mesh(np.ones((H, W)), K, IDENTITY, max_grazing_deg=120)
