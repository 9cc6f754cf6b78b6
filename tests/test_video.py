"""Video input: a head-turn video rendered from the built-in face model (yaw -50..+50
deg, known per frame) is written with PyAV, read back, and the views chosen from it
are checked against the true yaws; the choice rule on hand-made frames."""
import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import test_sample
from lib.cli import run
from lib.config.schema import VideoConfig
from lib.errors import UserError
from lib.facemodel import load_face_model
from lib.morphable import FaceCoefficients, MorphableModel
from lib.render import render_mesh
from lib.video import FrameInfo, frame_sharpness, pick_views, read_frames, write_video

SIZE = 160
YAWS = np.linspace(-50.0, 50.0, 41)  # 2.5 deg per frame
BLURRED = {float(y) for y in (-35.0, 0.0, 35.0)}  # the exact target frames, blurred: sharpness must avoid them
FAST = [
    f"fit.crop_size={SIZE}",
    "fit.steps_pose=5",
    "fit.steps_shape=10",
    "fit.steps_appearance=1",
    "fit.render_size=32",
    "fit.texture_size=32",
]


def head_turn_frames() -> np.ndarray:
    """uint8 [41, SIZE, SIZE, 3]: the built-in model's mean face turning from yaw -50
    to +50 deg in front of a grey background; the frames at -35, 0 and +35 deg are
    blurred (Gaussian, sigma 2 px) like a frame taken while the camera shook."""
    face_model = load_face_model("builtin")
    morphable = MorphableModel(face_model)
    count = len(YAWS)
    coeffs = FaceCoefficients.zeros(face_model, count)
    rotation = torch.zeros(count, 3)
    rotation[:, 1] = torch.from_numpy(np.deg2rad(YAWS)).float()
    coeffs = FaceCoefficients(**{**coeffs.as_dict(), "rotation": rotation})
    with torch.no_grad():
        instance = morphable(coeffs, (SIZE, SIZE))
        render = render_mesh(instance.vertices, morphable.faces, {"color": instance.colors}, (SIZE, SIZE),
                             cull_backfaces=True, backend="auto")
    image = render.images["color"].clamp(0, 1) * render.mask + 0.35 * (1 - render.mask)
    frames = (image * 255).round().to(torch.uint8).numpy()
    for k, yaw in enumerate(YAWS):
        if float(yaw) in BLURRED:
            frames[k] = cv2.GaussianBlur(frames[k], (0, 0), 2.0)
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = head_turn_frames()
    path = tmp_path_factory.mktemp("video") / "head_turn.mp4"
    write_video(str(path), frames, fps=10)
    return path, frames


def test_reader_returns_every_frame_in_order(video):
    path, frames = video
    read = read_frames(str(path), max_frames=100)
    assert read.total == len(frames) and read.images.shape == frames.shape
    np.testing.assert_array_equal(read.indices, np.arange(len(frames)))
    np.testing.assert_allclose(read.times_s, np.arange(len(frames)) / 10.0, atol=1e-6)
    # Near-lossless H.264 (crf 12): each decoded frame matches its own render (the
    # face turns 2.5 deg per frame, so a frame out of order would differ by far more).
    error = np.abs(read.images.astype(float) - frames.astype(float)).mean(axis=(1, 2, 3))
    assert error.max() < 2.0
    neighbour = np.abs(read.images[1:].astype(float) - frames[:-1].astype(float)).mean(axis=(1, 2, 3))
    assert neighbour.min() > error.max()


def test_reader_keeps_frames_spread_over_the_video(video):
    path, frames = video
    read = read_frames(str(path), max_frames=10)
    # 41 frames, at most 10 kept: every ceil(41 / 10) = 5th, from the first to the last.
    np.testing.assert_array_equal(read.indices, np.arange(0, 41, 5))
    assert len(read.images) == 9


