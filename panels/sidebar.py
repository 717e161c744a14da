"""Where every panel of the extension lives: the "Reconstruct" tab of the 3D View sidebar."""

from .. import idnames

__all__ = ["Sidebar", "property_column"]


class Sidebar:
    """Mix-in for the sidebar panels (``class VIEW3D_PT_x(Sidebar, bpy.types.Panel)``)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = idnames.PANEL_CATEGORY


def property_column(layout):
    """A column of properties laid out as label | value, without keyframe decorators."""
    col = layout.column()
    col.use_property_split = True
    col.use_property_decorate = False
    return col
