"""All pictures: per-view overlays of fits (input, render over input, landmarks), one
sheet per subject with shaded renders from novel angles, training grids (`grid`)
and preprocessing check pictures (`preprocess`, imported on its own: it needs cv2)."""
from lib.visualize.draw import draw_landmarks, label, overlay
from lib.visualize.figures import reconstruction_figure, stacked, subject_sheet, view_figure
from lib.visualize.shaded import shaded_render

__all__ = ["draw_landmarks", "label", "overlay", "reconstruction_figure", "shaded_render", "stacked", "subject_sheet", "view_figure"]
