"""The benchmark's model and data options (issue 19): attention gates off, involution
replaced by 3x3 convolution, no parsing channel, views offered to training, bounded
expression coefficients. Each: the option changes the module or data as documented,
shapes stay, and gradients reach every parameter."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from data.synthetic import build_synthetic, cache_key, generate_split
from lib.config.schema import Config, ModelConfig
from lib.errors import UserError
from lib.facemodel.builtin import build_builtin_face_model
from lib.facemodel.schema import FaceModel
from models.mvrnet import MVRNet
from models.rednet import Involution
from models.unet import AttentionGate

from fakes import fake_face_model

SIZE = 32
TINY = dict(width=0.0625, unet_channels=[64, 128, 256], rednet_layers=[1, 1, 1, 1])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions gain nothing from intra-op threads, and on a shared CPU the
    threads' spin-waiting made these tests 10x slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(**options) -> MVRNet:
    torch.manual_seed(0)
    return MVRNet(ModelConfig(**{**TINY, **options}), fake_face_model(), SIZE)


def inputs(batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 3, SIZE, SIZE, generator=gen), torch.randint(0, 10, (batch, 3, SIZE, SIZE), generator=gen)


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def assert_all_parameters_get_gradients(model: MVRNet) -> None:
    rgb, parsing = inputs()
    out = model.train()(rgb, parsing)
    sum(getattr(out, k).square().sum() for k in ("identity", "expression", "albedo", "lighting", "rotation",
                                                 "translation")).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    # The head weights start tiny, so check that the body's gradients are not all zero.
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("fusion.encoders.0"))


def test_attention_gates_off_concatenates_plain_skips():
    gated, plain = build(), build(attention_gates=False)
    assert count(gated, AttentionGate) == 3 * 2 and count(plain, AttentionGate) == 0
    gate_params = sum(p.numel() for m in gated.modules() if isinstance(m, AttentionGate) for p in m.parameters())
    assert sum(p.numel() for p in gated.parameters()) - sum(p.numel() for p in plain.parameters()) == gate_params
    rgb, parsing = inputs()
    assert plain.eval()(rgb, parsing).identity.shape == gated.eval()(rgb, parsing).identity.shape
    # Ungated, the fused map's skip channels are the encoders' own features, unscaled.
    views = plain.network_input(rgb, parsing)
    features = plain.fusion.encoders[1](views[:, 1])[0]
    fused = plain.fusion(views)
    c = features.shape[1]
    torch.testing.assert_close(fused[:, 2 * c:3 * c], features)
    assert_all_parameters_get_gradients(build(attention_gates=False))


def test_attention_gates_off_still_masks_missing_views():
    plain = build(attention_gates=False).eval()
    rgb, parsing = inputs(batch=1)
    mask = torch.tensor([[False, True, False]])
    other = rgb.clone()
    other[:, 0] = torch.rand_like(other[:, 0])  # the missing view's content must not leak in
    a, b = plain(rgb, parsing, mask), plain(other, parsing, mask)
    torch.testing.assert_close(a.identity, b.identity)


def test_conv3x3_replaces_every_involution():
    inv, conv = build(), build(rednet_op="conv3x3")
    n_inv = count(inv.backbone, Involution)
    assert n_inv == 1 + 4 and count(conv.backbone, Involution) == 0
    spatial = [m for m in conv.backbone.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    # stem: its two ConvModules keep their 3x3 convs, the involution's place adds one
    assert len(spatial) == 2 + n_inv
    strides = sorted(m.stride[0] for m in spatial)
    assert strides.count(2) == 1 + 3  # the stem's first conv, the first block of layers 2-4
    rgb, parsing = inputs()
    assert conv.eval()(rgb, parsing).identity.shape == inv.eval()(rgb, parsing).identity.shape
    assert_all_parameters_get_gradients(build(rednet_op="conv3x3"))
    with pytest.raises(UserError, match="model.rednet_op"):
        build(rednet_op="conv5x5")


def test_no_parsing_channel_reads_rgb_only():
    model = build(parsing_input="none")
    assert model.fusion.encoders[0].stages[0].conv[0].in_channels == 3
    rgb, parsing = inputs()
    model.eval()
    other = torch.randint(0, 10, parsing.shape)
    torch.testing.assert_close(model(rgb, parsing).identity, model(rgb, other).identity)
    label = build(parsing_input="label").eval()
    assert not torch.allclose(label(rgb, parsing).identity, label(rgb, other).identity)
    assert_all_parameters_get_gradients(build(parsing_input="none"))


def test_shared_expression_has_one_head_and_equal_rows():
    shared, per_view = build(expression_per_view=False), build(expression_per_view=True)
    assert len(shared.heads.expression) == 1 and len(per_view.heads.expression) == 3
    rgb, parsing = inputs()
    rows = shared.eval()(rgb, parsing).expression.reshape(2, 3, -1)
    torch.testing.assert_close(rows[:, 0], rows[:, 2])
    assert_all_parameters_get_gradients(build(expression_per_view=False))


def _cfg(**synthetic) -> Config:
    cfg = Config()
    cfg.data.image_size = SIZE
    cfg.data.synthetic = dataclasses.replace(cfg.data.synthetic, num_train=2, num_val=1, **synthetic)
    return cfg


def test_present_views_mask_samples_but_not_the_cache(tmp_path):
    face_model = build_builtin_face_model()
    every, front = _cfg(), _cfg(present_views=[1])
    dilation = every.preprocess.feature_dilation_px
    assert (cache_key(face_model, every.data, every.loss, dilation, every.render)
            == cache_key(face_model, front.data, front.loss, dilation, front.render))
    train, val = build_synthetic(face_model, front, str(tmp_path), progress=False)
    assert train[0]["view_mask"].tolist() == [False, True, False]
    assert val[0]["view_mask"].tolist() == [False, True, False]
    assert train[0]["rgb"].shape[0] == 3  # the other views are stored, only masked
    full, _ = build_synthetic(face_model, every, str(tmp_path), progress=False)
    assert full[0]["view_mask"].all()
    torch.testing.assert_close(full[0]["rgb"], train[0]["rgb"])
    with pytest.raises(UserError, match="present_views"):
        build_synthetic(face_model, _cfg(present_views=[3]), str(tmp_path), progress=False)


def test_one_view_training_loss_ignores_the_masked_views():
    from lib.losses import multiview_losses
    from lib.morphable import MorphableModel

    face_model = build_builtin_face_model()
    cfg = _cfg(present_views=[1])
    arrays = generate_split(face_model, cfg.data, cfg.loss, "val", 1, progress=False,
                             feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    from data.synthetic import SyntheticMultiView

    sample = SyntheticMultiView(arrays, "val", [1])[0]
    batch = {k: v[None] for k, v in sample.items() if torch.is_tensor(v)}
    model = MVRNet(ModelConfig(**TINY), face_model, SIZE).eval()
    morphable = MorphableModel(face_model)
    loss = multiview_losses(morphable, model(batch["rgb"], batch["parsing"], batch["view_mask"]), batch, cfg.loss,
                            cfg.render, True)
    changed = dict(batch, rgb=batch["rgb"].clone())
    changed["rgb"][:, [0, 2]] = torch.rand_like(changed["rgb"][:, [0, 2]])
    again = multiview_losses(morphable, model(changed["rgb"], changed["parsing"], changed["view_mask"]), changed,
                             cfg.loss, cfg.render, True)
    torch.testing.assert_close(loss.total, again.total)


def test_bounded_expressions_are_drawn_inside_the_range(tmp_path):
    base = build_builtin_face_model()
    bounded = base.replace(exp_range=np.array([0.0, 1.0]))
    cfg = _cfg()
    cfg.data.synthetic.exp_std = 0.8
    drawn = generate_split(bounded, cfg.data, cfg.loss, "train", 2, progress=False,
                             feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)["gt_expression"]
    assert drawn.min() == 0.0 and drawn.max() <= 1.0
    assert 0.2 < (drawn > 0).mean() < 0.8  # about half the blendshapes on
    free = generate_split(base, cfg.data, cfg.loss, "train", 2, progress=False,
                             feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)["gt_expression"]
    assert free.min() < 0  # unbounded models keep the normal draw
    dilation = cfg.preprocess.feature_dilation_px
    assert cache_key(bounded, cfg.data, cfg.loss, dilation, cfg.render) != cache_key(base, cfg.data, cfg.loss, dilation, cfg.render)
    bounded.save(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(FaceModel.load(str(tmp_path / "m.npz")).exp_range, [0.0, 1.0])
    assert FaceModel.load(str(tmp_path / "m.npz")).exp_range.dtype == np.float32
    with pytest.raises(UserError, match="exp_range"):
        base.replace(exp_range=np.array([1.0, 0.0]))
