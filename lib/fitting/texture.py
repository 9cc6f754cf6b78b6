"""Bake a UV texture for a fitted mesh from the photos it was fitted to.

Every texel covered by the UV layout is traced to its 3D point on the mesh (through
the UV triangle and its barycentrics), projected into each view, and coloured from the
views where that point is visible (depth test against the view's own render), faces
the camera, and lands on a photo pixel that shows the face: the mesh covers it in
that view's render and the caller's mask (face parsing: skin or a facial feature, so
no hair, hat or background) allows it, shrunk by a pixel so bilinear lookups never
reach outside. Views are blended by cos(angle between normal and view ray) ** power,
so the most frontal view dominates. Texels no view sees fade, over a soft seam, into
the fallback colour (the fitted albedo) scaled per channel to the baked skin's
colour, so what the photos did not see has the photographed person's tone. Texels
outside the UV charts copy their nearest chart texel, so mip-mapping and bilinear
lookups do not bleed black into seams.

The texture follows the OBJ convention of `lib.meshio`: row 0 is v = 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from lib.geometry import CAMERA_DISTANCE_MM, project
from lib.render import interpolate, rasterize

DEPTH_TOLERANCE_MM = 2.0
"""A texel counts as visible when it lies at most this far behind the view's nearest
surface: about a triangle's size on the built-in and BFM meshes, so the surface does
not shadow itself through rasterization round-off."""

SEAM_SIGMA = 1 / 128
"""Width (Gaussian sigma, as a fraction of the texture side) of the ramp by which
baked texels fade into the fallback at the edge of what the photos saw."""

FALLBACK_GAIN = (0.25, 4.0)
"""Range of the per-channel factor matching the fallback albedo to the photo's skin."""

FULL_WEIGHT = 0.25
"""Blending weight at which the photo fully replaces the fallback colour (cos^2 0.25:
seen within 60 degrees of head-on); lower weights blend towards the fallback so that
the edge of what the views saw does not show as a seam."""


@dataclass
class BakedTexture:
    """image uint8 [S, S, 3]; baked float [S, S] in [0, 1]: how much of each texel
    comes from the photos (0 = fallback only or outside the charts); covered bool
    [S, S]: texels inside the UV charts."""

    image: np.ndarray
    baked: np.ndarray
    covered: np.ndarray

    @property
    def baked_fraction(self) -> float:
        """Share of chart texels that hold photo colour (> 0.5 photo)."""
        return float((self.baked[self.covered] > 0.5).mean()) if self.covered.any() else 0.0


