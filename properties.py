"""The N-panel's settings, stored per scene (``scene.da3``), and ``settings_values`` to read them as a dict."""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import idnames
from .engine.process.protocol import (
    DATASET_POINTS_DEFAULT,
    DATASET_POINTS_RANGE,
    MESH_DETAIL_RANGE,
    PROCESS_RES_METHODS,
    REF_VIEW_STRATEGIES,
)
from .session import models
from .session.jobspec import MAX_RES, MIN_RES, snap_resolution

__all__ = [
    "SHOT_MODES",
    "DA3_PG_image_item",
    "DA3_PG_scene_settings",
    "import_values",
    "is_shot",
    "settings",
    "settings_values",
]

MODEL_ITEMS = (
    [("DEFAULT", "Default", "The default model from the add-on preferences")]
    + models.enum_items()
    + [("CUSTOM", "Local Folder", "A checkpoint folder on disk (config.json + model.safetensors)")]
)
REF_VIEW_LABELS = {
    "saddle_balanced": ("Balanced", "The view most like the others (DA3's default)"),
    "saddle_sim_range": ("Similarity Range", "The view with the widest spread of similarity to the others"),
    "first": ("First", "The first image is the reference"),
    "middle": ("Middle", "The middle image is the reference"),
}
DATASET_TOOL_ITEMS = [
    (
        "3dgs",
        "3DGS / SuGaR / gsplat",
        "COLMAP layout (images/, sparse/0 binary) with inverse-depth maps for 3DGS",
    ),
    ("nerfstudio", "nerfstudio / DN-Splatter", "transforms.json with depth, normals and sky masks"),
]
RESIZE_LABELS = {
    "upper_bound_resize": ("Fit Longer Side", "Scale so the longer side is the resolution"),
    "lower_bound_resize": ("Fit Shorter Side", "Scale so the shorter side is the resolution"),
    "upper_bound_crop": ("Fit Longer Side, Crop", "Scale the longer side, crop to multiples of 14"),
    "lower_bound_crop": ("Fit Shorter Side, Crop", "Scale the shorter side, crop to multiples of 14"),
}


def _snap(self, _context) -> None:
    snapped = snap_resolution(self.process_res)
    if snapped != self.process_res:  # setting it calls this again, once
        self.process_res = snapped


class DA3_PG_image_item(bpy.types.PropertyGroup):
    path: StringProperty(name="Path", subtype="FILE_PATH")


