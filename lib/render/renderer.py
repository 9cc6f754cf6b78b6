"""Rendering camera-space meshes: project (DESIGN.md camera), rasterize, interpolate."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lib.geometry import project
from lib.render.interpolate import interpolate
from lib.render.rasterize import rasterize


@dataclass
class RenderResult:
    """What `render_mesh` returns for B meshes at (H, W) pixels.

    images: name -> [B, H, W, C] interpolated attribute (0 on background);
    mask [B, H, W, 1] float coverage (1 covered, 0 background); screen [B, V, 3]
    projected vertices (u px, v px, depth mm), e.g. for landmarks; face_index long
    [B, H, W] (-1 background); barycentrics [B, H, W, 3] perspective-correct.
    """

    images: dict[str, torch.Tensor]
    mask: torch.Tensor
    screen: torch.Tensor
    face_index: torch.Tensor
    barycentrics: torch.Tensor


def render_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    attributes: dict[str, torch.Tensor],
    image_size: tuple[int, int],
    *,
    cull_backfaces: bool,
    backend: str,
) -> RenderResult:
    """Render B meshes sharing one topology.

    vertices [B, V, 3] camera-space mm; faces long [F, 3] counter-clockwise seen from
    outside; attributes: name -> [B, V, C] per-vertex values (linear RGB colours,
    albedo, normals, one-hot parsing labels, depth...); image_size (H, W);
    cull_backfaces drops triangles facing away from the camera; backend as in
    `rasterize` (callers pass `render.*`: no defaults here). Differentiable w.r.t. vertices (through the barycentrics) and the
    attributes; see doc/renderer.md for what gets no gradient.
    """
    screen = project(vertices, image_size)
    face_index, barycentrics = rasterize(screen, faces, image_size, cull_backfaces=cull_backfaces, backend=backend)
    images = interpolate_all(attributes, faces, face_index, barycentrics, backend)
    mask = (face_index >= 0).to(vertices.dtype)[..., None]
    return RenderResult(images=images, mask=mask, screen=screen, face_index=face_index, barycentrics=barycentrics)


def interpolate_all(
    attributes: dict[str, torch.Tensor],
    faces: torch.Tensor,
    face_index: torch.Tensor,
    barycentrics: torch.Tensor,
    backend: str,
) -> dict[str, torch.Tensor]:
    """`interpolate` for several attributes: those of one dtype are stacked along C and
    interpolated in one pass (one gather per pixel instead of one per attribute).
    Attributes that need a gradient are stacked apart from those that do not (such
    as one-hot parsing labels), so the backward pass never computes gradients for
    the constant ones."""
    groups: dict[tuple, list[str]] = {}
    for name, value in attributes.items():
        groups.setdefault((value.dtype, value.requires_grad), []).append(name)
    images = {}
    for names in groups.values():
        stacked = torch.cat([attributes[name] for name in names], -1) if len(names) > 1 else attributes[names[0]]
        image = interpolate(stacked, faces, face_index, barycentrics, backend)
        widths = [attributes[name].shape[-1] for name in names]
        images.update(zip(names, image.split(widths, dim=-1)))
    return {name: images[name] for name in attributes}