def uv_raster(uv_coords: torch.Tensor, uv_faces: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize the UV layout: face_index long [S, S] (-1 outside charts) and
    barycentrics [S, S, 3]. uv_coords [T, 2] in [0, 1] (v up), uv_faces [F, 3]."""
    uv = uv_coords.float()
    screen = torch.stack([uv[:, 0] * size, (1 - uv[:, 1]) * size, torch.ones_like(uv[:, 0])], -1)
    face_index, bary = rasterize(screen[None], uv_faces.long(), (size, size), cull_backfaces=False)
    return face_index[0], bary[0]


def bake_texture(
    images: torch.Tensor,
    vertices: torch.Tensor,
    normals: torch.Tensor,
    faces: torch.Tensor,
    uv_coords: torch.Tensor,
    uv_faces: torch.Tensor,
    fallback: torch.Tensor,
    size: int,
    min_cosine: float,
    cosine_power: float,
    bakeable: torch.Tensor | None = None,
) -> BakedTexture:
    """Blend the views into a [size, size] texture.

    images [Vw, H, W, 3] in [0, 1]; vertices [Vw, V, 3] camera-space mm and normals
    [Vw, V, 3] (unit) of the mesh as posed in each view; faces long [F, 3];
    uv_coords [T, 2], uv_faces [F, 3]; fallback [V, 3] colour in [0, 1] for what no
    view sees (the albedo); min_cosine: views seeing a texel more obliquely do not
    contribute; cosine_power: blending exponent; bakeable bool [Vw, H, W]: photo
    pixels that show the face (None: all).
    """
    with torch.no_grad():
        num_views, height, width = images.shape[:3]
        faces = faces.long()
        face_index, bary = uv_raster(uv_coords, uv_faces, size)
        covered = face_index >= 0
        fi, bc = face_index[None], bary[None]
        fill = interpolate(fallback.float()[None], faces, fi, bc)[0]  # [S, S, 3]
        total = torch.zeros(size, size)
        accum = torch.zeros(size, size, 3)
        for view in range(num_views):
            verts, norms = vertices[view : view + 1].float(), normals[view : view + 1].float()
            point = interpolate(verts, faces, fi, bc)  # [1, S, S, 3]
            normal = F.normalize(interpolate(norms, faces, fi, bc), dim=-1)
            ray = torch.tensor([0.0, 0.0, CAMERA_DISTANCE_MM]) - point
            cosine = (normal * F.normalize(ray, dim=-1)).sum(-1)[0]
            screen = project(point.reshape(1, -1, 3), (height, width)).reshape(size, size, 3)
            allowed = None if bakeable is None else bakeable[view]
            visible = covered & (cosine > min_cosine) & _visible(verts, faces, screen, (height, width), allowed)
            grid = torch.stack([screen[..., 0] / width * 2 - 1, screen[..., 1] / height * 2 - 1], -1)
            colour = F.grid_sample(
                images[view].permute(2, 0, 1)[None].float(), grid[None], mode="bilinear", align_corners=False
            )[0].permute(1, 2, 0)
            weight = torch.where(visible, cosine.clamp_min(0) ** cosine_power, torch.zeros(()))
            accum = accum + weight[..., None] * colour
            total = total + weight
        photo = accum / total.clamp_min(1e-8)[..., None]
        alpha = _soft_seam((total / FULL_WEIGHT).clamp(0, 1).numpy(), covered.numpy(), SEAM_SIGMA * size)
        alpha = torch.from_numpy(alpha)[..., None]
        fill = fill * _skin_gain(photo, fill, alpha[..., 0] > 0.5)
        texture = alpha * photo + (1 - alpha) * fill
        image = _dilate_charts(texture.clamp(0, 1).numpy(), covered.numpy())
    return BakedTexture(
        image=np.round(image * 255).astype(np.uint8),
        baked=(alpha[..., 0] * covered).numpy(),
        covered=covered.numpy(),
    )


def _visible(vertices: torch.Tensor, faces: torch.Tensor, screen: torch.Tensor, image_size: tuple[int, int],
             allowed: torch.Tensor | None) -> torch.Tensor:
    """bool [S, S]: texels (screen [S, S, 3] = u, v, depth) that land inside the photo
    on a pixel where the mesh (vertices [1, V, 3]) is the visible surface, are not
    hidden behind its nearest surface there, and (allowed bool [H, W]) show the face."""
    height, width = image_size
    view_screen = project(vertices, image_size)
    face_index, bary = rasterize(view_screen, faces, image_size, cull_backfaces=True)
    depth = interpolate(view_screen[..., 2:], faces, face_index, bary)[0, ..., 0]
    surface = face_index[0] >= 0
    if allowed is not None:
        surface = surface & allowed.bool()
    # Bilinear lookups read the 2x2 pixels around a point: keep a pixel's margin.
    surface = torch.from_numpy(ndimage.binary_erosion(surface.numpy(), iterations=1))
    depth = torch.where(face_index[0] >= 0, depth, torch.full_like(depth, float("inf")))
    col = screen[..., 0].floor().long()
    row = screen[..., 1].floor().long()
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    row, col = row.clamp(0, height - 1), col.clamp(0, width - 1)
    return inside & surface[row, col] & (screen[..., 2] <= depth[row, col] + DEPTH_TOLERANCE_MM)


def _soft_seam(alpha: np.ndarray, covered: np.ndarray, sigma: float) -> np.ndarray:
    """alpha [S, S] lowered to its Gaussian average over the chart texels (sigma
    texels), so the photo fades out towards the edge of what the views saw instead of
    stopping at a hard line; alpha is never raised (nothing unseen gets photo colour)."""
    if sigma < 0.5:
        return alpha * covered
    weight = ndimage.gaussian_filter(covered.astype(np.float64), sigma)
    blurred = ndimage.gaussian_filter(alpha * covered, sigma) / np.maximum(weight, 1e-8)
    return (np.minimum(alpha, blurred) * covered).astype(np.float32)


def _skin_gain(photo: torch.Tensor, fill: torch.Tensor, baked: torch.Tensor) -> torch.Tensor:
    """[3] per-channel factor taking the fallback colour (fill [S, S, 3]) to the photo's
    (photo [S, S, 3]) over the baked texels (bool [S, S]): the ratio of their medians,
    which the skin dominates (brows, eyes and lips are a minority of the texels).
    1 when nothing was baked."""
    if int(baked.sum()) == 0:
        return torch.ones(3)
    ratio = photo[baked].median(dim=0).values / fill[baked].median(dim=0).values.clamp_min(1e-3)
    return ratio.clamp(*FALLBACK_GAIN)


def _dilate_charts(texture: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Copy into every texel outside the charts the colour of its nearest chart texel."""
    if not covered.any() or covered.all():
        return texture
    _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return texture[rows, cols]
