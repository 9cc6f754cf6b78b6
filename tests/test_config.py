"""Config schema, YAML overrides, command-line overrides, and the one-line errors."""
import os
import subprocess
import sys

import pytest
import yaml

from lib.config import Config, load_config, save_config
from lib.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_the_paper_settings():
    cfg = Config()
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (280, 12, 1e-4)
    assert (cfg.train.step_epoch, cfg.train.mask_epoch) == (50, 100)
    assert cfg.data.image_size == 224


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 1e-3\nmodel:\n  width: 1\n")
    cfg = load_config(str(path), ["train.epochs=9", "data.synthetic.num_train=3"])
    assert cfg.train.epochs == 9  # override beats the file
    assert cfg.train.lr == 1e-3  # '1e-3' (YAML 1.1 string) read as a number
    assert cfg.model.width == 1.0 and isinstance(cfg.model.width, float)
    assert cfg.data.synthetic.num_train == 3
    assert cfg.train.batch_size == 12  # untouched default


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key 'train.epoch'"),
        ("train.epochs=three", "'train.epochs' must be int"),
        ("train.amp=1", "'train.amp' must be true or false"),
        ("train", "must look like section.key=value"),
        ("train=3", "'train' must be a mapping"),
    ],
)
def test_bad_overrides_are_rejected_with_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_unknown_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  imagesize: 128\n")
    with pytest.raises(UserError, match=f"{path}: unknown key 'data.imagesize'"):
        load_config(str(path))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.epochs=5", "face_model.source=ict"])
    save_config(cfg, str(tmp_path / "config.yaml"))
    assert load_config(str(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize("name", ["pixel_face.yaml", "synthetic.yaml", "tiny.yaml"])
def test_presets_load(name):
    cfg = load_config(os.path.join(ROOT, "configs", name))
    with open(os.path.join(ROOT, "configs", name)) as f:
        assert yaml.safe_load(f)  # not empty
    assert cfg.data.image_size > 0


@pytest.mark.parametrize("script", ["train.py", "test_pixel_face.py", "test_sample.py", "demo.py"])
def test_entry_points_reject_bad_input_in_one_line(script, tmp_path):
    out = subprocess.run(
        [sys.executable, script, "--out", str(tmp_path), "train.nonsense=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "unknown key 'train.nonsense'" in out.stderr


@pytest.mark.parametrize("script", ["train.py", "test_pixel_face.py", "test_sample.py", "demo.py"])
def test_entry_points_have_help(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--config" in out.stdout and "--out" in out.stdout


def test_overrides_may_come_before_and_after_options(tmp_path):
    from lib.cli import make_parser, parse_config

    parser = make_parser("test", "configs/tiny.yaml", str(tmp_path))
    args, cfg = parse_config(parser, ["train.epochs=3", "--out", str(tmp_path / "o"), "train.lr=0.5"])
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.5)
    assert (tmp_path / "o" / "config.yaml").is_file()
