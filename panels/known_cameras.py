"""The Inputs section for Scene Cameras: which cameras are the views and where each one's image comes
from (cheap: called on every redraw; nothing is rendered or read here)."""

from __future__ import annotations

import bpy

__all__ = ["draw_scene_cameras"]


def _image_source(obj: bpy.types.Object) -> str | None:
    """What the camera's background shows ("image", "clip") or None (it is rendered)."""
    for bg in obj.data.background_images:
        if bg.source == "IMAGE" and bg.image is not None:
            return "image"
        if bg.source == "MOVIE_CLIP" and (bg.clip is not None or bg.use_camera_clip):
            return "clip"
    return None


def draw_scene_cameras(layout, context: bpy.types.Context) -> None:
    cameras = sorted((o for o in context.selected_objects if o.type == "CAMERA"), key=lambda o: o.name)
    if not cameras:
        layout.label(text="Select the cameras to use as views", icon="OUTLINER_OB_CAMERA")
        return
    rendered = [o for o in cameras if _image_source(o) is None]
    count = len(cameras)
    layout.label(text=f"{count} camera{'s' if count != 1 else ''} selected", icon="OUTLINER_OB_CAMERA")
    col = layout.column(align=True)
    for obj in cameras[:8]:
        source = _image_source(obj)
        col.label(text=f"{obj.name}: {'rendered' if source is None else 'its background ' + source}")
    if count > 8:
        col.label(text=f"… and {count - 8} more")
    if rendered:
        engine = context.scene.render.engine.replace("BLENDER_", "").title()
        box = layout.box()
        box.label(text=f"{len(rendered)} view(s) without a background are rendered", icon="RENDER_STILL")
        box.label(text=f"with {engine} first; Blender waits for each render")
    layout.label(text="The result keeps these cameras, in the scene's units", icon="INFO")