@pytest.mark.parametrize("rotation", [90, -90])
def test_reader_applies_the_display_rotation(tmp_path, rotation):
    """A phone's portrait video: landscape frames plus a display rotation. The reader
    returns what a player shows: the frame turned counter-clockwise by the rotation."""
    frame = np.full((64, 96, 3), 40, np.uint8)
    frame[:16, :16] = (250, 30, 30)  # a red block in the top-left corner
    path = tmp_path / "portrait.mp4"
    write_video(str(path), np.stack([frame] * 3), fps=5, rotation_deg=rotation)
    read = read_frames(str(path), 10)
    assert read.images.shape == (3, 96, 64, 3)
    expected = np.rot90(frame, k=rotation // 90)  # +90: top-left goes to bottom-left
    assert np.abs(read.images[0].astype(float) - expected).mean() < 4.0


def test_reader_refuses_a_file_that_is_not_a_video(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(UserError, match="notes.mp4"):
        read_frames(str(fake), 10)
    with pytest.raises(UserError, match="not found"):
        read_frames(str(tmp_path / "missing.mp4"), 10)


def test_blur_lowers_sharpness():
    frames = head_turn_frames()
    landmarks = np.array([[40.0, 40.0], [120.0, 130.0]])
    sharp = frame_sharpness(frames[20 - 2], landmarks, 128)
    assert frame_sharpness(cv2.GaussianBlur(frames[20 - 2], (0, 0), 2.0), landmarks, 128) < 0.5 * sharp


def test_pick_views_rule():
    cfg = VideoConfig(target_yaw_deg=[-35.0, 0.0, 35.0], yaw_window_deg=5.0, max_yaw_error_deg=20.0)
    frames = [
        FrameInfo(0, 0.0, -36.0, 1.0),
        FrameInfo(1, 0.1, -31.0, 5.0),  # within 5 deg of -35 and sharpest: wins
        FrameInfo(2, 0.2, -20.0, 9.0),  # sharper, but 15 deg away
        FrameInfo(3, 0.3, None, None),  # no face
        FrameInfo(4, 0.4, 9.0, 3.0),  # nothing within 5 deg of 0: the nearest (9 deg) is taken
        FrameInfo(5, 0.5, 12.0, 8.0),
    ]
    chosen = pick_views(frames, cfg)
    # +35: nearest is 12 deg at 23 deg away > max_yaw_error_deg: left out.
    assert [(target, f.index) for target, f in chosen] == [(-35.0, 1), (0.0, 4)]
    # A frame serves one target only.
    twice = pick_views([FrameInfo(0, 0.0, 0.0, 1.0)], VideoConfig(target_yaw_deg=[0.0, 1.0]))
    assert len(twice) == 1


def test_test_sample_video_picks_left_front_right(video, tmp_path):
    path, _ = video
    out = tmp_path / "out"
    assert test_sample.main(["--video", str(path), "--out", str(out), *FAST]) == 0
    folder = out / "head_turn"
    record = json.loads((folder / "video_frames.json").read_text())
    assert record["total_frames"] == len(YAWS) and len(record["examined"]) == len(YAWS)
    chosen = record["chosen"]
    assert [c["target_yaw_deg"] for c in chosen] == [-35.0, 0.0, 35.0]
    for c in chosen:
        true_yaw = YAWS[c["index"]]
        assert abs(true_yaw - c["target_yaw_deg"]) <= 10.0, (c, true_yaw)
        assert float(true_yaw) not in BLURRED, c  # the sharpness criterion avoided the blurred frame
        assert Image.open(folder / c["file"]).size == (SIZE, SIZE)
    # The chosen frames were reconstructed as one 3-view subject.
    row = json.loads((folder / "result.json").read_text())
    assert row["views"] == 3
    assert (folder / "mesh.glb").is_file() and (folder / "textured.obj").is_file()


def test_missing_video_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(test_sample.main, ["--video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --video {tmp_path / 'none.mp4'}: file not found"]
