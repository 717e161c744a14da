"""The splat material: the triangles of the "DA3 Gaussians" group show 3D Gaussians in Cycles and EEVEE.

Each splat's triangle (``splat_nodes``) lies in the image-parallel plane through its centre and carries,
per corner, the whitened 2D coordinates of the splat's footprint and its opacity (``splat_uv``), so:

* alpha = min(0.999, opacity · exp(−½ (u² + v²))), dropped below 1/255 (gsplat's rules);
* colour = the SH series (``sh_k``) evaluated along the viewing direction brought into the object's own
  frame (the file's frame, whatever the object's and its parents' transforms: Vector Transform of the
  view vector), + 0.5, clamped at 0, emitted;
* mixed with a Transparent BSDF by alpha: the renderer composites the triangles front to back.

3DGS trains its colours as display (sRGB) values and blends them as they are. Two colour modes:

* ``SCENE`` (default): the colour is converted from sRGB to linear light, so with the *Standard* view
  transform an opaque splat shows exactly its colour and splats mix with lit objects like any emitter;
  soft edges and overlaps blend in linear light, so they come out lighter than in a splat viewer.
* ``VIEWER``: the colour is emitted as stored, for the *Raw* view transform: the pixels are the very
  sums a splat viewer (3DGS, gsplat) composites — the mode for splat-only renders that must match.

Emission sampling is off (a million emissive splats must not become a million lights).
"""

from __future__ import annotations

import bpy

from .compat import set_material_blend
from .materials import material_to_build
from .node_math import NodeMath

__all__ = [
    "COLOUR_MODES",
    "SH_TERMS",
    "UV_ATTRIBUTE",
    "pack_attribute",
    "pack_count",
    "sh_attribute",
    "splat_material",
]

UV_ATTRIBUTE = "splat_uv"  # FLOAT_VECTOR per corner: whitened (u, v) and the opacity
_VERSION = 4
COLOUR_MODES = ("SCENE", "VIEWER")
_ALPHA_MIN, _ALPHA_MAX = 1.0 / 255.0, 0.999  # gsplat 1.5's cut-off and cap

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658)
_C3 += (1.445305721320277, -0.5900435899266435)

# The 3DGS real SH basis (engine.geometry.spherical_harmonics.sh_basis) as sums of c·xᵃ yᵇ zᶜ, one list
# of (c, (a, b, c)) per coefficient, in the files' order.
SH_TERMS: tuple[tuple[tuple[float, tuple[int, int, int]], ...], ...] = (
    ((_C0, (0, 0, 0)),),
    ((-_C1, (0, 1, 0)),),
    ((_C1, (0, 0, 1)),),
    ((-_C1, (1, 0, 0)),),
    ((_C2[0], (1, 1, 0)),),
    ((_C2[1], (0, 1, 1)),),
    ((2 * _C2[2], (0, 0, 2)), (-_C2[2], (2, 0, 0)), (-_C2[2], (0, 2, 0))),
    ((_C2[3], (1, 0, 1)),),
    ((_C2[4], (2, 0, 0)), (-_C2[4], (0, 2, 0))),
    ((3 * _C3[0], (2, 1, 0)), (-_C3[0], (0, 3, 0))),
    ((_C3[1], (1, 1, 1)),),
    ((4 * _C3[2], (0, 1, 2)), (-_C3[2], (2, 1, 0)), (-_C3[2], (0, 3, 0))),
    ((2 * _C3[3], (0, 0, 3)), (-3 * _C3[3], (2, 0, 1)), (-3 * _C3[3], (0, 2, 1))),
    ((4 * _C3[4], (1, 0, 2)), (-_C3[4], (3, 0, 0)), (-_C3[4], (1, 2, 0))),
    ((_C3[5], (2, 0, 1)), (-_C3[5], (0, 2, 1))),
    ((_C3[6], (3, 0, 0)), (-3 * _C3[6], (1, 2, 0))),
)


def sh_attribute(k: int) -> str:
    """The name of the FLOAT_VECTOR attribute holding SH coefficient ``k`` (r, g, b) of every splat."""
    return f"sh_{k}"


def pack_attribute(j: int) -> str:
    """The FLOAT_COLOR attribute ``j`` the node group packs the SH into for the material: floats
    4j … 4j+3 of (sh_0.r, sh_0.g, sh_0.b, sh_1.r, …). Four floats per attribute keep degree 3 (48 floats)
    within EEVEE's limit on the attributes one material reads."""
    return f"sh_pack_{j}"


def pack_count(degree: int) -> int:
    """How many packed attributes hold the SH of ``degree``."""
    return -(-3 * (degree + 1) ** 2 // 4)


def splat_material(degree: int, colours: str = "SCENE") -> bpy.types.Material:
    """The shared splat material for SH ``degree`` (0–3) and a colour mode (``COLOUR_MODES``), built once
    per file (rebuilt when old)."""
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"SH degree must be 0-3, got {degree}")
    if colours not in COLOUR_MODES:
        raise ValueError(f"colour mode must be one of {COLOUR_MODES}, got {colours!r}")
    name = f"DA3 Splats (SH {degree})" + (", viewer colours" if colours == "VIEWER" else "")
    mat, tree = material_to_build(name, _VERSION)
    if tree is None:
        return mat
    _build(tree, degree, colours == "VIEWER")
    set_material_blend(mat)
    if hasattr(mat, "cycles") and hasattr(mat.cycles, "emission_sampling"):
        mat.cycles.emission_sampling = "NONE"
    return mat


