"""Arithmetic in node trees written as Python calls: ``g.mul(a, g.add(b, 1.0))`` adds the Math nodes.

Shader and Geometry Nodes share the ``ShaderNodeMath`` / ``ShaderNodeVectorMath`` nodes, so one small
builder writes the formulas of both the splat material and the splat node group. An argument is a
socket or a number (a number becomes the input's default value). Nodes are laid out in columns as they
are made, so the generated trees stay readable in the editor.
"""

from __future__ import annotations

import bpy

__all__ = ["NodeMath"]


class NodeMath:
    """Adds math nodes to ``tree`` and links them; every method returns the result socket."""

    def __init__(self, tree: bpy.types.NodeTree, x: float = 0.0) -> None:
        self.tree = tree
        self._x, self._y = x, 0.0

    def node(self, kind: str, **settings) -> bpy.types.Node:
        node = self.tree.nodes.new(kind)
        for key, value in settings.items():
            setattr(node, key, value)
        node.location = (self._x, self._y)
        self._y -= 160.0
        if self._y < -4000.0:
            self._x, self._y = self._x + 200.0, 0.0
        return node

    def feed(self, socket_in, value) -> None:
        if isinstance(value, bpy.types.NodeSocket):
            self.tree.links.new(value, socket_in)
        else:
            socket_in.default_value = value

    def math(self, operation: str, *args):
        node = self.node("ShaderNodeMath", operation=operation)
        for i, value in enumerate(args):
            self.feed(node.inputs[i], value)
        return node.outputs[0]

    def vmath(self, operation: str, *args, output: int = 0):
        node = self.node("ShaderNodeVectorMath", operation=operation)
        for i, value in enumerate(args):
            if operation == "SCALE" and i == 1:
                self.feed(node.inputs["Scale"], value)
            else:
                self.feed(node.inputs[i], value)
        return node.outputs[output]

    # scalar shorthands
    def add(self, a, b):
        return self.math("ADD", a, b)

    def mul(self, a, b):
        return self.math("MULTIPLY", a, b)

    def sub(self, a, b):
        return self.math("SUBTRACT", a, b)

    def div(self, a, b):
        return self.math("DIVIDE", a, b)

    def exp(self, a):
        return self.math("EXPONENT", a)

    def total(self, terms: list):
        """The sum of ``terms`` (sockets or numbers) as a balanced tree of Add nodes."""
        return _balanced_sum(terms, self.add)

    # vector shorthands
    def vadd(self, a, b):
        return self.vmath("ADD", a, b)

    def scale(self, v, s):
        return self.vmath("SCALE", v, s)

    def dot(self, a, b):
        return self.vmath("DOT_PRODUCT", a, b, output=1)

    def vtotal(self, terms: list):
        """The sum of vector ``terms`` as a balanced tree of Vector Math Add nodes."""
        return _balanced_sum(terms, self.vadd)

    def separate(self, vector):
        node = self.node("ShaderNodeSeparateXYZ")
        self.feed(node.inputs[0], vector)
        return node.outputs[0], node.outputs[1], node.outputs[2]

    def combine(self, x, y, z):
        node = self.node("ShaderNodeCombineXYZ")
        for i, value in enumerate((x, y, z)):
            self.feed(node.inputs[i], value)
        return node.outputs[0]


def _balanced_sum(terms: list, add):
    """Pairwise sums until one is left: a tree of depth log₂(n), not a chain of n nodes."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [
            add(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)
        ]
    return terms[0]
