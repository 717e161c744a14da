"""The solve report of a shot, in scene frames, for the panel, the Info log and a text block (no bpy).

The engine writes ``SolveReport.to_dict()`` (engine/geometry/solve_report.py) into the bundle: one error
per view in plate pixels (the reprojection error when it could be measured), the worst frames, the
focal length and its spread, and each chunk joint's residual. Blender users think in scene frames, so
``SolveSummary.from_report`` turns the report's views into the scene frames their camera keys sit on.

Blender's own camera solver reads: below 0.3 px accurate, up to 3 px usable, above that something is
wrong (focal length, distortion, bad tracks); ``rating`` gives the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["JointLine", "SolveSummary", "rating"]

ZOOM_HINT = 0.02  # a focal spread above 2 % of the focal length suggests a zoom


def rating(error_px: float | None) -> str:
    """Blender's solver wording for an average error in pixels."""
    if error_px is None or not math.isfinite(error_px):
        return "not measured"
    if error_px < 0.3:
        return "accurate"
    if error_px <= 3.0:
        return "usable"
    return "poor: check the focal length and the footage"


def _num(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class JointLine:
    """One chunk joint: the later chunk's index, its residual as a share of the scene depth, how it was fit."""

    chunk: int
    relative_residual: float | None  # e.g. 0.004 = 0.4 % of the typical camera-to-surface distance
    inlier_fraction: float | None
    method: str


@dataclass(frozen=True)
class SolveSummary:
    """What the Camera Solve panel shows (errors in plate pixels, frames on the scene timeline)."""

    error_px: float | None  # median per-frame error (the headline)
    mean_px: float | None
    method: str  # "reprojection" or "depth"
    frames: int  # frames with a measured error
    worst: list[tuple[int, float]]  # (scene frame, error px), the worst first
    focal_px: float | None
    focal_spread_px: float | None
    joints: list[JointLine] = field(default_factory=list)
    per_frame: list[tuple[int, float | None]] = field(default_factory=list)  # (scene frame, error px)

    @property
    def rating(self) -> str:
        return rating(self.error_px)

    @property
    def zoom_suspected(self) -> bool:
        if not self.focal_px or self.focal_spread_px is None:
            return False
        return self.focal_spread_px > ZOOM_HINT * self.focal_px

    @property
    def worst_joint(self) -> float | None:
        values = [j.relative_residual for j in self.joints if j.relative_residual is not None]
        return max(values) if values else None

    @classmethod
    def from_report(
        cls, report: dict, scene_frames: np.ndarray, shot: dict | None = None, worst: int = 5
    ) -> SolveSummary:
        """``report``: the bundle's solve report; ``scene_frames (N,)``: the scene frame of each view."""
        scene_frames = np.asarray(scene_frames, np.int64).reshape(-1)
        errors = [_num(e) for e in report.get("frame_error_px") or []]
        if len(errors) != len(scene_frames):
            errors = (errors + [None] * len(scene_frames))[: len(scene_frames)]
        per_frame = [(int(f), e) for f, e in zip(scene_frames, errors, strict=True)]
        # The report's frames name its views; its worst list uses those names.
        names = [int(f) for f in report.get("frames") or range(len(scene_frames))]
        row_of = {name: row for row, name in enumerate(names) if row < len(scene_frames)}
        worst_list = []
        for item in report.get("worst_frames") or []:
            name, error = int(item[0]), _num(item[1])
            if name in row_of and error is not None:
                worst_list.append((int(scene_frames[row_of[name]]), error))
        if not worst_list:  # rank the views ourselves
            ranked = sorted(((e, f) for f, e in per_frame if e is not None), reverse=True)
            worst_list = [(f, e) for e, f in ranked[:worst]]
        joints = [
            JointLine(
                int(j.get("chunk", i + 1)),
                _num(j.get("relative_residual")),
                _num(j.get("inlier_fraction")),
                str(j.get("method", "points")),
            )
            for i, j in enumerate(report.get("joints") or [])
        ]
        focal = _num(report.get("focal_px"))
        spread = _num(report.get("focal_spread_px"))
        if shot:
            focal = _num(shot.get("focal_px")) or focal
            spread = _num(shot.get("focal_spread_px")) if spread is None else spread
        return cls(
            error_px=_num(report.get("median_error_px")),
            mean_px=_num(report.get("mean_error_px")),
            method=str(report.get("method", "reprojection")),
            frames=sum(e is not None for e in errors),
            worst=worst_list[:worst],
            focal_px=focal,
            focal_spread_px=spread,
            joints=joints,
            per_frame=per_frame,
        )

    def headline(self) -> str:
        """One line for the Info log and the panel."""
        what = "reprojection" if self.method == "reprojection" else "depth-consistency"
        if self.error_px is None:
            return f"Solve {what} error: not measured"
        return (
            f"Solve {what} error {self.error_px:.2f} px ({self.rating}), mean {self.mean_px or 0.0:.2f} px "
            f"over {self.frames} frames"
        )

    def lines(self) -> list[str]:
        """The report as text lines (the Info log and the text datablock)."""
        out = [self.headline()]
        if self.worst:
            out.append("Worst frames: " + ", ".join(f"{f} ({e:.2f} px)" for f, e in self.worst))
        if self.focal_px is not None:
            spread = f" ± {self.focal_spread_px:.1f} px" if self.focal_spread_px is not None else ""
            hint = " (varies: a zoom? try Animated Focal Length)" if self.zoom_suspected else ""
            out.append(f"Focal length {self.focal_px:.1f} px{spread}{hint}")
        if self.joints:
            worst_joint = self.worst_joint
            text = f"{100 * worst_joint:.2f} % of the scene depth" if worst_joint is not None else "n/a"
            out.append(f"{len(self.joints)} chunk joints, worst residual {text}")
        return out

    def text(self) -> str:
        """The full report: the summary, each joint and every frame's error."""
        out = self.lines() + ["", "Chunk joints (residual as a share of the scene depth):"]
        for j in self.joints:
            residual = f"{100 * j.relative_residual:.3f} %" if j.relative_residual is not None else "n/a"
            inliers = f", {100 * j.inlier_fraction:.0f} % inliers" if j.inlier_fraction is not None else ""
            out.append(f"  chunk {j.chunk}: {residual}{inliers} ({j.method})")
        if not self.joints:
            out.append("  none (one chunk)")
        out += ["", "Frame  error (px)"]
        out += [f"{f:5d}  {'n/a' if e is None else f'{e:.3f}'}" for f, e in self.per_frame]
        return "\n".join(out) + "\n"
