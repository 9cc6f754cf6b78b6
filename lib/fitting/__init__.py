"""Multi-view fitting (analysis-by-synthesis), texture baking, input discovery and the
per-subject pipeline of test_sample.py (doc/fitting.md)."""
from lib.fitting.fit import FitResult, FitTarget, fit_views
from lib.fitting.inputs import Subject, discover_subjects
from lib.fitting.texture import BakedTexture, bake_texture

__all__ = ["BakedTexture", "FitResult", "FitTarget", "Subject", "bake_texture", "discover_subjects", "fit_views"]
