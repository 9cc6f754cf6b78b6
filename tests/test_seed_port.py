"""The seed's released checkpoint: recognised by its keys, read without running code,
every key ported or deliberately dropped and none invented, run with the seed's
settings; head outputs come out in the seed's order and units."""
import os

import numpy as np
import pytest
import torch
from scipy.io import savemat

from lib.config import load_config
from lib.config.schema import ModelConfig
from lib.errors import UserError
from models.mvrnet import MVRNet
from models.seed_port import (
    SEED_COEFFICIENTS,
    SEED_MODEL,
    is_seed_state_dict,
    load_seed_model,
    port_seed_state_dict,
    read_seed_checkpoint,
    seed_coefficients,
)

from fakes import fake_face_model
from seed_layout import HEADS, POSE_HEADS, random_seed_state, seed_head_keys, seed_state_shapes
from test_facemodel_bfm import front_arrays, synthetic_face

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIXEL_FACE = os.path.join(ROOT, "configs", "pixel_face.yaml")
TINY = os.path.join(ROOT, "configs", "tiny.yaml")


@pytest.fixture(scope="module")
def seed_network():
    torch.manual_seed(0)
    return MVRNet(ModelConfig(**SEED_MODEL), fake_face_model(), 64)


def test_every_seed_key_is_ported_or_dropped_and_none_invented(seed_network):
    state = random_seed_state()
    port = port_seed_state_dict(state)
    own = seed_network.state_dict()
    assert port.state.keys() == own.keys()  # exactly the network's keys: none missing, none invented
    used = {k for sources in port.sources.values() for k in sources}
    assert used.isdisjoint(port.dropped) and used | set(port.dropped) == set(state)
    assert len(used) == len(state) - len(port.dropped)  # each seed key feeds one of ours
    assert {k.split(".")[1] for k in port.dropped} == {"uuunet", "rednet_fc", "mask_model"}
    assert all(".conv9." in k or ".pts_net." in k or k.startswith("module.mask_model.") for k in port.dropped)
    for key, value in port.state.items():
        assert value.shape == own[key].shape, key
        sources = [state[s] for s in port.sources[key]]
        assert torch.equal(value, torch.cat(sources) if len(sources) > 1 else sources[0]), key
    # the split translation head of the front view: x, y rows, then z
    assert port.sources["heads.translation.1.weight"] == ("module.rednet_fc.conv2_offset_xy_ft.weight",
                                                          "module.rednet_fc.conv2_offset_z_ft.weight")
    assert port.sources["fusion.gates.0.2.psi.0.weight"] == ("module.uuunet.att4_2.psi.0.weight",)
    assert port.sources["fusion.encoders.0.stages.4.conv.3.weight"] == ("module.uuunet.conv5_0.conv.3.weight",)


def test_recognition_and_unknown_keys(tmp_path):
    state = random_seed_state(prefix="")
    assert is_seed_state_dict(state) and is_seed_state_dict({f"module.{k}": v for k, v in state.items()})
    assert not is_seed_state_dict(fake_model_checkpoint())
    with pytest.raises(UserError, match="unexpected keys rednet_fc.conv2_foo.weight"):
        port_seed_state_dict({**state, "rednet_fc.conv2_foo.weight": torch.zeros(1)})
    del state["rednet_fc.conv2_offset_z_lt.bias"]
    with pytest.raises(UserError, match="view lt lacks its offset_xy or offset_z"):
        port_seed_state_dict(state)


def fake_model_checkpoint() -> dict:
    """What train.py writes: a dict with 'model', 'config', ... (not the seed's layout)."""
    return {"model": {"heads.identity.weight": torch.zeros(1)}, "config": {}, "epoch": 1}


def test_checkpoint_is_read_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must not run",))

    path = tmp_path / "evil.pth"
    torch.save({"rednet_fc.conv2_id.weight": Payload()}, path)
    with pytest.raises(UserError, match="refused to load"):
        read_seed_checkpoint(str(path))


def write_bfm(path, vertices=1681):
    """A synthetic BFM_model_front.mat of the real layout with BFM09's basis sizes."""
    columns = int(np.ceil(vertices / 41))
    verts, faces, landmarks = synthetic_face(columns=columns, rows=41, num_vertices=vertices)
    savemat(str(path), front_arrays(verts, faces, landmarks, k=(80, 64, 80)))
    return str(path)


