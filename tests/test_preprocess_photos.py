"""Detection, landmarks and parsing on the real Pixel-Face sample photos
(../shared/assets/pixel_face_samples/, never copied into the repository)."""
from __future__ import annotations

import logging
import os
import types

import numpy as np
import pytest
from PIL import Image

from lib.config.schema import LossConfig, PreprocessConfig
from lib.errors import UserError
from lib.facemodel.builtin import build_builtin_face_model
from lib.facemodel.schema import PARSING_CLASSES
from lib.preprocess import Preprocessor, detect_face, detect_landmarks, estimate_alignment, read_image
from lib.visualize.preprocess import draw_overlay

SKIN = LossConfig().skin_weights  # loss.skin_weights, passed to the preprocessor

pytest.importorskip("mediapipe")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "..", "shared", "assets", "pixel_face_samples")
LABEL = {name: i for i, name in enumerate(PARSING_CLASSES)}

pytestmark = pytest.mark.skipif(not os.path.isdir(SAMPLES), reason=f"Pixel-Face samples not found at {SAMPLES}")

# Stand-in face model for alignment (five points, mm): tests must not depend on the
# built-in model's exact shape.
FIVE_3D = np.array([[-32.0, 35.0, 0.0], [32.0, 35.0, 0.0], [0.0, 0.0, 25.0], [-24.0, -30.0, 5.0], [24.0, -30.0, 5.0]])
FAKE_MODEL = types.SimpleNamespace(
    mean_shape=np.concatenate([FIVE_3D, np.zeros((1, 3))]),
    landmarks68=np.array([5] * 30 + [2] + [5] * 5 + [0, 5, 5, 0] + [5] * 2 + [1, 5, 5, 1] + [5] * 2 + [3] + [5] * 5 + [4] + [5] * 13),
)


def _files():
    return sorted(os.path.join(SAMPLES, view, name) for view in ("0", "1", "2") for name in os.listdir(os.path.join(SAMPLES, view)))


@pytest.fixture(scope="module")
def processed():
    pre = Preprocessor(PreprocessConfig(aligned=True), SKIN, None, crop_size=224)
    results = {}
    for path in _files():
        try:
            results[path] = pre(read_image(path), path)
        except UserError:
            results[path] = None
    return results


def test_landmarks_found_on_nearly_all_photos(processed):
    found = [path for path, result in processed.items() if result is not None]
    assert len(processed) == 18
    assert len(found) >= 17
    assert sum(os.sep + "0" + os.sep in p or os.sep + "2" + os.sep in p for p in found) >= 11  # side views


def test_structure_of_landmarks_and_parsing(processed, tmp_path):
    for path, result in processed.items():
        if result is None:
            continue
        lm, labels = result.landmarks, result.parsing
        assert lm.shape == (68, 2) and labels.shape == (224, 224) and result.skin_weight.shape == (224, 224)
        assert np.allclose(result.alignment.matrix, [[1, 0, 0], [0, 1, 0]])
        # Landmarks lie in the face box (extent of the non-background labels, +-4 px).
        ys, xs = np.nonzero(labels)
        box = np.array([xs.min() - 4, ys.min() - 4, xs.max() + 5, ys.max() + 5])
        assert (lm[:, 0] >= box[0]).all() and (lm[:, 0] <= box[2]).all(), path
        assert (lm[:, 1] >= box[1]).all() and (lm[:, 1] <= box[3]).all(), path
        # Vertical order: brows above eyes above nose tip above mouth above chin.
        assert lm[17:27, 1].mean() < lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1], path
        present = set(np.unique(labels).tolist())
        assert {LABEL["background"], LABEL["skin"], LABEL["nose"], LABEL["upper_lip"], LABEL["lower_lip"]} <= present, path
        assert LABEL["right_eye"] in present or LABEL["left_eye"] in present, path
        assert labels[int(lm[30, 1]), int(lm[30, 0])] == LABEL["nose"], path
    result = next(r for r in processed.values() if r is not None)
    Image.fromarray(draw_overlay(result.crop, result.landmarks, result.parsing)).save(tmp_path / "overlay.png")
    assert np.asarray(Image.open(tmp_path / "overlay.png")).shape == (448, 896, 3)


