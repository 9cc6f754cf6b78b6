"""Preprocessing steps on synthetic inputs: image reading, alignment, parsing, weights."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from lib.errors import UserError
from lib.facemodel.schema import PARSING_CLASSES
from lib.geometry.camera import project
from lib.preprocess import (
    Alignment,
    align_face,
    estimate_alignment,
    five_points,
    identity_alignment,
    model_five_points,
    parse_landmarks,
    read_image,
    skin_attention_weights,
    warp_to_crop,
)
from lib.preprocess.align import pos
from lib.preprocess.mediapipe_68 import MESH_TO_68

LABEL = {name: i for i, name in enumerate(PARSING_CLASSES)}

# Five 3D points (mm) of an average face around the model origin: right eye, left eye,
# nose tip, right and left mouth corners (+x = subject's left, +y up, +z to camera).
FIVE_3D = np.array([[-32.0, 35.0, 0.0], [32.0, 35.0, 0.0], [0.0, 0.0, 25.0], [-24.0, -30.0, 5.0], [24.0, -30.0, 5.0]])


def _landmarks_with_five(points5: np.ndarray) -> np.ndarray:
    """A [68, 2] array whose five alignment points equal `points5` [5, 2]."""
    lm = np.zeros((68, 2))
    lm[36] = lm[39] = points5[0]
    lm[42] = lm[45] = points5[1]
    lm[30], lm[48], lm[54] = points5[2], points5[3], points5[4]
    return lm


def _canonical_five_2d(size: int = 224) -> np.ndarray:
    """FIVE_3D at the canonical placement, projected with DESIGN.md's camera."""
    return project(torch.tensor(FIVE_3D[None], dtype=torch.float64), (size, size))[0, :, :2].numpy()


