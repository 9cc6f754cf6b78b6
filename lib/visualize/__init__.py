"""Pictures of fits: per-view overlays (input, render over input, landmarks) and one
sheet per subject with every view and shaded renders from novel angles."""
from lib.visualize.draw import draw_landmarks, label, overlay
from lib.visualize.figures import subject_sheet, view_figure
from lib.visualize.shaded import shaded_render

__all__ = ["draw_landmarks", "label", "overlay", "shaded_render", "subject_sheet", "view_figure"]
