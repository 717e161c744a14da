"""Where every panel of the extension lives: the "Reconstruct" tab of the 3D View sidebar."""

from .. import idnames

__all__ = ["Sidebar", "draw_modifier_inputs", "nodes_modifier", "property_column"]


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


def nodes_modifier(obj, name: str):
    """``obj``'s Geometry Nodes modifier ``name`` when it still has its node group, else None."""
    if obj is None or obj.type != "MESH":
        return None
    modifier = obj.modifiers.get(name)
    return modifier if modifier is not None and modifier.node_group is not None else None


def draw_modifier_inputs(layout, modifier, names: tuple[str, ...]) -> None:
    """The group inputs ``names`` of a Geometry Nodes modifier, as a property column."""
    from ..scene.compat import modifier_input_owner

    col = property_column(layout)
    for name in names:
        data, prop = modifier_input_owner(modifier, name)
        col.prop(data, prop, text=name)
