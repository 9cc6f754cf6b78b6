"""DF-MVR losses: plain term functions (`terms`) and their weighting in one place
(`total.multiview_losses`, `total.weighted_sum`)."""
from lib.losses.terms import (
    HEAVY_LANDMARKS,
    coefficient_loss,
    landmark3d_loss,
    landmark_loss,
    landmark_weights,
    lighting_loss,
    parsing_loss,
    photometric_loss,
    reflectance_loss,
)
from lib.losses.total import (
    TERM_WEIGHTS,
    LossResult,
    multiview_losses,
    weighted_sum,
)

__all__ = [
    "HEAVY_LANDMARKS",
    "LossResult",
    "TERM_WEIGHTS",
    "coefficient_loss",
    "landmark3d_loss",
    "landmark_loss",
    "landmark_weights",
    "lighting_loss",
    "multiview_losses",
    "parsing_loss",
    "photometric_loss",
    "reflectance_loss",
    "weighted_sum",
]