def test_frontal_views_left_right_convention(processed):
    for path, result in processed.items():
        if result is None or os.sep + "1" + os.sep not in path:
            continue
        lm, labels = result.landmarks, result.parsing
        # iBUG 36-41 (subject's right eye) lie image-left of 42-47 in a frontal photo.
        assert lm[36:42, 0].max() < lm[42:48, 0].min(), path
        assert lm[17:22, 0].max() < lm[22:27, 0].min() and lm[0, 0] < lm[8, 0] < lm[16, 0], path
        for name in PARSING_CLASSES:
            if name != "inner_mouth":  # closed mouths have none
                assert (labels == LABEL[name]).any(), (path, name)
        right, left = lm[36:42].mean(0), lm[42:48].mean(0)
        assert labels[int(right[1]), int(right[0])] == LABEL["right_eye"], path
        assert labels[int(left[1]), int(left[0])] == LABEL["left_eye"], path


def test_side_views_turn_opposite_ways(processed):
    """The nose tip's offset from the face's middle is larger in side views than in the
    frontal one, with opposite signs for views 0 and 2 of one subject."""

    def offset(result):
        lm = result.landmarks
        width = lm[16, 0] - lm[0, 0]
        return (lm[30, 0] - (lm[0, 0] + lm[16, 0]) / 2) / width

    subjects = {}
    for path, result in processed.items():
        if result is not None:
            view = os.path.basename(os.path.dirname(path))
            subjects.setdefault(os.path.basename(path)[:-5], {})[view] = offset(result)
    complete = [v for v in subjects.values() if len(v) == 3]
    assert len(complete) >= 5
    for views in complete:
        assert abs(views["0"]) > abs(views["1"]) and abs(views["2"]) > abs(views["1"])
        assert np.sign(views["0"]) != np.sign(views["2"])


def _frontal_photo():
    return read_image(os.path.join(SAMPLES, "1", sorted(os.listdir(os.path.join(SAMPLES, "1")))[0]))


def test_unaligned_photo_is_cropped_and_drawn_back():
    """A frontal crop enlarged 1.8x into a bigger canvas: alignment finds the face again
    and maps crop landmarks back onto the canvas."""
    crop = _frontal_photo()
    direct = detect_landmarks(crop, "mediapipe")
    scale, shift = 1.8, np.array([150.0, 60.0])
    big = np.asarray(Image.fromarray(crop).resize((403, 403), Image.BICUBIC))  # 224 * 1.8
    canvas = np.full((560, 700, 3), 90, np.uint8)
    canvas[60:463, 150:553] = big
    result = Preprocessor(PreprocessConfig(aligned=False), SKIN, FAKE_MODEL, crop_size=224)(canvas, "canvas")
    reference = estimate_alignment(direct, FIVE_3D, (224, 224), 224)
    assert result.alignment.scale == pytest.approx(reference.scale / scale, rel=0.03)
    np.testing.assert_allclose(result.landmarks, reference.to_crop(direct), atol=3.0)
    np.testing.assert_allclose(result.alignment.to_image(result.landmarks), direct * scale + shift, atol=4.0)
    assert result.crop.shape == (224, 224, 3) and result.parsing.shape == (224, 224)


def test_small_face_in_a_large_photo():
    """A face of ~1/60 of the frame (below the short-range detector's reach) is found
    through the full-range detector, with the same landmarks as in its own crop."""
    face = _frontal_photo()
    direct = detect_landmarks(face, "mediapipe")
    canvas = np.full((1500, 2000, 3), 100, np.uint8)
    canvas[700:924, 1300:1524] = face
    found = detect_landmarks(canvas, "mediapipe")
    assert found is not None
    np.testing.assert_allclose(found, direct + [1300, 700], atol=3.0)