def head_biases(seed: int = 3) -> dict:
    """Known bias values per seed head (translation z about -9 dm: the face 1 m away)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = {**{f"rednet_fc.conv2_{h}": k for h, k in HEADS.items()},
             **{f"rednet_fc.conv2_{h}_{v}": k for v in ("lt", "ft", "rt") for h, k in POSE_HEADS.items()}}
    biases = {name: 0.1 * torch.randn(k, generator=gen) for name, k in sizes.items()}
    for view in ("lt", "ft", "rt"):
        biases[f"rednet_fc.conv2_offset_z_{view}"] = torch.tensor([-9.0]) + 0.01 * torch.randn(1, generator=gen)
    assert set(biases) == set(seed_head_keys())
    return biases


def test_zero_head_weights_give_their_biases_in_the_seed_order(tmp_path):
    biases = head_biases()
    path = tmp_path / "000000279.pth"
    torch.save(random_seed_state(head_biases=biases), path)
    state = read_seed_checkpoint(str(path))
    assert state is not None
    cfg = load_config(PIXEL_FACE, [f"face_model.path={write_bfm(tmp_path / 'bfm.mat')}",
                                                 "data.image_size=64"])
    model, _, run_cfg = load_seed_model(str(path), state, cfg)
    assert (run_cfg.model.expression_per_view, run_cfg.model.parsing_input, run_cfg.model.pose_output) == (
        False, "label", "seed")
    gen = torch.Generator().manual_seed(1)
    rgb, parsing = torch.rand(1, 3, 3, 64, 64, generator=gen), torch.randint(0, 10, (1, 3, 64, 64), generator=gen)
    vector = seed_coefficients(model, rgb, parsing)  # the full-size network once: a few seconds
    assert vector.shape == (1, 3, 257)
    seed_names = {"identity": "id", "expression": "exp", "albedo": "color", "lighting": "gamma"}
    for v, view in enumerate(("lt", "ft", "rt")):
        expected = []
        for name, _ in SEED_COEFFICIENTS:
            if name == "rotation":
                expected.append(biases[f"rednet_fc.conv2_rotate_{view}"])
            elif name == "translation":
                expected.append(torch.cat([biases[f"rednet_fc.conv2_offset_xy_{view}"],
                                           biases[f"rednet_fc.conv2_offset_z_{view}"]]))
            else:
                expected.append(biases[f"rednet_fc.conv2_{seed_names[name]}"])
        assert torch.equal(vector[0, v], torch.cat(expected))
    # Our parametrisation of the same heads (any features: the weights are zero): the
    # same values, translation in mm in our camera frame, one shared expression.
    out = model.heads(torch.randn(1, 2048, 1, 1))
    translation = torch.cat([biases["rednet_fc.conv2_offset_xy_ft"], biases["rednet_fc.conv2_offset_z_ft"]])
    torch.testing.assert_close(out["translation"][0, 1], 100 * translation + torch.tensor([0.0, 0.0, 900.0]))
    assert torch.equal(out["rotation"][0, 1], biases["rednet_fc.conv2_rotate_ft"])
    assert torch.equal(out["expression"][0, 0], out["expression"][0, 2])
    assert torch.equal(out["expression"][0, 0], biases["rednet_fc.conv2_exp"])


def test_seed_camera_frame_projects_like_the_seeds(tmp_path):
    """A seed translation (x, y, z) dm puts a point at distance 1 - z dm from the seed's
    camera (1 dm from the origin): the same pixel under our camera at 1000 mm."""
    from lib.geometry import project
    from models.heads import SEED_MM_PER_UNIT, SEED_TRANSLATION_SHIFT_MM

    point_dm = torch.tensor([0.3, -0.2, -8.5])  # after the seed's rigid transform
    ours = project((SEED_MM_PER_UNIT * point_dm + torch.tensor(SEED_TRANSLATION_SHIFT_MM))[None, None], (224, 224))
    focal = 112 / np.tan(np.radians(12.593637 / 2))  # the seed's FoV at 224 px
    depth_dm = 1.0 - point_dm[2].item()
    u = 112 + focal * point_dm[0].item() / depth_dm
    v = 112 - focal * point_dm[1].item() / depth_dm
    assert ours[0, 0, 0].item() == pytest.approx(u, abs=0.02) and ours[0, 0, 1].item() == pytest.approx(v, abs=0.02)
    assert ours[0, 0, 2].item() == pytest.approx(100 * depth_dm)


def test_seed_checkpoint_needs_bfm(tmp_path):
    path = tmp_path / "seed.pth"
    state = random_seed_state()
    cfg = load_config(PIXEL_FACE, [f"face_model.path={tmp_path / 'missing.mat'}"])
    with pytest.raises(UserError, match="BFM09 face model not found"):
        load_seed_model(str(path), state, cfg)
    with pytest.raises(UserError, match="needs BFM09"):
        load_seed_model(str(path), state, load_config(TINY))
    small = load_config(PIXEL_FACE, [f"face_model.path={write_bfm_sizes(tmp_path)}"])
    with pytest.raises(UserError, match="not BFM09's"):
        load_seed_model(str(path), state, small)


def write_bfm_sizes(tmp_path):
    verts, faces, landmarks = synthetic_face()
    path = tmp_path / "small.mat"
    savemat(str(path), front_arrays(verts, faces, landmarks))
    return str(path)


def test_seed_shapes_cover_the_parser():
    shapes = seed_state_shapes(parser=True)
    assert shapes["mask_model.conv_out.conv_out.weight"] == (10, 256, 1, 1)  # 10 classes, network/MVRnet.py:36


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    """(checkpoint path, its head biases, BFM file): a random-weight checkpoint in the
    seed's layout whose heads output known biases, and a synthetic BFM09 file."""
    folder = tmp_path_factory.mktemp("seed")
    biases = head_biases()
    path = folder / "000000279.pth"
    torch.save(random_seed_state(head_biases=biases), path)
    return str(path), biases, write_bfm(folder / "BFM_model_front.mat")