class DA3_PG_scene_settings(bpy.types.PropertyGroup):
    input_mode: EnumProperty(
        name="Input",
        items=[
            ("FILES", "Images", "Images chosen in the file browser"),
            ("FOLDER", "Folder", "Every image in a folder"),
            (
                "CAMERAS",
                "Scene Cameras",
                "The selected cameras as the views, with their known intrinsics and poses: each camera's "
                "background image, or a render from it. The result lands in the scene's frame and units",
            ),
            (
                "CLIP",
                "Movie Clip",
                "Track the camera of the Clip Editor's movie clip (the scene's active clip)",
            ),
            ("STRIP", "Movie Strip", "Track the camera of the movie strip selected in the Video Sequencer"),
            ("VIDEO", "Video File", "Track the camera of a video file"),
        ],
        default="FILES",
    )
    use_camera_track: BoolProperty(
        name="Use Camera Track",
        description="Condition the shot on an animated camera that already tracks it (Blender's tracker, "
        "ours, or one imported from another tracker): the result keeps its cameras and lands in its frame",
        default=False,
    )
    track_camera: PointerProperty(
        name="Track Camera",
        description="The animated camera of the shot",
        type=bpy.types.Object,
        poll=lambda _self, obj: obj.type == "CAMERA",
    )
    video_file: StringProperty(name="Video", description="The video file to track", subtype="FILE_PATH")
    shot_whole: BoolProperty(
        name="Whole Shot",
        description="Track every frame the clip or strip shows on the timeline",
        default=True,
    )
    shot_frame_start: IntProperty(
        name="Start", description="First scene frame to track", default=1, min=0, max=1_048_574
    )
    shot_frame_end: IntProperty(
        name="End", description="Last scene frame to track", default=250, min=0, max=1_048_574
    )
    shot_stride: IntProperty(
        name="Step",
        description="Track every n-th frame (the camera is keyed on those frames and interpolated between)",
        default=1,
        min=1,
        soft_max=10,
    )
    chunk_size: IntProperty(
        name="Chunk Size",
        description="Frames per network pass; long shots go through in overlapping chunks "
        "(0: automatic, the fastest chunking for this device that fits in memory)",
        default=0,
        min=0,
        soft_max=256,
    )
    chunk_overlap: IntProperty(
        name="Overlap",
        description="Frames that consecutive chunks share to join them (0: automatic, at least 8; half a "
        "chunk when the chunk size is set)",
        default=0,
        min=0,
        soft_max=128,
    )
    camera_rotation: EnumProperty(
        name="Rotation",
        items=[
            ("QUATERNION", "Quaternion", "Quaternion keys without sign flips (no gimbal lock)"),
            ("EULER", "Euler XYZ", "Euler angle keys, filtered so they never jump by 360°"),
        ],
        default="QUATERNION",
    )
    animated_focal: BoolProperty(
        name="Animated Focal Length",
        description="Key the focal length on every frame (zoom shots) instead of one steady focal length",
        default=False,
    )
    images: CollectionProperty(type=DA3_PG_image_item)
    folder: StringProperty(name="Folder", description="A folder of images", subtype="DIR_PATH")
    model: EnumProperty(name="Model", items=MODEL_ITEMS, default="DEFAULT")
    custom_model: StringProperty(
        name="Model Folder", description="Folder with config.json and model.safetensors", subtype="DIR_PATH"
    )
    process_res: IntProperty(
        name="Resolution",
        description="Processing size of the images in pixels (a multiple of 14; larger is slower and finer)",
        default=504,
        min=MIN_RES,
        max=MAX_RES,
        soft_max=1512,
        step=14,
        update=_snap,
    )
    process_res_method: EnumProperty(
        name="Resize",
        items=[(m, *RESIZE_LABELS[m]) for m in PROCESS_RES_METHODS],
        default="upper_bound_resize",
    )
    metric: BoolProperty(
        name="Metric Scale",
        description="Also run the metric model and scale the result to metres (downloads DA3 Metric Large)",
        default=False,
    )
    use_ray_pose: BoolProperty(
        name="Ray Pose",
        description="Cameras from the ray head: slower, more precise within a batch",
        default=False,
    )
    ref_view_strategy: EnumProperty(
        name="Reference View",
        items=[(s, *REF_VIEW_LABELS[s]) for s in REF_VIEW_STRATEGIES],
        default="saddle_balanced",
    )
    import_points: BoolProperty(name="Points", description="Import the point cloud", default=True)
    import_gaussians: BoolProperty(
        name="Gaussians",
        description="Predict 3D Gaussians and import them (models with the Gaussian head: Giant, Nested)",
        default=True,
    )
    import_mesh: BoolProperty(
        name="Mesh (fused)",
        description="Fuse the depth maps into one coloured triangle mesh in the engine and import it",
        default=False,
    )
    mesh_detail: bpy.props.FloatProperty(
        name="Detail",
        description="Finer or coarser fused mesh: 2 halves the automatic voxel size, 0.5 doubles it",
        default=1.0,
        min=MESH_DETAIL_RANGE[0],
        max=MESH_DETAIL_RANGE[1],
    )
    mesh_voxel_size: bpy.props.FloatProperty(
        name="Voxel Size",
        description="Edge of the fusion voxels in scene units (0: chosen from the scene and the detail)",
        default=0.0,
        min=0.0,
        precision=4,
        step=0.1,
    )
    mesh_max_faces: IntProperty(
        name="Max Faces",
        description="Simplify the fused mesh to at most this many triangles (0: keep them all)",
        default=0,
        min=0,
        soft_max=5_000_000,
    )
    import_view_meshes: BoolProperty(
        name="Per-view Meshes",
        description="One mesh per image from its depth map, textured with the image (images only: a tracked "
        "shot keeps no depth maps)",
        default=False,
    )
    view_mesh_step: IntProperty(
        name="Pixel Step",
        description="Per-view meshes use every n-th pixel (2 makes a quarter of the triangles)",
        default=1,
        min=1,
        soft_max=8,
    )
    import_cameras: BoolProperty(name="Cameras", description="Import one camera per image", default=True)
    camera_backgrounds: BoolProperty(
        name="Image Backgrounds", description="Show each image as its camera's background", default=True
    )
    set_render: BoolProperty(
        name="Set Render Camera",
        description="Make the reference camera the scene camera and set the render resolution to its image",
        default=True,
    )
    max_points: IntProperty(
        name="Max Points",
        description="Keep at most this many points (a random subset); the viewport stays fast",
        default=2_000_000,
        min=1000,
        soft_max=20_000_000,
    )
    dataset_tool: EnumProperty(
        name="Dataset For",
        description="The trainer the exported dataset is laid out for",
        items=DATASET_TOOL_ITEMS,
        default="3dgs",
    )
    dataset_folder: StringProperty(
        name="Dataset Folder",
        description="Folder the dataset is written into (new or empty; an earlier DA3 dataset there is replaced)",
        subtype="DIR_PATH",
        default="",
    )
    dataset_points: IntProperty(
        name="Seed Points",
        description="Seed points of the dataset (a random subset: 3DGS trainers choke on tens of millions)",
        default=DATASET_POINTS_DEFAULT,
        min=DATASET_POINTS_RANGE[0],
        max=DATASET_POINTS_RANGE[1],
    )
    conf_percentile: bpy.props.FloatProperty(
        name="Drop Least Confident",
        description="Leave out this percentage of the least confident pixels",
        default=40.0,
        min=0.0,
        max=99.0,
        subtype="PERCENTAGE",
    )