def test_several_faces_take_the_largest(caplog):
    face = _frontal_photo()
    small = np.asarray(Image.fromarray(face).resize((150, 150), Image.BILINEAR))
    canvas = np.full((300, 560, 3), 128, np.uint8)
    canvas[38:262, 10:234] = face
    canvas[75:225, 360:510] = small
    with caplog.at_level(logging.WARNING):
        found = detect_face(canvas, "mediapipe", name="two.png")
    assert found is not None and found.points68[:, 0].max() < 260
    assert "two.png: 2 faces found" in caplog.text


def test_no_face_is_none_and_user_error():
    blank = np.full((240, 320, 3), 200, np.uint8)
    assert detect_landmarks(blank, "mediapipe") is None
    with pytest.raises(UserError, match="blank.png: no face found"):
        Preprocessor(PreprocessConfig(aligned=False), SKIN, FAKE_MODEL, crop_size=224)(blank, "blank.png")


def test_dlib_backend_agrees_with_mediapipe_on_frontal_views():
    """Two independent backends on the frontal photos: the 468->68 mapping lands on
    dlib's iBUG points (normalised by the outer-eye-corner distance), and the 68-point
    parser (no dense mesh) still yields the expected classes."""
    pytest.importorskip("dlib")
    pre = Preprocessor(PreprocessConfig(aligned=True, landmarks="dlib"), SKIN, None, crop_size=224)
    folder = os.path.join(SAMPLES, "1")
    errors = []
    for name in sorted(os.listdir(folder)):
        image = read_image(os.path.join(folder, name))
        ours, theirs = detect_landmarks(image, "mediapipe"), detect_landmarks(image, backend="dlib")
        assert ours is not None and theirs is not None, name
        errors.append(np.linalg.norm(ours - theirs, axis=1).mean() / np.linalg.norm(theirs[36] - theirs[45]))
        result = pre(image, name)
        assert result.dense is None
        present = set(np.unique(result.parsing).tolist())
        assert {LABEL[c] for c in ("skin", "left_eye", "right_eye", "left_brow", "right_brow", "nose", "upper_lip", "lower_lip")} <= present, name
        lm = result.landmarks
        assert result.parsing[int(lm[36:42, 1].mean()), int(lm[36:42, 0].mean())] == LABEL["right_eye"], name
    assert np.mean(errors) < 0.06 and max(errors) < 0.1


def test_realigning_aligned_samples_with_the_builtin_model_changes_little():
    """The samples were cropped by the seed (BFM template); our POS alignment against the
    built-in model's mean face must give nearly the same crop (same camera, face size)."""
    pre = Preprocessor(PreprocessConfig(aligned=False), SKIN, build_builtin_face_model(), crop_size=224)
    folder = os.path.join(SAMPLES, "1")
    for name in sorted(os.listdir(folder)):
        alignment = pre(read_image(os.path.join(folder, name)), name).alignment
        assert 0.85 < alignment.scale < 1.15, name
        centre = alignment.to_crop(np.array([[112.0, 112.0]]))[0]
        assert np.abs(centre - 112).max() < 25, name


def test_loss_skin_weights_reach_photo_preprocessing():
    """loss.skin_weights is honoured for photo datasets (it was ignored: the
    preprocessor always used the schema default)."""
    path = _files()[0]
    image = read_image(path)
    custom = (0.1, 0.2, 0.3)
    face = Preprocessor(PreprocessConfig(aligned=True), custom, None, crop_size=224)(image, path)
    assert np.isclose(face.skin_weight[..., None], custom).any(-1).all()
    assert np.isclose(face.skin_weight, 0.2).any() and np.isclose(face.skin_weight, 0.3).any()
    default = Preprocessor(PreprocessConfig(aligned=True), SKIN, None, crop_size=224)(image, path)
    assert not np.isclose(default.skin_weight, 0.2).any()


def test_skin_weights_key_the_preprocessing_cache(tmp_path):
    from data.cache import PreprocessCache

    a = PreprocessCache(str(tmp_path), Preprocessor(PreprocessConfig(aligned=True), SKIN, None, crop_size=224))
    b = PreprocessCache(str(tmp_path), Preprocessor(PreprocessConfig(aligned=True), (0.1, 0.2, 0.3), None, crop_size=224))
    assert a.key != b.key