def splat_point_material() -> bpy.types.Material:
    """The viewport points' material: each splat's head-on colour (0.5 + C0·f_dc, as sRGB) emitted, read
    straight from ``sh_0`` (no extra colour attribute to write on import)."""
    mat, tree = material_to_build("DA3 Splat Points", _VERSION)
    if tree is None:
        return mat
    g = NodeMath(tree, x=-800.0)
    rgb = g.vadd(g.scale(_attribute(g, sh_attribute(0)), _C0), (0.5, 0.5, 0.5))
    rgb = g.vmath("MINIMUM", g.vmath("MAXIMUM", rgb, (0.0, 0.0, 0.0)), (1.0, 1.0, 1.0))
    emission = g.node("ShaderNodeEmission")
    g.feed(emission.inputs["Color"], g.combine(*(_srgb_to_linear(g, c) for c in g.separate(rgb))))
    out = g.node("ShaderNodeOutputMaterial")
    g.feed(out.inputs["Surface"], emission.outputs[0])
    return mat


def _attribute(g: NodeMath, name: str, output: str = "Vector"):
    node = g.node("ShaderNodeAttribute", attribute_type="GEOMETRY", attribute_name=name)
    return node.outputs[output]


def _build(tree: bpy.types.NodeTree, degree: int, as_stored: bool) -> None:
    g = NodeMath(tree, x=-2400.0)
    u, v, opacity = g.separate(_attribute(g, UV_ATTRIBUTE))
    peak = g.exp(g.mul(g.add(g.mul(u, u), g.mul(v, v)), -0.5))
    alpha = g.math("MINIMUM", g.mul(opacity, peak), _ALPHA_MAX)
    alpha = g.mul(alpha, g.math("GREATER_THAN", alpha, _ALPHA_MIN - 1e-7))

    floats = []
    for j in range(pack_count(degree)):
        node = g.node("ShaderNodeAttribute", attribute_type="GEOMETRY", attribute_name=pack_attribute(j))
        parts = g.node("ShaderNodeSeparateColor")
        g.feed(parts.inputs["Color"], node.outputs["Color"])
        floats += [parts.outputs[0], parts.outputs[1], parts.outputs[2], node.outputs["Alpha"]]
    sh = [g.combine(*floats[3 * k : 3 * k + 3]) for k in range((degree + 1) ** 2)]
    if degree == 0:
        rgb = g.scale(sh[0], _C0)
    else:
        geometry = g.node("ShaderNodeNewGeometry")
        to_object = g.node(
            "ShaderNodeVectorTransform", vector_type="VECTOR", convert_from="WORLD", convert_to="OBJECT"
        )
        g.feed(
            to_object.inputs["Vector"], geometry.outputs["Incoming"]
        )  # by name: 5.x puts a hidden input first
        direction = g.vmath("NORMALIZE", g.scale(to_object.outputs[0], -1.0))  # viewer → splat, file frame
        monomials = {(0, 0, 0): 1.0}
        x, y, z = g.separate(direction)
        rgb = g.vtotal([g.scale(sh[k], _basis(g, monomials, (x, y, z), k)) for k in range(len(sh))])
    rgb = g.vmath("MAXIMUM", g.vadd(rgb, (0.5, 0.5, 0.5)), (0.0, 0.0, 0.0))
    linear = rgb if as_stored else g.combine(*(_srgb_to_linear(g, c) for c in g.separate(rgb)))

    emission = g.node("ShaderNodeEmission")
    g.feed(emission.inputs["Color"], linear)
    emission.inputs["Strength"].default_value = 1.0
    clear = g.node("ShaderNodeBsdfTransparent")
    mix = g.node("ShaderNodeMixShader")
    g.feed(mix.inputs["Fac"], alpha)
    g.feed(mix.inputs[1], clear.outputs[0])
    g.feed(mix.inputs[2], emission.outputs[0])
    out = g.node("ShaderNodeOutputMaterial")
    g.feed(out.inputs["Surface"], mix.outputs[0])
    out.location = (g._x + 400.0, 0.0)


def _basis(g: NodeMath, monomials: dict, xyz: tuple, k: int):
    """Basis function ``k`` at the direction ``xyz`` (sockets) from ``SH_TERMS``; ``monomials`` caches
    the products already built, so each xᵃ yᵇ zᶜ is made once per material."""

    def monomial(powers: tuple[int, int, int]):
        if powers not in monomials:
            axis = next(i for i in range(3) if powers[i])
            lower = tuple(p - (i == axis) for i, p in enumerate(powers))
            monomials[powers] = xyz[axis] if sum(lower) == 0 else g.mul(monomial(lower), xyz[axis])
        return monomials[powers]

    return g.total([g.mul(monomial(powers), c) if powers != (0, 0, 0) else c for c, powers in SH_TERMS[k]])


def _srgb_to_linear(g: NodeMath, c):
    low = g.div(c, 12.92)
    high = g.math("POWER", g.div(g.add(c, 0.055), 1.055), 2.4)
    is_low = g.math("LESS_THAN", c, 0.04045)
    return g.add(g.mul(is_low, low), g.mul(g.sub(1.0, is_low), high))