def seed_run(bfm: str) -> list[str]:
    """Small synthetic runs on BFM09 (64 px, one subject)."""
    return ["--config", TINY, "face_model.source=bfm", f"face_model.path={bfm}", "data.image_size=64",
            "train.device=cpu", "data.synthetic.num_val=1", "fit.demo_subjects=1", "fit.crop_size=64"]


def expected_shape(bfm: str, biases: dict) -> np.ndarray:
    """identity + expression from the heads' biases: the mesh the prediction must be."""
    from lib.facemodel import load_face_model
    from lib.morphable import MorphableModel

    morphable = MorphableModel(load_face_model("bfm", bfm))
    return morphable.shape(biases["rednet_fc.conv2_id"][None], biases["rednet_fc.conv2_exp"][None])[0].numpy()


def test_seed_checkpoint_runs_through_test_pixel_face(seed_files, tmp_path, capsys):
    import json

    import test_pixel_face
    from lib.meshio import read_obj

    path, biases, bfm = seed_files
    out = tmp_path / "eval"
    assert test_pixel_face.main([*seed_run(bfm), "--out", str(out), "--checkpoint", path]) == 0
    assert "the seed's checkpoint, ported" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prediction"]["samples"] == 1 and np.isfinite(summary["prediction"]["RMSE"])
    (folder,) = (out / "samples").iterdir()
    mesh = read_obj(str(folder / "prediction.obj"))
    np.testing.assert_allclose(mesh.vertices, expected_shape(bfm, biases), atol=1e-4)
    with pytest.raises(UserError, match="BFM09 face model not found"):
        test_pixel_face.main([*seed_run(str(tmp_path / "none.mat")), "--out", str(tmp_path / "e2"), "--checkpoint", path])


def test_seed_checkpoint_runs_through_test_sample(seed_files, tmp_path, capsys):
    import test_sample

    path, biases, bfm = seed_files
    out = tmp_path / "sample"
    assert test_sample.main([*seed_run(bfm), "--out", str(out), "--checkpoint", path]) == 0
    assert "the seed's checkpoint, ported" in capsys.readouterr().out
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    coeffs = np.load(folder / "coeffs.npz")
    for row in range(coeffs["identity"].shape[0]):  # every view: the shared identity and expression
        np.testing.assert_allclose(coeffs["identity"][row], biases["rednet_fc.conv2_id"].numpy(), rtol=1e-6)
        np.testing.assert_allclose(coeffs["expression"][row], biases["rednet_fc.conv2_exp"].numpy(), rtol=1e-6)
    assert (folder / "mesh.obj").is_file()
