"""Cleaning the results folder (issue 10): old results past the preferences' age and size caps go, but
never a job's folder in use, one the open .blend points into, or the user's own files."""

from __future__ import annotations

import os
import time

import bpy

from .bundles import write_wall_bundle


def _result(root, job: str, age_days: float, now: float):
    folder = write_wall_bundle(root / job, n=2)
    stamp = now - age_days * 86400
    for path in (folder / "manifest.json", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_old_and_oversized_results_go_and_nothing_else(sub, tmp_path):
    cache, publish = sub("session.results_cache"), sub("engine.formats.bundle.publish")
    now = time.time()
    old = _result(tmp_path, "0123456789ab", 40, now)
    older_used = _result(tmp_path, "aaaaaaaaaaaa", 50, now)  # the open .blend uses a file in it
    busy = _result(tmp_path, "bbbbbbbbbbbb", 60, now)  # a job is writing it
    recent = [_result(tmp_path, f"{i:012x}", age, now) for i, age in ((1, 3), (2, 2), (3, 1))]
    mine = tmp_path / "my_renders"  # not ours: never touched
    mine.mkdir()
    (mine / "frame.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("mine")
    size = sum(f.stat().st_size for f in recent[0].rglob("*") if f.is_file())

    with publish.OutputFolder(busy, "writer"):
        report = cache.clean_results(
            tmp_path,
            max_age_days=30,
            max_bytes=2.5 * size,  # room for two of the three recent ones
            in_use=[str(older_used / "reconstruction.npz")],
            now=now,
        )
    assert sorted(report.removed) == sorted([old, recent[0]])
    assert not old.exists() and not recent[0].exists() and not publish.lock_file(old).exists()
    for kept in (older_used, busy, recent[1], recent[2], mine, tmp_path / "notes.txt"):
        assert kept.exists()
    assert report.freed_bytes > size and report.kept_bytes <= 2.5 * size
    nothing = cache.clean_results(tmp_path, max_age_days=0, max_bytes=0, now=now)  # no limits: no removal
    assert nothing.removed == []


def test_reconstruct_cleans_with_the_preferences_caps(clean_scene, sub, prefs, tmp_path):
    reconstruct = sub("operators.reconstruct")
    now = time.time()
    stale = _result(tmp_path, "cccccccccccc", 90, now)
    fresh = _result(tmp_path, "dddddddddddd", 1, now)
    prefs.keep_results_days, prefs.results_cap_gb = 30, 20.0
    image = bpy.data.images.new("uses the fresh one", 4, 4)
    image.filepath = str(fresh / "reconstruction.npz")
    assert str(fresh / "reconstruction.npz") in reconstruct.files_in_use()
    values = sub("preferences").prefs_values(prefs)
    reconstruct.clean_results_folder(str(tmp_path), values)
    assert not stale.exists() and fresh.exists()
