"""Results back in the original photo's pixels (lib/fitting/photo_space.py): the
crop -> photo resampling by hand, and a face pasted into a larger canvas end to end."""
import json

import numpy as np
import pytest
from PIL import Image

import test_sample
from lib.fitting.photo_space import crop_to_photo
from lib.preprocess.align import Alignment
from lib.preprocess.landmarks import detect_face
from tests.test_sample_cli import FAST, SIZE, rendered_views  # noqa: F401 (fixture)


def test_crop_to_photo_follows_the_alignment():
    # crop = 2 * photo + (-10, -4): photo pixel centre (x + 0.5, y + 0.5) lands on crop
    # (2x - 9, 2y - 3); a crop array holding its own x coordinate (at pixel centres)
    # must read back 2x - 9 + ... sampled bilinearly at that crop point.
    alignment = Alignment(np.array([[2.0, 0.0, -10.0], [0.0, 2.0, -4.0]]), 32, (20, 24))
    cols = np.arange(32, dtype=np.float32) + 0.5
    crop_x = np.tile(cols, (32, 1))
    photo = crop_to_photo(crop_x, alignment)
    assert photo.shape == (20, 24)
    for y, x in [(5, 7), (10, 12), (3, 18)]:
        assert photo[y, x] == pytest.approx(2 * (x + 0.5) - 10, abs=1e-4)
    assert np.isnan(photo[0, 0])  # photo (0.5, 0.5) -> crop (-9, -3): outside the crop


def test_pasted_canvas_outputs_come_back_in_photo_pixels(tmp_path, rendered_views):  # noqa: F811
    canvas = np.full((300, 260, 3), 90, np.uint8)
    top, left = 60, 80
    canvas[top:top + SIZE, left:left + SIZE] = rendered_views[0][1]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    Image.fromarray(canvas).save(inputs / "pasted.png")
    argv = ["--fit", "--input", str(inputs), "--out", str(out), *[a for a in FAST if not a.startswith("preprocess.aligned")]]
    assert test_sample.main(argv) == 0
    folder = out / "pasted"
    doc = json.loads((folder / "view0_photo.json").read_text())
    assert doc["photo_size_hw"] == [300, 260]

    detector = detect_face(canvas, "mediapipe").points68
    detected = np.asarray(doc["landmarks_detected_photo"])
    assert np.abs(detected - detector).max() < 0.5
    # The model's landmarks land on the face in the photo, near the detector's.
    model = np.asarray(doc["landmarks_model_photo"])
    assert np.median(np.linalg.norm(model - detector, axis=-1)) < 6.0
    # The transforms are each other's inverse and map the saved crop landmarks.
    forward = np.vstack([np.asarray(doc["crop_from_photo"]), [0, 0, 1]])
    backward = np.vstack([np.asarray(doc["photo_from_crop"]), [0, 0, 1]])
    assert np.allclose(forward @ backward, np.eye(3), atol=1e-9)
    crop = np.asarray(doc["landmarks_detected_crop"])
    assert np.allclose(detected @ forward[:2, :2].T + forward[:2, 2], crop, atol=1e-3)

    overlay = np.asarray(Image.open(folder / "view0_photo_overlay.png"))
    assert overlay.shape == canvas.shape
    assert np.array_equal(overlay[:20, :20], canvas[:20, :20])  # far from the face: the photo untouched
    for kind, channels in (("depth", ()), ("normal", (3,))):
        photo_map = np.load(folder / f"view0_{kind}_photo.npy")
        crop_map = np.load(folder / f"view0_{kind}_crop.npy")
        assert photo_map.shape == (300, 260, *channels) and crop_map.shape == (SIZE, SIZE, *channels)
        assert np.isnan(photo_map[:20, :20]).all()
        # Depth / normals are defined where the face is in the photo, not elsewhere.
        x, y = np.round(detector[30]).astype(int)  # nose tip
        assert np.isfinite(photo_map[y, x]).all()
        assert Image.open(folder / f"view0_{kind}_photo.png").size == (260, 300)
    depth = np.load(folder / "view0_depth_photo.npy")
    assert 900 < np.nanmin(depth) < np.nanmax(depth) < 1100  # mm from the camera (D = 1000)
