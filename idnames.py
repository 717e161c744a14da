"""Every bl_idname of the extension in one place (operators, panels, menus, property groups)."""

# operators
RECONSTRUCT = "da3.reconstruct"
CANCEL = "da3.cancel"
UNLOAD_MODEL = "da3.unload_model"
CHOOSE_IMAGES = "da3.choose_images"
CLEAR_IMAGES = "da3.clear_images"
SETUP_ENGINE = "da3.setup_engine"
CANCEL_SETUP = "da3.cancel_setup"
OPEN_PREFERENCES = "da3.open_preferences"
IMPORT_BUNDLE = "import_scene.da3_reconstruction"
IMPORT_GAUSSIANS = "import_scene.da3_gaussians"
IMPORT_MESH = "import_scene.da3_mesh"
EXPORT_GAUSSIANS = "export_scene.da3_gaussians"
CROP_GAUSSIANS = "da3.crop_gaussians"
SPLAT_COLOURS = "da3.splat_colours"
SET_FLOOR = "da3.set_floor"
SET_ORIGIN = "da3.set_origin"
SET_SCALE = "da3.set_scale"
RESET_ALIGNMENT = "da3.reset_alignment"
JUMP_TO_FRAME = "da3.jump_to_frame"

# panels (3D View sidebar, tab "Reconstruct")
PANEL_CATEGORY = "Reconstruct"
PANEL_MAIN = "VIEW3D_PT_da3_reconstruct"
PANEL_INPUTS = "VIEW3D_PT_da3_inputs"
PANEL_MODEL = "VIEW3D_PT_da3_model"
PANEL_IMPORT = "VIEW3D_PT_da3_import"
PANEL_ENGINE = "VIEW3D_PT_da3_engine"
PANEL_DISPLAY = "VIEW3D_PT_da3_display"
PANEL_GAUSSIANS = "VIEW3D_PT_da3_gaussians"
PANEL_SHOT = "VIEW3D_PT_da3_shot"
PANEL_SOLVE = "VIEW3D_PT_da3_solve"

# property groups
SCENE_SETTINGS = "DA3_PG_scene_settings"
IMAGE_ITEM = "DA3_PG_image_item"
SCENE_ATTRIBUTE = "da3"  # bpy.types.Scene.da3
