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

    parser = make_parser("test", "configs/tiny.yaml", str(tmp_path), "test.py")
    args, cfg = parse_config(parser, ["train.epochs=3", "--out", str(tmp_path / "o"), "train.lr=0.5"])
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.5)
    assert (tmp_path / "o" / "config.yaml").is_file()


# ------------------------------------------------------------ ranges, YAML hazards
@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=-1", "train.lr"),
        ("train.lr=.nan", "train.lr"),
        ("train.lr=.inf", "train.lr"),
        ("train.save_every=0", "train.save_every"),
        ("train.val_every=0", "train.val_every"),
        ("train.epochs=0", "train.epochs"),
        ("train.seed=-1", "train.seed"),
        ("train.batch_size=0", "train.batch_size"),
        ("data.num_workers=-1", "data.num_workers"),
        ("data.synthetic.num_train=0", "data.synthetic.num_train"),
        ("data.image_size=0", "data.image_size"),
        ("fit.lr=.nan", "fit.lr"),
        ("loss.skin_weights=[0.25, -1, 0.9]", "loss.skin_weights"),
        ("model.unet_channels=[]", "model.unet_channels"),
    ],
)
def test_numbers_outside_their_range_are_refused_naming_the_key(override, key):
    with pytest.raises(UserError, match=rf"^command line: {key} must be .*, got"):
        load_config(None, [override])


def test_a_range_error_names_the_file_that_set_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  val_every: 0\n")
    with pytest.raises(UserError, match=rf"^{path}: train.val_every must be at least 1, got 0"):
        load_config(str(path))
    assert load_config(str(path), ["train.val_every=2"]).train.val_every == 2  # fixed on the command line


def test_every_number_in_the_schema_has_a_range():
    import dataclasses
    import typing

    from lib.config.schema import RANGES

    def numeric_keys(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from numeric_keys(hints[f.name], f"{prefix}{f.name}.")
            elif hints[f.name] in (int, float, list):
                yield prefix + f.name

    keys = set(numeric_keys(Config))
    assert keys - set(RANGES) == set()
    assert set(RANGES) - keys == set()  # no stale entries
    for key in keys:  # the defaults themselves are inside their ranges
        load_config(None, [f"{key}={yaml.safe_dump(_get(Config(), key), default_flow_style=True).strip()}"])


def _get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_an_empty_config_file_is_refused(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(UserError, match=f"{path}: config file is empty"):
        load_config(str(path))


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    # Each level repeats the previous nine times: 9**6 = 531,441 leaves from ~300 bytes
    # (the adversarial run used more levels: 51 s and 4 GB before a MemoryError).
    lines = ['a0: &a0 ["x"]']
    for level in range(1, 7):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 400
    with pytest.raises(UserError, match=rf"^{path}: line 1: YAML anchors and aliases"):
        load_config(str(path))


def test_recursive_yaml_alias_is_one_line(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("train: &t\n  epochs: 3\n  again: *t\n")
    with pytest.raises(UserError, match="YAML anchors and aliases"):
        load_config(str(path))
    with pytest.raises(UserError, match="YAML anchors and aliases"):
        load_config(None, ["train.lr=&x 1"])


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("face_model:\n  path: caf\u00e9.npz\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"{path}: not UTF-8 text"):
        load_config(str(path))
    path.write_bytes("face_model:\n  path: caf\u00e9.npz\n".encode("utf-8"))
    assert load_config(str(path)).face_model.path == "caf\u00e9.npz"


def test_an_unreadable_config_is_one_line(tmp_path, monkeypatch):
    import lib.errors as errors  # the config loader reads files through lib.errors.read_user_file

    path = tmp_path / "locked.yaml"
    path.write_text("train:\n  epochs: 3\n")

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(errors, "open", denied, raising=False)  # root ignores chmod, so fake it
    with pytest.raises(UserError, match=f"{path}: cannot be read \\(Permission denied\\)"):
        load_config(str(path))


def test_save_config_is_atomic(tmp_path, monkeypatch):
    """A full disk while writing config.yaml leaves the previous file whole and no
    temporary file behind."""
    path = tmp_path / "config.yaml"
    first = load_config(None, ["train.epochs=5"])
    save_config(first, str(path))
    before = path.read_bytes()

    def disk_full(data, stream, **kwargs):
        stream.write("train:\n  epo")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(yaml, "safe_dump", disk_full)
    with pytest.raises(OSError):
        save_config(load_config(None, ["train.epochs=7"]), str(path))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["config.yaml"]
