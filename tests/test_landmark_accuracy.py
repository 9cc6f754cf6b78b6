"""The detector-accuracy estimate reported beside a fit's agreement with the detector."""
from __future__ import annotations

import math

import numpy as np

from lib.preprocess.landmark_accuracy import MEASURED_NME, detector_error_estimate


def test_estimate_scales_with_eye_distance_and_interpolates_yaw():
    points = np.zeros((3, 68, 2))
    points[:, 45, 0] = [100.0, 50.0, 100.0]  # outer eye corners 100, 50, 100 px apart
    yaw = np.radians([0.0, -15.0, 22.5])
    nme = MEASURED_NME["mediapipe"]
    expected = [nme[0] * 100, nme[1] * 50, (nme[1] + nme[2]) / 2 * 100]
    np.testing.assert_allclose(detector_error_estimate("mediapipe", points, yaw), expected, rtol=1e-9)
    # Beyond the last measured yaw the last value is held.
    assert detector_error_estimate("mediapipe", points[:1], np.array([math.radians(80)]))[0] == nme[-1] * 100


def test_unmeasured_backend_gives_none():
    assert detector_error_estimate("dlib", np.zeros((1, 68, 2)), np.zeros(1)) is None
