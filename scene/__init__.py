"""numpy → Blender datablocks: the only place that builds objects, meshes, cameras, node groups.

- ``importer.import_bundle``: the one entry point; it reads a bundle and hands it to ``still`` (points
  and cameras) or ``shot`` (one animated camera over the plate) as the bundle's kind says.
- Shared builders: ``root`` (the job's collection and root Empty, the rollback of a failed import),
  ``camera_data`` (camera datablocks, backgrounds, render settings), ``points``, ``animation`` (bulk
  keys, camera paths), ``materials``, ``nodes``; ``options`` and ``bundle_data`` (what to build, and
  from which arrays).
- Cameras: ``cameras`` (a still's views), ``shot_camera`` (a shot's plate camera); ``shot_inputs``
  (movie clips and strips → a shot source), ``solve_report`` (the report on the root), ``orient``
  (Set Floor, Set Origin, Set Scale on the root).
- ``convert`` holds the one OpenCV↔Blender conversion (numpy only); ``compat`` every Blender 4.2–5.x
  difference.
"""