CLASSES = (DA3_PG_image_item, DA3_PG_scene_settings)


def settings(context: bpy.types.Context) -> DA3_PG_scene_settings:
    return getattr(context.scene, idnames.SCENE_ATTRIBUTE)


def settings_values(s: DA3_PG_scene_settings) -> dict:
    """The job settings as plain values (what ``session.jobspec.build_request`` takes)."""
    return {
        "input_mode": s.input_mode,
        "images": [bpy.path.abspath(item.path) for item in s.images],
        "folder": bpy.path.abspath(s.folder) if s.folder else "",
        "model": s.model,
        "custom_model": bpy.path.abspath(s.custom_model) if s.custom_model else "",
        "process_res": s.process_res,
        "process_res_method": s.process_res_method,
        "metric": s.metric,
        "gaussians": s.import_gaussians,
        "mesh": s.import_mesh,
        "mesh_detail": s.mesh_detail,
        "mesh_voxel_size": s.mesh_voxel_size,
        "mesh_max_faces": s.mesh_max_faces,
        "use_ray_pose": s.use_ray_pose,
        "ref_view_strategy": s.ref_view_strategy,
        "video_file": bpy.path.abspath(s.video_file) if s.video_file else "",
        "shot_range": None if s.shot_whole else (s.shot_frame_start, s.shot_frame_end),
        "shot_stride": s.shot_stride,
        "chunk_size": s.chunk_size,
        "chunk_overlap": s.chunk_overlap,
        "use_camera_track": s.use_camera_track,
    }


SHOT_MODES = ("CLIP", "STRIP", "VIDEO")


def is_shot(s: DA3_PG_scene_settings) -> bool:
    """The input is a video shot (one animated camera) rather than images."""
    return s.input_mode in SHOT_MODES


def import_values(s: DA3_PG_scene_settings) -> dict:
    """The import choices as keyword arguments of ``scene.importer.ImportOptions``."""
    return {
        "points": s.import_points,
        "gaussians": s.import_gaussians,
        "mesh": s.import_mesh,
        "view_meshes": s.import_view_meshes,
        "view_mesh_step": s.view_mesh_step,
        "cameras": s.import_cameras,
        "backgrounds": s.camera_backgrounds,
        "set_render": s.set_render,
        "max_points": s.max_points,
        "conf_percentile": s.conf_percentile,
        "camera_rotation": s.camera_rotation,
        "animated_focal": s.animated_focal,
    }


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    setattr(bpy.types.Scene, idnames.SCENE_ATTRIBUTE, PointerProperty(type=DA3_PG_scene_settings))


def unregister() -> None:
    delattr(bpy.types.Scene, idnames.SCENE_ATTRIBUTE)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
