"""The Blender side's plain logic: no bpy, no torch, so it is testable anywhere.

``models`` (the checkpoint catalogue), ``inputs`` (which images a job gets), ``engine_env`` (which Python
runs the engine and with what environment), ``engine_setup`` (creating that Python's environment with
pip, with progress), ``service`` (one engine process and its one running job, drained from a timer).
Operators read Blender properties into plain values and call these; ``scene/`` builds datablocks.
"""
