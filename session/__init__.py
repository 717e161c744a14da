"""The Blender session's plain logic: what operators and panels decide, without bpy or torch.

- The engine session: ``service`` (one engine process and its one running job, drained from a timer),
  ``engine_env`` (which Python runs the engine, with what command line and environment),
  ``engine_setup`` (making that Python's environment with uv, with progress).
- Building a job: ``jobspec`` (settings and preferences → one checked request), ``inputs`` (which
  images a job gets), ``models`` (the checkpoint catalogue).
- The timeline: ``shot`` (which scene frame shows which movie frame, the job's frames, the keys' frames).
- The solve report as Blender users read it: ``solve`` (scene frames, ratings, the text block's lines).

Operators read Blender properties into plain values and call these; ``scene/`` builds the datablocks.
Everything here is testable without Blender.
"""