def _face_image(size: int = 224) -> np.ndarray:
    """A smooth, textured, asymmetric test picture uint8 [size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([128 + 100 * np.sin(7 * xx + 3 * yy), 128 + 100 * np.cos(5 * yy - 2 * xx * xx), 255 * xx * yy], axis=2)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_model_five_points_uses_mean_shape_landmarks():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(100, 3))
    idx = rng.permutation(100)[:68]
    model = types.SimpleNamespace(mean_shape=mean, landmarks68=idx)
    got = model_five_points(model)
    np.testing.assert_allclose(got[0], (mean[idx[36]] + mean[idx[39]]) / 2)
    np.testing.assert_allclose(got[2], mean[idx[30]])
    np.testing.assert_allclose(got[4], mean[idx[54]])


def test_pos_recovers_affine_camera():
    rng = np.random.default_rng(1)
    pts3 = rng.normal(size=(7, 3)) * 40
    rows = np.array([[2.0, 0.1, 0.3], [-0.2, -2.2, 0.1]])
    pts2 = pts3 @ rows.T + np.array([300.0, 410.0])
    scale, origin = pos(pts2, pts3)
    assert scale == pytest.approx(np.linalg.norm(rows, axis=1).mean())
    np.testing.assert_allclose(origin, [300.0, 410.0], atol=1e-9)


def test_canonical_face_is_already_aligned():
    """The mean face at the canonical placement seen by our camera needs no change."""
    lm = _landmarks_with_five(_canonical_five_2d())
    alignment = estimate_alignment(lm, FIVE_3D, (224, 224), 224)
    # Perspective of a 25 mm deep nose at 1 m moves points by < 3 %: near identity.
    np.testing.assert_allclose(alignment.matrix[:, :2], np.eye(2), atol=0.03)
    np.testing.assert_allclose(alignment.matrix[:, 2], 0.0, atol=3.0)


def test_alignment_undoes_known_scale_and_translation():
    """A crop placed into a larger photo by a known similarity is found again."""
    crop = _face_image()
    lm_crop = _landmarks_with_five(_canonical_five_2d())
    reference = estimate_alignment(lm_crop, FIVE_3D, (224, 224), 224)
    s, t = 2.5, np.array([130.0, 75.0])
    forward = np.array([[s, 0, t[0]], [0, s, t[1]]])  # crop -> photo, continuous px
    photo = warp_to_crop(crop, Alignment(forward, 800, (224, 224)))[:700]  # 800 wide, 700 high
    lm_photo = lm_crop * s + t
    out, lm_out, alignment = align_face(photo, lm_photo, FIVE_3D, 224)
    assert out.shape == (224, 224, 3) and alignment.source_size == (700, 800)
    expected = reference.matrix[:, :2] @ np.linalg.inv(forward[:, :2])
    np.testing.assert_allclose(alignment.matrix[:, :2], expected, rtol=1e-9)
    np.testing.assert_allclose(lm_out, reference.to_crop(lm_crop), atol=1e-3)
    # Pixels come back (up to interpolation of the 2.5x upsampled copy).
    direct = warp_to_crop(crop, reference)
    inner = (slice(20, 204), slice(20, 204))
    assert np.abs(out[inner].astype(float) - direct[inner].astype(float)).mean() < 2.0


def test_alignment_round_trip_and_identity():
    lm = _landmarks_with_five(_canonical_five_2d() * 3 + 40)
    alignment = estimate_alignment(lm, FIVE_3D, (900, 700), 224)
    pts = np.array([[10.0, 20.0], [650.0, 880.0]])
    np.testing.assert_allclose(alignment.to_image(alignment.to_crop(pts)), pts, atol=1e-3)
    assert alignment.scale == pytest.approx(1 / 3, rel=0.03)
    ident = identity_alignment(224)
    np.testing.assert_array_equal(ident.to_crop(pts), pts.astype(np.float32))
    img = _face_image()
    np.testing.assert_array_equal(warp_to_crop(img, ident), img)


def test_large_downscale_is_area_averaged():
    """A 1-px checkerboard shrunk 10x must become flat grey, not alias into stripes."""
    board = ((np.indices((2240, 2240)).sum(0) % 2) * 255).astype(np.uint8)
    alignment = Alignment(np.array([[0.1, 0, 0], [0, 0.1, 0]]), 224, (2240, 2240))
    out = warp_to_crop(board, alignment)
    assert abs(out[10:-10, 10:-10].astype(float).mean() - 127.5) < 3 and out[10:-10, 10:-10].std() < 3


def test_five_points_rejects_wrong_shape():
    with pytest.raises(UserError, match="68 points"):
        five_points(np.zeros((5, 2)))


# ---------------------------------------------------------------- parsing


def _frontal_landmarks68() -> np.ndarray:
    """A plausible frontal 68-point layout in a 224 crop (hand-placed)."""
    lm = np.zeros((68, 2))
    angles = np.linspace(np.pi, 0, 17)
    lm[0:17] = np.stack([112 - 70 * np.cos(angles), 100 + 90 * np.sin(angles)], 1)
    lm[17:22] = np.stack([np.linspace(55, 100, 5), [78, 72, 70, 71, 74]], 1)
    lm[22:27] = np.stack([np.linspace(124, 169, 5), [74, 71, 70, 72, 78]], 1)
    lm[27:31] = np.stack([[112] * 4, [92, 104, 116, 128]], 1)
    lm[31:36] = np.stack([np.linspace(98, 126, 5), [136, 139, 140, 139, 136]], 1)
    eye = np.array([[-16, 0], [-8, -6], [8, -6], [16, 0], [8, 5], [-8, 5]])
    lm[36:42] = eye + [78, 96]
    lm[42:48] = eye + [146, 96]
    mouth_outer = np.array([[-25, 0], [-15, -8], [-6, -10], [0, -9], [6, -10], [15, -8], [25, 0], [15, 10], [6, 13], [0, 13], [-6, 13], [-15, 10]])
    lm[48:60] = mouth_outer + [112, 165]
    lm[60:68] = np.array([[-20, 0], [-7, -3], [0, -3], [7, -3], [20, 0], [7, 4], [0, 4], [-7, 4]]) + [112, 165]
    return lm


def test_parse_68_points_puts_classes_where_landmarks_are():
    lm = _frontal_landmarks68()
    labels = parse_landmarks(lm, (224, 224))
    assert labels.dtype == np.uint8 and labels.shape == (224, 224)
    at = lambda x, y: labels[int(y), int(x)]  # noqa: E731
    assert at(*lm[36:42].mean(0)) == LABEL["right_eye"]  # image left = subject's right
    assert at(*lm[42:48].mean(0)) == LABEL["left_eye"]
    assert at(*lm[19]) == LABEL["right_brow"] and at(*lm[24]) == LABEL["left_brow"]
    assert at(112, 120) == LABEL["nose"]
    assert at(112, 158) == LABEL["upper_lip"] and at(112, 165) == LABEL["inner_mouth"] and at(112, 175) == LABEL["lower_lip"]
    assert at(70, 140) == LABEL["skin"] and at(112, 45) == LABEL["skin"]  # cheek, forehead
    assert at(5, 5) == LABEL["background"] and at(112, 215) == LABEL["background"]


def test_parse_dense_mesh_layout():
    """Dense path: a fake 468-point mesh whose 68 subset is the hand layout still
    labels eyes on the right sides (indices taken from the mapping)."""
    pytest.importorskip("mediapipe")
    lm = _frontal_landmarks68()
    rng = np.random.default_rng(0)
    dense = np.tile(lm.mean(0), (468, 1)) + rng.normal(scale=0.5, size=(468, 2))
    dense[MESH_TO_68] = lm
    from lib.preprocess import mediapipe_68 as mp68

    for indices, centre in ((mp68.RIGHT_EYE, lm[36:42].mean(0)), (mp68.LEFT_EYE, lm[42:48].mean(0))):
        ring = np.linspace(0, 2 * np.pi, len(indices), endpoint=False)
        dense[list(indices)] = centre + np.stack([15 * np.cos(ring), 5 * np.sin(ring)], 1)
    dense[list(mp68.FACE_OVAL)] = [112, 110] + np.stack([75 * np.cos(np.linspace(-np.pi / 2, 1.5 * np.pi, 36, endpoint=False)), 100 * np.sin(np.linspace(-np.pi / 2, 1.5 * np.pi, 36, endpoint=False))], 1)
    labels = parse_landmarks(lm, (224, 224), dense=dense)
    assert labels[96, 78] == LABEL["right_eye"] and labels[96, 146] == LABEL["left_eye"]
    assert labels[30, 112] == LABEL["skin"] and labels[5, 5] == LABEL["background"]


def test_skin_attention_weights_hand_case():
    labels = np.zeros((224, 224), np.uint8)
    labels[50:150, 50:150] = LABEL["skin"]
    labels[100, 100] = LABEL["nose"]
    weights = skin_attention_weights(labels, weights=(0.25, 0.5, 0.99), dilation_px=3)
    assert weights.dtype == np.float32 and weights.shape == (224, 224)
    assert weights[10, 10] == pytest.approx(0.25) and weights[60, 60] == pytest.approx(0.5)
    assert weights[100, 100] == pytest.approx(0.99)
    assert weights[100, 103] == pytest.approx(0.99) and weights[100, 104] == pytest.approx(0.5)  # radius 3
    assert weights[98, 98] == pytest.approx(0.99)  # inside the disc
    labels[100, 151] = LABEL["left_eye"]  # just outside the skin square
    grown = skin_attention_weights(labels, weights=(0.25, 0.5, 0.99), dilation_px=3)
    assert grown[100, 149] == pytest.approx(0.99) and grown[100, 150] == pytest.approx(0.25)  # not into background
    untouched = labels.copy()
    skin_attention_weights(labels, (0.25, 0.5, 0.99), 5)
    np.testing.assert_array_equal(labels, untouched)


# ---------------------------------------------------------------- image reading


def test_read_image_modes_and_exif(tmp_path):
    rgb = _face_image(64)
    gray_path, rgba_path, exif_path = tmp_path / "g.png", tmp_path / "a.png", tmp_path / "e.jpg"
    Image.fromarray(rgb[:, :, 0]).save(gray_path)
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], axis=2)
    rgba[:10, :10, 3] = 0  # transparent corner -> white
    Image.fromarray(rgba).save(rgba_path)
    tall = np.zeros((80, 40, 3), np.uint8)
    tall[:10] = 255  # white band on top of the upright picture
    # Stored rotated by 90 degrees with EXIF orientation 6 ("rotate 90 CW to view").
    stored = Image.fromarray(np.rot90(tall, k=1).copy())
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(exif_path, exif=exif, quality=95)

    gray = read_image(str(gray_path))
    assert gray.shape == (64, 64, 3) and np.array_equal(gray[:, :, 0], gray[:, :, 2])
    got = read_image(str(rgba_path))
    assert got.shape == (64, 64, 3) and (got[:10, :10] == 255).all() and np.array_equal(got[20:, 20:], rgb[20:, 20:])
    upright = read_image(str(exif_path))
    assert upright.shape == (80, 40, 3)
    assert upright[:8].mean() > 200 and upright[20:].mean() < 30


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "tiny", "huge"])
def test_read_image_bad_files_are_user_errors(tmp_path, monkeypatch, case):
    path = tmp_path / "bad.png"
    if case == "text":
        path.write_text("not an image")
    elif case == "truncated":
        Image.fromarray(_face_image(128)).save(path)
        path.write_bytes(path.read_bytes()[:400])
    elif case == "tiny":
        Image.fromarray(_face_image(16)).save(path)
    elif case == "huge":
        monkeypatch.setattr("lib.preprocess.image_io.MAX_PIXELS", 100 * 100)  # instead of a 400-megapixel file
        Image.fromarray(_face_image(128)).save(path)
    with pytest.raises(UserError) as info:
        read_image(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def _png_header(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels, with no pixel data: opening
    it reads only the header, so size limits are tested without a huge file."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_our_size_limit_speaks_before_pillows_bomb_check(tmp_path):
    from lib.preprocess.image_io import MAX_PIXELS

    path = tmp_path / "big.png"
    _png_header(path, 25000, 17000)  # above MAX_PIXELS and 2x Pillow's default limit
    with pytest.raises(UserError, match=rf"{path}: image is 25000x17000, too large; downscale it below {MAX_PIXELS}"):
        read_image(str(path))
    _png_header(path, 30000, 30000)  # above 2x MAX_PIXELS: Pillow itself refuses while opening
    with pytest.raises(UserError, match=rf"{path}: image has 900000000 pixels, too large; downscale it below"):
        read_image(str(path))
    _png_header(path, 10000, 10000)  # within MAX_PIXELS, above Pillow's default warning
    with pytest.raises(UserError) as info:
        read_image(str(path))
    assert "Decompression" not in str(info.value) and "damaged or truncated" in str(info.value)


def test_a_permission_error_is_not_called_damaged(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.fromarray(_face_image(64)).save(path)

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(Image, "open", denied)  # root ignores chmod, so fake it
    with pytest.raises(UserError, match=rf"^{path}: cannot be read \(Permission denied\)$"):
        read_image(str(path))


PHOTO_RUN = """
import os, threading
import numpy as np
from lib.preprocess.landmarks import MediapipeBackend
backend = MediapipeBackend()
image = np.full((256, 256, 3), 128, np.uint8)
image[64:192, 80:176] = 200  # no face: every detector graph runs (mesh, padded, full range)
print(len(backend._run_padded(image)), len(backend._run_full_range(image)), flush=True)
os.write(2, b"E0000 a native error stays visible\\n")
os.close(2)  # end of the pipe: the filter forwards what is left, then stops
for thread in threading.enumerate():
    if thread.name == "native-log-filter":
        thread.join()
"""


def test_photo_runs_print_no_mediapipe_noise(repo_root):
    pytest.importorskip("mediapipe")
    out = subprocess.run([sys.executable, "-c", PHOTO_RUN], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]
    assert out.stderr.splitlines() == ["E0000 a native error stays visible"]
