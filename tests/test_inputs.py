"""Subjects as users mean them (lib/fitting/inputs.py), photo formats, and
one-photo subjects in prepare.py's folder layout."""
import dataclasses
import glob
import os

import numpy as np
import pytest
from PIL import Image

import prepare
from data.folders import discover_folder_views
from data.synthetic import generate_split
from lib.config import load_config
from lib.facemodel import load_face_model
from lib.fitting.inputs import discover_subjects, safe_name, unique_names
from lib.preprocess.image_io import IMAGE_EXTENSIONS, read_image


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_loose_photos_are_one_subject_each_and_folders_group_views(tmp_path):
    _touch(tmp_path / "ann.jpg")
    _touch(tmp_path / "bob.png")
    _touch(tmp_path / "carol" / "left.png")
    _touch(tmp_path / "carol" / "front.png")
    subjects = {s.name: [os.path.basename(v) for v in s.views] for s in discover_subjects(str(tmp_path))}
    assert subjects == {"ann": ["ann.jpg"], "bob": ["bob.png"], "carol": ["front.png", "left.png"]}


def test_one_photo_as_input_is_one_subject(tmp_path):
    _touch(tmp_path / "me.ppm")
    [subject] = discover_subjects(str(tmp_path / "me.ppm"))
    assert subject.name == "me" and subject.views == (str(tmp_path / "me.ppm"),)


def test_output_names_stay_readable_and_unique(tmp_path):
    for name in ("山田", "鈴木", "a b", "a_b", "Ann", "ann"):
        _touch(tmp_path / name / "x.png")
    _touch(tmp_path / "ann.png")  # a loose photo named like a folder
    names = [s.name for s in discover_subjects(str(tmp_path))]
    assert len({n.casefold() for n in names}) == len(names) == 7
    assert {"山田", "鈴木", "a b", "a_b"} <= set(names)
    assert sorted(n.casefold() for n in names if n.casefold().startswith("ann")) == ["ann", "ann-2", "ann-3"]


def test_safe_name_replaces_only_refused_characters():
    assert safe_name("José Müller") == "José Müller"
    assert safe_name("a/b:c*?") == "a_b_c_"
    assert safe_name("...") == "subject"
    assert safe_name("CON") == "CON_"
    assert safe_name("e\u0301") == "\u00e9"  # decomposed (macOS) -> composed
    assert unique_names(["x", "X", "x"]) == ["x", "X-2", "x-3"]


@pytest.mark.parametrize("ext", [".ppm", ".pgm", ".bmp", ".tiff", ".webp", ".gif", ".heic"])
def test_formats_pillow_reads_are_photos(tmp_path, ext):
    assert ext in IMAGE_EXTENSIONS
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path = tmp_path / f"face{ext}"
    Image.fromarray(picture).save(path)
    [subject] = discover_subjects(str(tmp_path))
    assert subject.views == (str(path),)
    image = read_image(str(path))
    assert image.shape == (40, 48, 3)
    if ext in (".ppm", ".bmp", ".tiff"):  # lossless colour formats: read back exactly
        assert np.array_equal(image, picture)


def test_prepare_layout_accepts_a_one_photo_subject(tmp_path):
    _touch(tmp_path / "solo" / "portrait.jpg")
    groups, problems = discover_folder_views(str(tmp_path), 3)
    assert problems == [] and [g.paths for g in groups] == [(None, str(tmp_path / "solo" / "portrait.jpg"), None)]


def test_prepare_takes_a_one_photo_subject_at_the_photo_crop_size(tmp_path, capsys):
    cfg = load_config(None)
    views = generate_split(load_face_model("builtin"), dataclasses.replace(cfg.data, image_size=128), cfg.loss, "val", 1,
                           progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)["rgb"][0]
    (tmp_path / "in" / "solo").mkdir(parents=True)
    Image.fromarray(np.asarray(views[1])).save(tmp_path / "in" / "solo" / "portrait.png")
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--out", str(out), "face_model.photos=config", "fit.crop_size=96"]
    assert prepare.main(argv) == 0
    assert "prepared 1 photos in 1 samples" in capsys.readouterr().out
    [crop] = glob.glob(str(out / "cache" / "*" / "*" / "*" / "crop.npy"))
    assert np.load(crop).shape == (96, 96, 3)  # fit.crop_size, not the preset's data.image_size (64)
