"""The splat material: each instanced splat shell shows its 3D Gaussian in Cycles and EEVEE.

The "DA3 Gaussians" node group (``splat_nodes``) puts a small ico-sphere shell on every splat, turned by
its rotation and scaled by its standard deviations, so the shell's own (object) space is the splat's
*whitened* space: the Gaussian there is exp(−½|x|²). For a ray hitting the front of the shell at ``p``
with direction ``d`` (both in that space, ``d`` from the Vector Transform of the view vector) the
Gaussian's peak along the ray is exp(−½ |p × d|² / |d|²) — the value 3DGS's projected 2D Gaussian takes
at that pixel (exactly, up to its local-affine projection). So:

* alpha = min(0.99, opacity · that peak), dropped below 1/255 (gsplat's rules); back faces are clear;
* colour = the SH series in the splat file's own frame, evaluated along the view direction turned back
  by the splat's axes (``splat_axis_*``: columns of R·S, so every transform of the object and the root
  is accounted for), + 0.5, clamped at 0, converted from sRGB (what 3DGS trains on) to linear, emitted;
* mixed with a Transparent BSDF by alpha: Cycles and EEVEE composite the shells front to back.

Emission sampling is off (a million emissive splats must not become a million lights).
"""

from __future__ import annotations

import bpy

from .compat import ensure_node_tree, set_material_blend
from .node_math import NodeMath

__all__ = ["ALPHA_ATTRIBUTE", "AXIS_ATTRIBUTES", "SH_TERMS", "sh_attribute", "splat_material"]

ALPHA_ATTRIBUTE = "splat_alpha"  # FLOAT per splat: sigmoid(opacity)
AXIS_ATTRIBUTES = ("splat_axis_x", "splat_axis_y", "splat_axis_z")  # columns of R·S (file frame)
_VERSION = 1
_ALPHA_MIN, _ALPHA_MAX = 1.0 / 255.0, 0.99

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


def splat_material(degree: int) -> bpy.types.Material:
    """The shared splat material for SH ``degree`` (0–3), built once per file (rebuilt when old)."""
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"SH degree must be 0-3, got {degree}")
    name = f"DA3 Splats (SH {degree})"
    mat = bpy.data.materials.get(name)
    if mat is not None and mat.get("da3_version") == _VERSION:
        return mat
    if mat is None:
        mat = bpy.data.materials.new(name)
    mat["da3_version"] = _VERSION
    tree = ensure_node_tree(mat)
    tree.nodes.clear()
    _build(tree, degree)
    set_material_blend(mat)
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    if hasattr(mat, "cycles") and hasattr(mat.cycles, "emission_sampling"):
        mat.cycles.emission_sampling = "NONE"
    return mat


def _instance_attribute(g: NodeMath, name: str, output: str):
    node = g.node("ShaderNodeAttribute", attribute_type="INSTANCER", attribute_name=name)
    return node.outputs[output]


def _build(tree: bpy.types.NodeTree, degree: int) -> None:
    g = NodeMath(tree, x=-2400.0)
    coords = g.node("ShaderNodeTexCoord").outputs["Object"]  # the shell's space = whitened splat space
    geometry = g.node("ShaderNodeNewGeometry")
    to_local = g.node(
        "ShaderNodeVectorTransform", vector_type="VECTOR", convert_from="WORLD", convert_to="OBJECT"
    )
    g.feed(to_local.inputs[0], geometry.outputs["Incoming"])
    view = to_local.outputs[0]  # towards the viewer, whitened

    # alpha: opacity · exp(−½ · squared distance of the ray from the centre), gsplat's cap and cut-off
    across = g.vmath("CROSS_PRODUCT", coords, view)
    distance2 = g.div(g.dot(across, across), g.math("MAXIMUM", g.dot(view, view), 1e-30))
    peak = g.exp(g.mul(distance2, -0.5))
    alpha = g.math("MINIMUM", g.mul(_instance_attribute(g, ALPHA_ATTRIBUTE, "Fac"), peak), _ALPHA_MAX)
    alpha = g.mul(alpha, g.math("GREATER_THAN", alpha, _ALPHA_MIN - 1e-7))
    alpha = g.mul(alpha, g.sub(1.0, geometry.outputs["Backfacing"]))

    # colour: the SH series along the viewing direction in the file's frame
    sh = [_instance_attribute(g, sh_attribute(k), "Vector") for k in range((degree + 1) ** 2)]
    if degree == 0:
        rgb = g.scale(sh[0], _C0)
    else:
        axes = [_instance_attribute(g, name, "Vector") for name in AXIS_ATTRIBUTES]
        vx, vy, vz = g.separate(view)
        toward = g.vtotal([g.scale(axes[0], vx), g.scale(axes[1], vy), g.scale(axes[2], vz)])
        direction = g.vmath("NORMALIZE", g.scale(toward, -1.0))  # from the viewer to the splat
        monomials = {(0, 0, 0): 1.0}
        x, y, z = g.separate(direction)
        rgb = g.vtotal([g.scale(sh[k], _basis(g, monomials, (x, y, z), k)) for k in range(len(sh))])
    rgb = g.vmath("MAXIMUM", g.vadd(rgb, (0.5, 0.5, 0.5)), (0.0, 0.0, 0.0))
    linear = g.combine(*(_srgb_to_linear(g, c) for c in g.separate(rgb)))

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
