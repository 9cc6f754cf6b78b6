"""The one definition of "the prediction": which mesh of a multi-view prediction is
evaluated and exported.

A multi-view prediction has one identity shared by the views and, per view, an
expression and a pose. The evaluated mesh is identity + the expression of ONE view,
in model space (mm; the NoW alignment removes pose and scale anyway):

- the front slot (FRONT_SLOT = 1 of the network's left, front, right slots) when the
  prediction has three views and the front one is present: the seed evaluates and
  exports exactly that mesh (`face_shape_ft`, seed test_pixel_face.py:30,39, built in
  lib/BFM/model_basis/BFM2009/face_generate.py:92-93);
- otherwise (fewer views, or the front slot missing) the present view seen most
  head-on, i.e. with the smallest |yaw| of its predicted rotation.

Training validation, test_pixel_face.py and test_sample.py (network, fitting and the
demo) all call `evaluated_view` / `evaluated_shape`.
"""
from __future__ import annotations

import torch

from lib.morphable import FaceCoefficients, MorphableModel

FRONT_SLOT = 1
"""Index of the front view among the network's three view slots (left, front, right)."""


def evaluated_view(rotation: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor:
    """Index [B] (long) of the evaluated view of each of B predictions.

    rotation [B, Vw, 3] Euler radians (x, y, z) per view; view_mask bool [B, Vw]
    (views that were given). See the module docstring for the rule."""
    present = view_mask.bool()
    yaw = rotation[..., 1].abs().masked_fill(~present, float("inf"))
    chosen = yaw.argmin(1)
    if rotation.shape[1] == 3:
        chosen = torch.where(present[:, FRONT_SLOT], torch.full_like(chosen, FRONT_SLOT), chosen)
    return chosen


def evaluated_shape(morphable: MorphableModel, coeffs: FaceCoefficients, view_mask: torch.Tensor) -> torch.Tensor:
    """The evaluated meshes [B, V, 3] mm (model space) of B multi-view predictions.

    coeffs: B*Vw rows, row b*Vw + v being view v of prediction b (the network's
    order); view_mask bool [B, Vw]."""
    b, views = view_mask.shape
    rows = torch.arange(b, device=view_mask.device) * views + evaluated_view(
        coeffs.rotation.reshape(b, views, 3), view_mask
    ).to(view_mask.device)
    rows = rows.to(coeffs.identity.device)
    return morphable.shape(coeffs.identity[rows], coeffs.expression[rows]).reshape(b, -1, 3)
