"""Settings that must match the seed's code (weiguangzhao/DF_MVR @ 4d4ae4d, doc/seed.md):
file units, landmark loss form, skin attention, 3D landmarks on the front view,
augmentation, split lists, the two presets."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from PIL import Image

from data.augment import AugmentedViews, augment_views, draw_augmentation
from data.pixel_face import DROPPED_106, discover_pixel_face, read_landmarks106, read_split_list
from lib.config import load_config
from lib.config.schema import AugmentConfig, DataConfig, LossConfig
from lib.errors import UserError
from lib.losses import terms
from lib.losses.total import landmark3d_rows
from lib.units import UnitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------ units
def face_points_mm(seed=0):
    """106 points spread over a 150 x 190 x 90 mm face-sized box."""
    return np.random.default_rng(seed).uniform([-75, -95, 0], [75, 95, 90], size=(106, 3))


@pytest.mark.parametrize("unit, factor", [("dm", 100.0), ("cm", 10.0), ("mm", 1.0), ("m", 1000.0)])
def test_landmarks_converted_from_their_unit(tmp_path, unit, factor):
    points = face_points_mm()
    np.savetxt(tmp_path / "pts.txt", points / factor, fmt="%.10g")
    got = read_landmarks106(str(tmp_path / "pts.txt"), unit)
    np.testing.assert_allclose(got, np.delete(points, DROPPED_106, axis=0), rtol=1e-6)


def test_wrong_unit_is_one_line_that_names_the_fitting_unit(tmp_path):
    np.savetxt(tmp_path / "pts.txt", face_points_mm())  # a file in mm, read as the default dm
    with pytest.raises(UnitError) as err:
        read_landmarks106(str(tmp_path / "pts.txt"))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "pts.txt") in message
    extent = 100 * np.ptp(np.delete(face_points_mm(), DROPPED_106, axis=0), axis=0).max()
    assert f"spans {extent:.4g} mm when read as dm" in message and "set data.pixel_face_unit=mm" in message
    with pytest.raises(UserError, match="data.pixel_face_unit='inch'"):
        read_landmarks106(str(tmp_path / "pts.txt"), "inch")


def make_tree(root, samples, unit_factor=100.0, photo=True):
    """A Pixel-Face tree (split, subject, expression) with 3 empty-photo views and a
    landmark file in 1/unit_factor mm units (100: the released decimetres)."""
    for split, subject, expression in samples:
        base = os.path.join(root, split, subject, expression, "Images")
        for v in range(3):
            os.makedirs(os.path.join(base, str(v)))
            if photo:
                Image.new("RGB", (8, 8)).save(os.path.join(base, str(v), "t.jpg"))
        os.makedirs(os.path.join(base, "fusion"))
        np.savetxt(os.path.join(base, "fusion", "nicp_106_pts.txt"), face_points_mm() / unit_factor)


def test_tree_in_the_wrong_unit_stops_discovery(tmp_path):
    make_tree(str(tmp_path), [("train", "s1", "01"), ("train", "s2", "01")], unit_factor=1.0)
    with pytest.raises(UnitError, match="set data.pixel_face_unit=mm"):
        discover_pixel_face(DataConfig(root=str(tmp_path)), "train")
    groups, problems = discover_pixel_face(DataConfig(root=str(tmp_path), pixel_face_unit="mm"), "train")
    assert len(groups) == 2 and not problems


# ------------------------------------------------------------------ split lists
def test_seed_split_lists_select_samples_and_report_missing(tmp_path):
    make_tree(str(tmp_path / "pf"), [("train", "00217", "04"), ("train", "00217", "05"), ("val", "00300", "01")])
    lists = tmp_path / "list_txt"
    lists.mkdir()
    np.save(lists / "shallow_path_train.npy",
            np.array(["dataset/pixel_face/train/00217/04/Images", "dataset/pixel_face/train/00999/01/Images"]))
    np.save(lists / "shallow_path_val.npy", np.array(["dataset/pixel_face/val/00300/01/Images"]))
    data = DataConfig(root=str(tmp_path / "pf"), pixel_face_lists=str(lists))
    groups, problems = discover_pixel_face(data, "train")
    assert [g.name for g in groups] == ["00217/04"]
    assert len(problems) == 1 and "00999/01/Images" in problems[0][0] and "listed in shallow_path_train.npy" in problems[0][1]
    assert [g.name for g in discover_pixel_face(data, "val")[0]] == ["00300/01"]
    np.save(lists / "shallow_path_val.npy", np.array([{"a": 1}], dtype=object))  # pickled objects: refused
    with pytest.raises(UserError, match="shallow_path_val.npy: not a numpy array of path strings"):
        read_split_list(str(lists), "val")


# ------------------------------------------------------------------- loss forms
def seed_landmark_loss(pred, target, weight):
    """network/MVRnet.py:160-166 written out: per view sum(|p - t| * w) / (B * 68),
    averaged over the 3 views; pred, target [B, 3, 68, 2] px at 224."""
    per_view = [(torch.norm(pred[:, v] - target[:, v], dim=2) * weight).sum() / (pred.shape[0] * 68) for v in range(3)]
    return sum(per_view) / 3.0


def test_unsquared_landmark_loss_is_the_seeds():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 68, 2, generator=gen) * 224
    pred = target + torch.randn(2, 3, 68, 2, generator=gen) * 3
    weight = torch.cat([torch.ones(28), 20 * torch.ones(3), torch.ones(5), 20 * torch.ones(12), torch.ones(12),
                        20 * torch.ones(8)])  # MVRnet.py:160-161
    assert torch.equal(terms.landmark_weights(20.0), weight)
    ours = terms.landmark_loss(pred.reshape(6, 68, 2), target.reshape(6, 68, 2), weight, 224, distance="unsquared")
    assert ours.item() == pytest.approx(seed_landmark_loss(pred, target, weight).item(), rel=1e-6)
    # At half resolution pixel offsets count double (measured at 224 px), as for the squared form.
    half = terms.landmark_loss(pred.reshape(6, 68, 2) / 2, target.reshape(6, 68, 2) / 2, weight, 112, distance="unsquared")
    assert half.item() == pytest.approx(ours.item(), rel=1e-6)
    with pytest.raises(UserError, match="loss.landmark_distance"):
        terms.landmark_loss(pred[0], target[0], weight, 224, distance="cubic")


def test_3d_landmarks_on_the_front_view_only():
    assert landmark3d_rows("front", 2, 3).tolist() == [False, True, False, False, True, False]
    assert landmark3d_rows("all", 1, 3).tolist() == [True, True, True]
    with pytest.raises(UserError, match="loss.landmark3d_views"):
        landmark3d_rows("left", 1, 3)


def test_skin_attention_is_the_seeds_32_128_254():
    weights = np.array(LossConfig().skin_weights) * 255  # dataset_preprocess.py:555-563
    np.testing.assert_allclose(weights, [32, 128, 254])


# ----------------------------------------------------------------- augmentation
def sample(views=3, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (1, 3, size, size), generator=gen).float().div(255).expand(views, -1, -1, -1).clone()
    return {"rgb": rgb, "view_mask": torch.tensor([True, True, False][:views]), "name": "s"}


class Samples(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return sample(seed=index)


def test_augmentation_same_for_the_views_seeded_and_reproducible():
    cfg = AugmentConfig(enabled=True)
    data = AugmentedViews(Samples(), cfg, seed=22)
    first = data[1]
    assert torch.equal(first["rgb"][0], first["rgb"][1])  # identical views stay identical: one draw
    assert not torch.equal(first["rgb"][0], sample(seed=1)["rgb"][0])
    assert torch.equal(first["rgb"][2], sample(seed=1)["rgb"][2])  # a missing view is left as it is
    assert torch.equal(data[1]["rgb"], first["rgb"])  # same (seed, epoch, index): same draw
    data.set_epoch(1)
    assert not torch.equal(data[1]["rgb"], first["rgb"])
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2, collate_fn=lambda s: s)
    in_workers = [s["rgb"] for batch in loader for s in batch]
    assert all(torch.equal(a, data[i]["rgb"]) for i, a in enumerate(in_workers))


def test_augmentation_factors_and_blur_rate():
    cfg = AugmentConfig()
    draws = [draw_augmentation(np.random.default_rng([22, 0, i]), cfg) for i in range(400)]
    factors = np.array([f for f, _ in draws])
    assert factors.min() >= 0.5 and factors.max() <= 1.5 and abs(factors.mean() - 1.0) < 0.05
    assert abs(np.mean([b for _, b in draws]) - 0.3) < 0.06  # blur with p = 0.3


def test_brightness_alone_scales_pixels():
    cfg = AugmentConfig(enabled=True, contrast=0.0, saturation=0.0, sharpness=0.0, blur_prob=0.0)
    s = sample()
    rng = np.random.default_rng(5)
    factor = draw_augmentation(np.random.default_rng(5), cfg)[0][0]
    out = augment_views(s["rgb"], s["view_mask"], rng, cfg)
    expected = (s["rgb"][0] * 255 * factor).clamp(max=255) / 255
    assert (out[0] - expected).abs().max().item() <= 1.0 / 255 + 1e-6


# ---------------------------------------------------------------------- presets
def test_seed_preset_and_per_view_variant_differ_only_in_expression():
    seed = dataclasses.asdict(load_config(os.path.join(ROOT, "configs", "pixel_face.yaml")))
    per_view = dataclasses.asdict(load_config(os.path.join(ROOT, "configs", "pixel_face_per_view.yaml")))
    differences = {f"{section}.{key}" for section in seed for key in seed[section]
                   if seed[section][key] != per_view[section][key]}
    assert differences == {"model.expression_per_view", "loss.landmark3d_views"}
    assert seed["model"]["expression_per_view"] is False and seed["loss"]["landmark3d_views"] == "front"
    assert (seed["loss"]["photometric"], seed["loss"]["landmark"], seed["loss"]["landmark_distance"]) == (
        24.0, 0.02, "unsquared")
    assert seed["train"]["batch_size"] == 24 and seed["train"]["amp"] is False and seed["data"]["augment"]["enabled"]
