"""The solve report on the reconstruction root: custom properties the Camera Solve panel reads back
(``da3_solve_*``) and a text datablock with every frame's error."""

from __future__ import annotations

import bpy
import numpy as np

from ..session.solve import JointLine, SolveSummary

__all__ = ["SOLVE_PROPS", "solve_summary_of", "store_solve"]

SOLVE_PROPS = "da3_solve"  # prefix of the root's report properties


def store_solve(root: bpy.types.Object, solve: SolveSummary, name: str) -> bpy.types.Text:
    """The report on the root (custom properties the panel reads) and in a text datablock (all of it)."""
    nan = float("nan")
    root[f"{SOLVE_PROPS}_error_px"] = solve.error_px if solve.error_px is not None else nan
    root[f"{SOLVE_PROPS}_mean_px"] = solve.mean_px if solve.mean_px is not None else nan
    root[f"{SOLVE_PROPS}_method"] = solve.method
    root[f"{SOLVE_PROPS}_frames"] = solve.frames
    root[f"{SOLVE_PROPS}_focal_px"] = solve.focal_px if solve.focal_px is not None else nan
    root[f"{SOLVE_PROPS}_focal_spread_px"] = (
        solve.focal_spread_px if solve.focal_spread_px is not None else nan
    )
    root[f"{SOLVE_PROPS}_worst_frames"] = [int(f) for f, _ in solve.worst] or [0]
    root[f"{SOLVE_PROPS}_worst_errors"] = [float(e) for _, e in solve.worst] or [nan]
    root[f"{SOLVE_PROPS}_joint_chunks"] = [j.chunk for j in solve.joints] or [0]
    root[f"{SOLVE_PROPS}_joint_residuals"] = [
        j.relative_residual if j.relative_residual is not None else nan for j in solve.joints
    ] or [nan]
    root[f"{SOLVE_PROPS}_joint_count"] = len(solve.joints)
    root[f"{SOLVE_PROPS}_worst_count"] = len(solve.worst)
    text = bpy.data.texts.new(f"{name} Solve Report")
    text.write(solve.text())
    root[f"{SOLVE_PROPS}_text"] = text.name
    return text


def solve_summary_of(root: bpy.types.Object) -> SolveSummary | None:
    """The summary stored on a root by ``store_solve`` (None when the root has no report)."""
    if f"{SOLVE_PROPS}_error_px" not in root:
        return None

    def num(key: str) -> float | None:
        value = float(root.get(f"{SOLVE_PROPS}_{key}", float("nan")))
        return value if np.isfinite(value) else None

    n_worst = int(root.get(f"{SOLVE_PROPS}_worst_count", 0))
    n_joints = int(root.get(f"{SOLVE_PROPS}_joint_count", 0))
    worst_frames = list(root[f"{SOLVE_PROPS}_worst_frames"])[:n_worst]
    worst_errors = list(root[f"{SOLVE_PROPS}_worst_errors"])[:n_worst]
    chunks = list(root[f"{SOLVE_PROPS}_joint_chunks"])[:n_joints]
    residuals = list(root[f"{SOLVE_PROPS}_joint_residuals"])[:n_joints]
    return SolveSummary(
        error_px=num("error_px"),
        mean_px=num("mean_px"),
        method=str(root.get(f"{SOLVE_PROPS}_method", "reprojection")),
        frames=int(root.get(f"{SOLVE_PROPS}_frames", 0)),
        worst=[(int(f), float(e)) for f, e in zip(worst_frames, worst_errors, strict=True)],
        focal_px=num("focal_px"),
        focal_spread_px=num("focal_spread_px"),
        joints=[
            JointLine(int(c), float(r) if np.isfinite(r) else None, None, "")
            for c, r in zip(chunks, residuals, strict=True)
        ],
    )
