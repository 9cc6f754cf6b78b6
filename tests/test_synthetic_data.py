"""The synthetic multi-view dataset: determinism, caching, ground-truth consistency."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from lib.config.schema import Config
from lib.facemodel.builtin import build_builtin_face_model
from lib.geometry import euler_to_matrix, project, rigid_transform
from lib.facemodel.derived import landmark3d_vertices
from lib.morphable import MorphableModel

from data.synthetic import build_synthetic, cache_key, generate_split
from lib.preprocess.parsing import skin_attention_weights

SIZE = 48


@pytest.fixture(scope="module")
def face_model():
    return build_builtin_face_model()


def _cfg(num_train=3, num_val=2) -> Config:
    cfg = Config()
    cfg.data.image_size = SIZE
    cfg.data.synthetic = dataclasses.replace(cfg.data.synthetic, num_train=num_train, num_val=num_val)
    return cfg


def test_deterministic_and_independent_of_count(face_model):
    cfg = _cfg()
    a = generate_split(face_model, cfg.data, cfg.loss, "train", 3,
                          progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    b = generate_split(face_model, cfg.data, cfg.loss, "train", 2,
                          progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    for key in a:
        np.testing.assert_array_equal(a[key][:2], b[key], err_msg=key)
    val = generate_split(face_model, cfg.data, cfg.loss, "val", 1,
                          progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    assert not np.array_equal(val["gt_identity"][0], a["gt_identity"][0])  # splits differ
    other = _cfg()
    other.data.synthetic.seed = 5
    c = generate_split(face_model, other.data, other.loss, "train", 1, progress=False, feature_dilation_px=other.preprocess.feature_dilation_px, render=other.render)
    assert not np.array_equal(c["gt_identity"][0], a["gt_identity"][0])


def test_cache_written_read_back_and_keyed(face_model, tmp_path):
    cfg = _cfg()
    train, val = build_synthetic(face_model, cfg, str(tmp_path), progress=False)
    assert (len(train), len(val)) == (3, 2)
    folder = tmp_path / f"synthetic-{cache_key(face_model, cfg.data, cfg.loss, cfg.preprocess.feature_dilation_px, cfg.render)}"
    assert sorted(os.listdir(folder)) == ["train-3", "val-2"]
    assert (folder / "train-3" / "rgb.npy").is_file()
    again, _ = build_synthetic(face_model, cfg, str(tmp_path), progress=False)
    for key in ("rgb", "parsing", "landmarks", "gt_shape"):
        torch.testing.assert_close(train[1][key], again[1][key])
    changed = _cfg()
    changed.data.synthetic.yaw_jitter_deg = 1.0
    r = cfg.render
    assert cache_key(face_model, changed.data, changed.loss, 5, r) != cache_key(face_model, cfg.data, cfg.loss, 5, r)
    assert cache_key(face_model, cfg.data, cfg.loss, 7, r) != cache_key(face_model, cfg.data, cfg.loss, 5, r)
    no_culling = dataclasses.replace(r, cull_backfaces=False)
    assert cache_key(face_model, cfg.data, cfg.loss, 5, no_culling) != cache_key(face_model, cfg.data, cfg.loss, 5, r)


def test_sample_contract_and_ground_truth(face_model, tmp_path):
    cfg = _cfg(num_train=2, num_val=1)
    train, _ = build_synthetic(face_model, cfg, str(tmp_path), progress=False)
    s = train[1]
    assert s["rgb"].shape == (3, 3, SIZE, SIZE) and 0 <= s["rgb"].min() and s["rgb"].max() <= 1
    assert s["parsing"].dtype == torch.long and s["parsing"].shape == (3, SIZE, SIZE)
    assert s["view_mask"].all() and s["landmarks"].shape == (3, 68, 2)
    assert np.isin(s["skin_weight"].numpy(), np.float32([0.25, 0.5, 0.99])).all()
    # Every view shows a face (skin and at least one feature class) on a background.
    for v in range(3):
        labels = set(s["parsing"][v].unique().tolist())
        assert {0, 1} <= labels and len(labels) >= 4
    # Yaws around -35 / 0 / +35 degrees within the jitter.
    yaw = torch.rad2deg(s["gt_coeffs"]["rotation"][:, 1])
    torch.testing.assert_close(yaw, torch.tensor([-35.0, 0.0, 35.0]), atol=cfg.data.synthetic.yaw_jitter_deg, rtol=0)
    # The mesh, 3D and 2D landmarks are the face model's formation of the coefficients.
    morph = MorphableModel(face_model)
    c = s["gt_coeffs"]
    shape = morph.shape(c["identity"][None], c["expression"][None])[0]
    torch.testing.assert_close(s["gt_shape"], shape, atol=1e-3, rtol=1e-4)
    index, _ = landmark3d_vertices(face_model)
    torch.testing.assert_close(s["landmarks3d"], shape[index])
    verts = rigid_transform(shape[None].expand(3, -1, -1), euler_to_matrix(c["rotation"]), c["translation"])
    lm = project(verts, (SIZE, SIZE))[:, torch.as_tensor(face_model.landmarks68), :2]
    torch.testing.assert_close(s["landmarks"], lm, atol=1e-3, rtol=1e-4)


def test_skin_weight_is_the_preprocessing_map_of_the_parsing(face_model, tmp_path):
    """preprocess.feature_dilation_px scaled to the image size, as for photos, both
    through generate_split and build_synthetic."""
    cfg = _cfg()
    a = generate_split(face_model, cfg.data, cfg.loss, "val", 1,
                          progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    for v in range(a["parsing"].shape[1]):
        expected = skin_attention_weights(a["parsing"][0, v], cfg.loss.skin_weights,
                                          int(round(cfg.preprocess.feature_dilation_px * SIZE / 224)))
        np.testing.assert_array_equal(a["skin_weight"][0, v], expected)
    assert (a["skin_weight"] == np.float32(0.99)).any()
    cfg.preprocess.feature_dilation_px = 20
    _, val = build_synthetic(face_model, cfg, str(tmp_path), progress=False)
    sample = val[0]
    dilation = int(round(20 * SIZE / 224))
    for v in range(sample["parsing"].shape[0]):
        expected = skin_attention_weights(sample["parsing"][v].numpy(), cfg.loss.skin_weights, dilation)
        np.testing.assert_array_equal(sample["skin_weight"][v].numpy(), expected)
    assert (sample["skin_weight"] == 0.99).sum() > (torch.from_numpy(a["skin_weight"][0]) == 0.99).sum()


def test_fresh_training_subjects_every_epoch(face_model, tmp_path):
    """fresh_train: epoch 0 serves the cached pool's subjects, later epochs new ones,
    each determined by (seed, epoch, index); the validation set stays cached."""
    cfg = _cfg(num_train=2, num_val=1)
    cached, _ = build_synthetic(face_model, cfg, str(tmp_path / "a"), progress=False)
    cfg.data.synthetic.fresh_train = True
    fresh, val = build_synthetic(face_model, cfg, str(tmp_path / "b"), progress=False)
    assert len(fresh) == 2 and len(val) == 1
    assert sorted(os.listdir(tmp_path / "b" / os.listdir(tmp_path / "b")[0])) == ["val-1"]
    for key in ("rgb", "skin_weight", "landmarks", "gt_shape"):
        torch.testing.assert_close(fresh[1][key], cached[1][key])
    fresh.set_epoch(1)
    later = fresh[1]
    assert later["name"] == "synthetic-train-0000003"
    assert not torch.equal(later["gt_shape"], cached[1]["gt_shape"])
    direct = generate_split(face_model, cfg.data, cfg.loss, "train", 4, False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)["gt_shape"][3]
    torch.testing.assert_close(later["gt_shape"], torch.from_numpy(direct))
