"""Rendering 3D Gaussians: gsplat's projection with a compositor that follows its CUDA rasterizer
(``composite``), and the whole render from a splat file and cameras (``splats``)."""
