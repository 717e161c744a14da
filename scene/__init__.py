"""numpy → Blender datablocks: the only place that builds objects, meshes, cameras, node groups.

``convert`` holds the one OpenCV↔Blender conversion (numpy only); ``points``, ``cameras``, ``materials``
and ``nodes`` build datablocks with bulk writes; ``importer`` puts a whole bundle into the scene.
"""
