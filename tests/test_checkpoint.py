"""Checkpoints: atomic save, round trip to identical outputs, refusal of pickled objects,
clear errors for missing, corrupt and incompatible files."""
import datetime
import os
import pickle

import numpy as np
import pytest
import torch

import models.checkpoint as checkpoint_module
from lib.config import config_to_dict, load_config
from lib.errors import UserError
from models.checkpoint import build_model, load_checkpoint, save_checkpoint
from models.predictor import load_predictor

from fakes import fake_face_model


@pytest.fixture
def tiny_cfg(tmp_path):
    face = fake_face_model()
    path = tmp_path / "face.npz"
    face.save(str(path))
    return load_config(
        None,
        ["model.width=0.0625", "data.image_size=32", "face_model.source=npz", f"face_model.path={path}",
         "model.unet_channels=[64, 128, 256]", "model.rednet_layers=[1, 1]", "model.fused_channels=256"],
    )


def trained_state(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, fake_face_model())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rgb, parsing = torch.rand(2, 3, 3, 32, 32), torch.randint(0, 10, (2, 3, 32, 32))
    model(rgb, parsing).identity.square().sum().backward()  # moves BN statistics too
    optimizer.step()
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "epoch": 3,
        "optimizer": optimizer.state_dict(),
        "metrics": {"val_loss": 1.5},
        "rng": {"torch": torch.get_rng_state()},
    }
    return model, state, (rgb, parsing)


def test_round_trip_gives_identical_outputs(tiny_cfg, tmp_path):
    model, state, inputs = trained_state(tiny_cfg)
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(str(path), state)
    assert os.listdir(path.parent) == ["last.pt"]  # no temporary left behind
    loaded = load_checkpoint(str(path))
    assert loaded["epoch"] == 3 and loaded["metrics"] == {"val_loss": 1.5}
    assert loaded["optimizer"]["state"].keys() == state["optimizer"]["state"].keys()
    predictor = load_predictor(str(path), "cpu")
    restored, cfg = predictor.model, predictor.cfg
    assert cfg == tiny_cfg and not restored.training
    model.eval()
    with torch.no_grad():
        expected, got = model(*inputs), restored(*inputs)
    through_predictor = predictor(*inputs, torch.ones(2, 3, dtype=torch.bool))
    for key, value in expected.as_dict().items():
        assert torch.equal(value, getattr(got, key)), key
        assert torch.equal(value, getattr(through_predictor, key)), key


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": np.random.default_rng(0)}, str(path))  # not a plain type
    with pytest.raises(UserError, match="refused to load"):
        load_checkpoint(str(path))
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"x": fake_face_model}))  # a plain pickle of a function
    with pytest.raises(UserError, match=str(raw)):
        load_checkpoint(str(raw))


def test_missing_corrupt_and_wrong_files(tiny_cfg, tmp_path):
    with pytest.raises(UserError, match="checkpoint file not found"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    _, state, _ = trained_state(tiny_cfg)
    path = tmp_path / "last.pt"
    save_checkpoint(str(path), state)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(str(truncated))
    listing = tmp_path / "list.pt"
    torch.save([1, 2], str(listing))
    with pytest.raises(UserError, match="expected a dict"):
        load_checkpoint(str(listing))


def test_incompatible_checkpoints(tiny_cfg, tmp_path):
    _, state, _ = trained_state(tiny_cfg)
    bad_key = dict(state, config={**state["config"], "model": {**state["config"]["model"], "depth": 50}})
    save_checkpoint(str(tmp_path / "a.pt"), bad_key)
    with pytest.raises(UserError, match="config does not fit.*unknown key 'model.depth'"):
        load_predictor(str(tmp_path / "a.pt"), "cpu")
    other_width = dict(state, config={**state["config"], "model": {**state["config"]["model"], "width": 0.125}})
    save_checkpoint(str(tmp_path / "b.pt"), other_width)
    with pytest.raises(UserError, match="weights do not match"):
        load_predictor(str(tmp_path / "b.pt"), "cpu")
    save_checkpoint(str(tmp_path / "c.pt"), {"model": state["model"]})
    with pytest.raises(UserError, match="no 'config'"):
        load_predictor(str(tmp_path / "c.pt"), "cpu")


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(str(path), {"epoch": 1})

    def failing_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(path), {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(str(path)) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["last.pt"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should never run",))


@pytest.mark.parametrize("payload, name", [(_RunsCode(), "system"), (datetime.date(2020, 1, 1), "datetime.date")])
def test_a_refused_checkpoint_names_the_object_and_gives_no_unsafe_advice(tmp_path, payload, name):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": payload}, str(path))
    with pytest.raises(UserError) as info:
        load_checkpoint(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: refused to load") and "\n" not in message
    assert name in message and "never loads code" in message
    assert "weights_only" not in message and "likely succeed" not in message
