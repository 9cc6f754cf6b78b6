"""The range of a face model's coefficients that its faces occupy.

Identity and albedo coefficients (and expression, unless the model bounds it) are
unit Gaussians: a face drawn from the model has K of them, so the norm of the vector,
its Mahalanobis distance from the mean face in standard deviations, follows a chi
distribution with K degrees of freedom (about sqrt(K)), and each coefficient a
standard normal. Fits beyond these limits are shapes the model never produces from
real scans. Bounded expressions (ICT's blendshape weights, FaceModel.exp_range)
are plausible inside their bounds.
"""
from __future__ import annotations

import math

from scipy.stats import chi2, norm


def gaussian_limits(k: int, quantile: float) -> tuple[float, float]:
    """(max_norm, max_abs) in standard deviations: the norm of k unit-Gaussian
    coefficients, and the |value| of one, that a fraction `quantile` of the model's
    faces stay under (e.g. k = 100, 0.999: 12.2 and 3.29)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    return math.sqrt(float(chi2.ppf(quantile, k))), float(norm.ppf(0.5 + quantile / 2))
