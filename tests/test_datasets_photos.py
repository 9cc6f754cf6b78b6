"""Pixel-Face and folder datasets, the preprocessing cache and bad photos, on small
trees the tests build from the shared Pixel-Face sample photos."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from data.cache import PreprocessCache, file_digest
from data.folders import FolderViews, discover_folder_views
from data.pixel_face import DROPPED_106, PixelFace, read_landmarks106, read_pixel_face_photo
from lib.config.schema import LossConfig, PreprocessConfig
from lib.errors import UserError
from lib.preprocess import Preprocessor

SKIN = LossConfig().skin_weights  # loss.skin_weights, passed to the preprocessor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "..", "shared", "assets", "pixel_face_samples")
needs_samples = pytest.mark.skipif(not os.path.isdir(SAMPLES), reason=f"Pixel-Face samples not found at {SAMPLES}")


def _sample(view: int, index: int = 0) -> str:
    folder = os.path.join(SAMPLES, str(view))
    return os.path.join(folder, sorted(os.listdir(folder))[index])


@pytest.fixture(scope="module")
def preprocessor():
    pytest.importorskip("mediapipe")
    return Preprocessor(PreprocessConfig(aligned=True), SKIN, None, crop_size=224)


def test_pixel_face_photo_rotation_and_landmark_file(tmp_path):
    rows, cols = np.mgrid[0:40, 0:36]
    raw = np.stack([cols * 6, rows * 5, np.zeros_like(rows)], axis=2).astype(np.uint8)  # red ~ x, green ~ y
    Image.fromarray(raw).save(tmp_path / "t.png")
    upright = read_pixel_face_photo(str(tmp_path / "t.png"))
    # rotate 90 deg clockwise, then mirror left-right: a transpose
    np.testing.assert_array_equal(upright, raw.transpose(1, 0, 2))
    lines = np.arange(106 * 3, dtype=float).reshape(106, 3)
    np.savetxt(tmp_path / "pts.txt", lines, fmt="%.3f")
    got = read_landmarks106(str(tmp_path / "pts.txt"))
    keep = [i for i in range(106) if i not in DROPPED_106]
    assert got.shape == (101, 3) and len(keep) == 101
    np.testing.assert_allclose(got, lines[keep])
    np.savetxt(tmp_path / "short.txt", lines[:50])
    with pytest.raises(UserError, match="expected 106"):
        read_landmarks106(str(tmp_path / "short.txt"))


def _pixel_face_tree(root) -> None:
    """train: 2 samples (one missing its right view), a broken photo in a third sample
    without landmarks; val: 1 sample with a validation mesh."""
    pts = "\n".join(f"{i} {i + 0.5} {-i}" for i in range(106)) + "\n"

    def sample(split, subject, expression, index, views=(0, 1, 2), landmarks=True):
        base = os.path.join(root, split, subject, expression, "Images")
        for v in views:
            os.makedirs(os.path.join(base, str(v)), exist_ok=True)
            # Stored transposed, as the raw Pixel-Face photos are sideways.
            photo = np.asarray(Image.open(_sample(v, index)).convert("RGB")).transpose(1, 0, 2)
            Image.fromarray(photo).save(os.path.join(base, str(v), "t.jpg"), quality=95)
        if landmarks:
            os.makedirs(os.path.join(base, "fusion"))
            with open(os.path.join(base, "fusion", "nicp_106_pts.txt"), "w") as handle:
                handle.write(pts)
        return base

    sample("train", "s01", "1_neutral", 0)
    sample("train", "s02", "3_smile", 1, views=(0, 1))
    broken = sample("train", "s03", "2_angry", 2, landmarks=False)
    with open(os.path.join(broken, "1", "t.jpg"), "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0 truncated")
    sample("val", "s09", "1_neutral", 3)
    os.makedirs(os.path.join(root, "val_obj", "s09"))
    open(os.path.join(root, "val_obj", "s09", "1_neutral.obj"), "w").close()


@needs_samples
def test_pixel_face_dataset_on_fake_tree(tmp_path, preprocessor):
    _pixel_face_tree(tmp_path / "pf")
    train = PixelFace(str(tmp_path / "pf"), "train", preprocessor, str(tmp_path / "cache"), progress=False)
    assert len(train) == 2 and [g.name for g in train.groups] == ["s01/1_neutral", "s02/3_smile"]
    summary = train.skipped_summary()
    assert "s02/3_smile: view 2 (right) is missing" in summary
    assert "nicp_106_pts.txt" in summary and "s03" in summary
    item = train[1]
    assert item["rgb"].shape == (3, 3, 224, 224) and item["rgb"].dtype == torch.float32
    assert 0.0 <= item["rgb"].min() and item["rgb"].max() <= 1.0
    assert item["parsing"].dtype == torch.long and item["parsing"].shape == (3, 224, 224)
    assert item["view_mask"].tolist() == [True, True, False]
    assert item["landmarks"].shape == (3, 68, 2) and float(item["landmarks"][2].abs().sum()) == 0.0
    assert item["landmarks3d"].shape == (101, 3) and float(item["landmarks3d"][3, 0]) == 4.0  # point 3 dropped
    # The stored photo was transposed: the prepared crop is the upright original.
    original = np.asarray(Image.open(_sample(1, 1)).convert("RGB"), dtype=np.float32) / 255
    assert np.abs(item["rgb"][1].permute(1, 2, 0).numpy() - original).mean() < 0.03
    val = PixelFace(str(tmp_path / "pf"), "val", preprocessor, str(tmp_path / "cache"), progress=False)
    assert len(val) == 1 and val[0]["mesh_path"].endswith(os.path.join("val_obj", "s09", "1_neutral.obj"))
    with pytest.raises(UserError, match="split folder not found"):
        PixelFace(str(tmp_path / "pf"), "test", preprocessor, str(tmp_path / "cache"))


@needs_samples
def test_folder_layouts_and_bad_photos(tmp_path, preprocessor):
    seed = tmp_path / "samples"
    for v in range(3):
        os.makedirs(seed / str(v))
        shutil.copy(_sample(v, 0), seed / str(v) / f"anna{v}.png")
        if v != 2:
            shutil.copy(_sample(v, 1), seed / str(v) / f"bob{v}.png")
    ds = FolderViews(str(seed), preprocessor, str(tmp_path / "cache"), 3, progress=False)
    assert [g.name for g in ds.groups] == ["anna", "bob"]
    assert ds[1]["view_mask"].tolist() == [True, True, False] and ds[0]["name"] == "anna"

    subjects = tmp_path / "subjects"
    os.makedirs(subjects / "carl")
    for v, word in enumerate(("left", "front", "right")):
        shutil.copy(_sample(v, 2), subjects / "carl" / f"carl_{word}.png")
    os.makedirs(subjects / "dora")
    # Every kind of awkward file for dora: RGBA, grayscale, EXIF-rotated JPEG ...
    rgba = np.asarray(Image.open(_sample(0, 3)).convert("RGBA")).copy()
    rgba[:20, :20, 3] = 0
    Image.fromarray(rgba).save(subjects / "dora" / "d0.png")
    Image.open(_sample(1, 3)).convert("L").save(subjects / "dora" / "d1.png")
    upright = Image.open(_sample(2, 3)).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # shown upright with orientation 6
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(subjects / "dora" / "d2.jpg", exif=exif, quality=95)
    os.makedirs(subjects / "eve")
    for name in ("a.png", "b.png"):  # two photos, no view names: ambiguous
        shutil.copy(_sample(1, 4), subjects / "eve" / name)
    os.makedirs(subjects / "fred")
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(subjects / "fred" / "f0.png")  # tiny
    Image.fromarray(np.full((240, 240, 3), 128, np.uint8)).save(subjects / "fred" / "f1.png")  # no face
    (subjects / "fred" / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = FolderViews(str(subjects), preprocessor, str(tmp_path / "cache"), 3, progress=False)
    assert [g.name for g in ds.groups] == ["carl", "dora"]
    assert ds[1]["view_mask"].tolist() == [True, True, True]
    lines = ds.skipped_summary().splitlines()
    assert any(line.startswith(str(subjects / "eve")) and "which view" in line for line in lines)
    for name, reason in (("f0.png", "too small"), ("f1.png", "no face found"), ("f2.png", "not a readable image")):
        assert sum(line.startswith(str(subjects / "fred" / name)) and reason in line for line in lines) == 1, lines
    assert any("fred: no usable view" in line for line in lines)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UserError, match="no photos found"):
        discover_folder_views(str(tmp_path / "empty"), 3)
    with pytest.raises(UserError, match="input folder not found"):
        discover_folder_views(str(tmp_path / "not_there"), 3)


@needs_samples
def test_cache_reuses_rebuilds_and_survives_workers(tmp_path, preprocessor, monkeypatch):
    photo = tmp_path / "p.png"
    shutil.copy(_sample(1, 0), photo)
    cache = PreprocessCache(str(tmp_path / "c"), preprocessor)
    first = cache.get(str(photo))
    assert isinstance(first["crop"], np.memmap) and first["crop"].shape == (224, 224, 3)

    calls = []
    original_call = Preprocessor.__call__
    monkeypatch.setattr(Preprocessor, "__call__", lambda self, *a, **k: calls.append(1) or original_call(self, *a, **k))
    again = PreprocessCache(str(tmp_path / "c"), preprocessor).get(str(photo))
    assert calls == [] and np.array_equal(again["landmarks"], first["landmarks"])
    # Same bytes under another name: still cached (keyed by content).
    shutil.copy(photo, tmp_path / "copy.png")
    cache.get(str(tmp_path / "copy.png"))
    assert calls == []
    # Changed content: rebuilt.
    Image.fromarray(np.asarray(Image.open(photo))[:, ::-1].copy()).save(photo)
    flipped = cache.get(str(photo))
    assert len(calls) == 1 and not np.array_equal(flipped["landmarks"], first["landmarks"])
    # Changed setting: another key, another folder.
    other = PreprocessCache(str(tmp_path / "c"), Preprocessor(PreprocessConfig(aligned=True, feature_dilation_px=7), SKIN, None, crop_size=224))
    assert other.folder != cache.folder and sorted(os.listdir(tmp_path / "c")) == sorted([os.path.basename(cache.folder), os.path.basename(other.folder)])
    # Failures are cached with their message.
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
    for _ in range(2):
        with pytest.raises(UserError, match="blank.png: no face found"):
            cache.get(str(blank))
    assert len(calls) == 2
    # A second writer finishing the same entry later does not break the first one's.
    digest_entry = cache._entry(file_digest(str(photo)))
    cache._write_entry(digest_entry, {k: np.asarray(v) for k, v in flipped.items()})
    assert np.array_equal(cache.get(str(photo))["parsing"], flipped["parsing"])
    assert not [f for f in os.listdir(os.path.dirname(digest_entry)) if f.endswith(".tmp")]


def test_cache_hashes_a_photo_again_only_when_it_changes(tmp_path, preprocessor, monkeypatch):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"first content")
    cache = PreprocessCache(str(tmp_path / "c"), preprocessor)
    hashed = []
    monkeypatch.setattr("data.cache.file_digest", lambda path: hashed.append(path) or file_digest(path))
    first = cache.digest(str(photo))
    assert cache.digest(str(photo)) == first == file_digest(str(photo)) and len(hashed) == 1
    photo.write_bytes(b"other content, longer")
    assert cache.digest(str(photo)) == file_digest(str(photo)) != first and len(hashed) == 2
    os.remove(photo)
    with pytest.raises(UserError, match="p.jpg: cannot be read"):
        cache.digest(str(photo))


@needs_samples
def test_dataloader_workers_read_the_cache(tmp_path, preprocessor):
    seed = tmp_path / "samples"
    for v in range(3):
        os.makedirs(seed / str(v))
        for i in range(2):
            shutil.copy(_sample(v, i), seed / str(v) / f"p{i}{v}.png")
    ds = FolderViews(str(seed), preprocessor, str(tmp_path / "cache"), 3, progress=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    (batch,) = list(loader)
    assert batch["rgb"].shape == (2, 3, 3, 224, 224) and batch["name"] == ["p0", "p1"]
    assert batch["skin_weight"].max() == pytest.approx(0.99) and batch["view_mask"].all()
