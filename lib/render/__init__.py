"""Differentiable mesh renderer: deferred rasterization + attribute interpolation.

See doc/renderer.md for conventions (pixel centres, top-left rule, perspective-correct
barycentrics, back-face culling), backends and limits.
"""
from lib.render.interpolate import interpolate
from lib.render.constants import BACKENDS
from lib.render.rasterize import rasterize
from lib.render.renderer import RenderResult, render_mesh

__all__ = ["BACKENDS", "RenderResult", "interpolate", "rasterize", "render_mesh"]
