"""How far the detected 68 landmarks are from the truth, as measured, to report next to
how well a fit agrees with them.

A fit's landmark error (fitted model points vs detected points) measures agreement
with the detector, not accuracy: a fit can agree perfectly with wrong points. This
module turns the detector's own error, measured by bench/landmarks.py on ICT-FaceKit
renders with known 300-W-style landmarks (doc/preprocess.md), into pixels for a given
view, so reports can show both.
"""
from __future__ import annotations

import numpy as np

MEASURED_YAW_DEG = (0.0, 15.0, 30.0, 45.0, 60.0)
MEASURED_NME = {
    # Default backend (mediapipe refined mesh, jaw on the outline): mean NME over all 68
    # points on 4 ICT subjects x 3 lights per |yaw| (bench/landmarks.py, table 1a).
    "mediapipe": (0.037, 0.042, 0.058, 0.109, 0.201),
}
"""Backend -> detector NME (mean point error / outer-eye-corner distance) at MEASURED_YAW_DEG."""


def detector_error_estimate(backend: str, landmarks: np.ndarray, yaw_rad: np.ndarray) -> list[float] | None:
    """Expected mean detector error in px per view, or None for a backend never measured.

    landmarks float [Vw, 68, 2] px (the detected points; their outer-eye-corner distance
    sets the scale); yaw_rad [Vw] the views' yaw (e.g. the fitted rotation's y angle).
    The NME is interpolated linearly in |yaw| and held beyond 60 degrees (an
    underestimate there).
    """
    if backend not in MEASURED_NME:
        return None
    points = np.asarray(landmarks, dtype=np.float64)
    eyes = np.linalg.norm(points[:, 36] - points[:, 45], axis=-1)
    nme = np.interp(np.degrees(np.abs(np.asarray(yaw_rad, dtype=np.float64))), MEASURED_YAW_DEG, MEASURED_NME[backend])
    return [float(v) for v in nme * eyes]
