"""Import speed of trained results (issue 12): a SuGaR-layout textured OBJ of about 1M triangles (our
reader and mesh build, beside Blender's own ``wm.obj_import`` of the same file), and 1M SuGaR splats
bound to it (nearest face by Blender's BVH, the numpy binding, the attributes and the modifier).

    .venv-blender5/bin/python benchmarks/result_import_speed.py [--grid 708] [--splats 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_speed import ROOT, _load_extension  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=int, default=708, help="grid side: 2·(n−1)² triangles")
    parser.add_argument("--splats", type=int, default=1_000_000)
    args = parser.parse_args()
    _load_extension()
    import bpy
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from da3_reconstruct.scene.splat_binding import bind_to_mesh
    from da3_reconstruct.scene.tool_results import import_results

    from engine.formats.datasets.png import write_png
    from engine.formats.datasets.sidecar import DatasetSidecar, write_sidecar
    from engine.formats.gaussians_ply import SplatTable, write_splat_table

    tmp = Path(tempfile.mkdtemp(prefix="da3_results_"))
    n = args.grid
    v, u = np.mgrid[0:n, 0:n] / (n - 1)
    verts = np.stack([u.ravel(), v.ravel(), 0.1 * np.sin(6 * u.ravel()) * np.cos(4 * v.ravel())], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    dataset = tmp / "dataset"
    dataset.mkdir()
    write_sidecar(dataset, DatasetSidecar("3dgs", str(tmp / "bundle"), "bundle", None, np.eye(4), None, None))
    obj = dataset / "output" / "refined_mesh" / "dataset" / "sugarfine.obj"
    obj.parent.mkdir(parents=True)
    write_png(obj.with_suffix(".png"), np.full((64, 64, 3), 128, np.uint8))
    obj.with_suffix(".mtl").write_text("newmtl mesh\nmap_Kd sugarfine.png\n")
    with open(obj, "w") as fh:
        fh.write("mtllib sugarfine.mtl\nusemtl mesh\n")
        np.savetxt(fh, verts, fmt="v %.6f %.6f %.6f")
        np.savetxt(fh, verts[:, :2], fmt="vt %.6f %.6f")
        f1 = faces + 1
        np.savetxt(fh, np.repeat(f1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
    rng = np.random.default_rng(0)
    m = args.splats
    face = rng.integers(0, len(faces), m)
    bary = rng.dirichlet([3, 3, 3], m)
    means = np.einsum("mk,mki->mi", bary, verts[faces[face]]) + rng.normal(scale=1e-4, size=(m, 3))
    table = SplatTable(
        means=means.astype(np.float32),
        log_scales=np.full((m, 3), -6.0, np.float32),
        quaternions=rng.normal(size=(m, 4)).astype(np.float32),
        sh=rng.normal(size=(m, 3, 16)).astype(np.float32),
        opacity_logits=np.zeros(m, np.float32),
    )
    ply = dataset / "output" / "refined_ply" / "dataset" / "sugarfine.ply"
    ply.parent.mkdir(parents=True)
    write_splat_table(ply, table)
    print(f"{len(faces):,} triangles ({obj.stat().st_size / 1e6:.0f} MB OBJ), {m:,} splats")

    bpy.ops.wm.read_homefile(use_empty=True)
    ctx = bpy.context
    obj.read_bytes()
    t = time.perf_counter()
    result = import_results(ctx, [str(obj)], companions=False)
    print(f"OBJ (ours: read, mesh, UVs, material): {time.perf_counter() - t:.2f} s")
    mesh_obj = result.objects[0]
    t = time.perf_counter()
    bpy.ops.wm.obj_import(filepath=str(obj), forward_axis="Y", up_axis="Z")
    print(f"OBJ (wm.obj_import): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    splats = import_results(ctx, [str(ply)], companions=False, bind=False).objects[0]
    print(f"1M splats import (no binding): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    bind_to_mesh(ctx, splats, mesh_obj)
    print(f"binding {m:,} splats to {len(faces):,} faces: {time.perf_counter() - t:.2f} s")
    splats.modifiers["DA3 Gaussians"].show_viewport = False
    t = time.perf_counter()
    dg = ctx.evaluated_depsgraph_get()
    dg.update()
    splats.evaluated_get(dg)
    print(f"evaluating the bound positions: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
