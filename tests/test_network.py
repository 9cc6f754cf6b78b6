"""MVRNet: shapes, finiteness, the seed's parameter count, initial prediction, row layout,
missing views, attention-gate gradients, config and input errors."""
import math

import pytest
import torch

from lib.config.schema import ModelConfig
from lib.errors import UserError
from models.mvrnet import MVRNet, source_views
from models.unet import AttentionGate

from fakes import fake_face_model

SIZE = 64  # smallest convenient input: 4 UNet poolings, RedNet down to 2 x 2
TINY = dict(width=0.0625)


def make_inputs(batch, views=3, size=SIZE, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, views, 3, size, size, generator=gen)
    parsing = torch.randint(0, 10, (batch, views, size, size), generator=gen)
    return rgb, parsing


def build(face_model=None, **model_kwargs):
    torch.manual_seed(0)
    return MVRNet(ModelConfig(**model_kwargs), face_model or fake_face_model(), SIZE)


@pytest.fixture(scope="module")
def full_model():
    return build(expression_per_view=False)


# --- the seed's parameter count, from its architecture definition (network/Tri_Unet.py,
# network/Rednet.py, mmcv ConvModule: bias only without a norm layer) ---------------------


def conv(cin, cout, k=1, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):
    return 2 * c


def double_conv(cin, cout):
    return conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)


def attention_block(f_g, f_l, f_int):
    return conv(f_g, f_int) + bn(f_int) + conv(f_l, f_int) + bn(f_int) + conv(f_int, 1) + bn(1)


def seed_tri_unet():
    """Tri_UNet(4, 64) parameters used by its forward (its conv9 is built but never called)."""
    encoder = double_conv(4, 64) + double_conv(64, 128) + double_conv(128, 256)
    encoder += double_conv(256, 512) + double_conv(512, 1024)
    ups = sum(2 * 2 * cin * cout + cout for cin, cout in [(3072, 512), (512, 256), (256, 128), (128, 64)])
    decoder = double_conv(2048, 512) + double_conv(1024, 256) + double_conv(512, 128)
    gates = 3 * sum(attention_block(f, f, f // 2) for f in (64, 128, 256, 512))
    return 3 * encoder + ups + decoder + gates


def seed_involution(c, k):
    groups = c // 16
    return conv(c, c // 4, bias=False) + bn(c // 4) + conv(c // 4, k * k * groups)


def seed_bottleneck(cin, cout, stride):
    mid = cout // 4
    total = conv(cin, mid, bias=False) + bn(mid) + seed_involution(mid, 7) + bn(mid)
    total += conv(mid, cout, bias=False) + bn(cout)
    if stride != 1 or cin != cout:
        total += conv(cin, cout, bias=False) + bn(cout)
    return total


def seed_rednet50():
    """RedNet(depth=50, in_channels=256) without its pts_net MLP (built but never called)."""
    stem = conv(256, 32, 3, bias=False) + bn(32) + seed_involution(32, 3) + bn(32)
    stem += conv(32, 64, 3, bias=False) + bn(64)
    total, cin = stem, 64
    for i, blocks in enumerate((3, 4, 6, 3)):
        cout = 256 * 2**i
        total += seed_bottleneck(cin, cout, 1 if i == 0 else 2)
        total += (blocks - 1) * seed_bottleneck(cout, cout, 1)
        cin = cout
    return total


def seed_heads():
    """RedNet_FC's 1x1 heads: id 80, exp 64 (shared), color 80, gamma 27; per view
    rotate 3, offset_xy 2, offset_z 1."""
    return sum(conv(2048, k) for k in (80, 64, 80, 27)) + 3 * sum(conv(2048, k) for k in (3, 2, 1))


def test_parameter_count_equals_the_seed(full_model):
    seed_used = seed_tri_unet() + seed_rednet50() + seed_heads()
    ours = sum(p.numel() for p in full_model.parameters())
    assert ours == seed_used
    per_view = build(width=0.0625, expression_per_view=True)
    shared = build(width=0.0625, expression_per_view=False)
    extra = sum(p.numel() for p in per_view.parameters()) - sum(p.numel() for p in shared.parameters())
    assert extra == 2 * conv(128, 64)  # two more expression heads at width 1/16 (128 features)


def test_sections_match_the_seed(full_model):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full_model.fusion) == seed_tri_unet()
    assert count(full_model.backbone) == seed_rednet50()
    assert count(full_model.heads) == seed_heads()
    assert full_model.fusion.out_channels == 256 and full_model.backbone.out_channels == 2048


def check_coefficients(coeffs, rows, face_model):
    expected = {
        "identity": face_model.num_id,
        "expression": face_model.num_exp,
        "albedo": face_model.num_tex,
        "rotation": 3,
        "translation": 3,
        "lighting": 27,
    }
    for key, value in coeffs.as_dict().items():
        assert value.shape == (rows, expected[key]), key
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), key


def test_full_width_shapes_and_initial_prediction(full_model):
    rgb, parsing = make_inputs(1)
    with torch.no_grad():
        coeffs = full_model(rgb, parsing)
    check_coefficients(coeffs, 3, fake_face_model())
    # The mean face, frontal, at the canonical placement (not a collapsed or wild pose).
    assert coeffs.rotation.abs().max() < math.radians(1.0)
    assert coeffs.translation.abs().max() < 1.0  # mm
    for key in ("identity", "expression", "albedo", "lighting"):
        assert getattr(coeffs, key).abs().max() < 0.05, key


@pytest.mark.parametrize("present", [[True, True, True], [False, True, False], [True, False, True], [True, False, False]])
def test_tiny_width_missing_views_shapes_and_finiteness(present):
    model = build(**TINY)
    face_model = fake_face_model()
    rgb, parsing = make_inputs(2)
    mask = torch.tensor([present, [True, True, True]])
    coeffs = model(rgb, parsing, mask)
    check_coefficients(coeffs, 6, face_model)
    assert coeffs.rotation.abs().max() < math.radians(1.0) and coeffs.translation.abs().max() < 1.0


def test_ict_sized_heads():
    model = build(fake_face_model(num_id=100, num_exp=53, num_tex=80), **TINY)
    coeffs = model(*make_inputs(1))
    assert coeffs.identity.shape == (3, 100) and coeffs.expression.shape == (3, 53)


def test_row_layout_and_pose_parametrisation():
    model = build(**TINY).eval()
    limit = math.radians(90.0)
    with torch.no_grad():
        for v, head in enumerate(model.heads.rotation):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.1 * (v + 1), -0.2, 0.0]))
        for v, head in enumerate(model.heads.translation):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.0, 0.0, 100.0 * (v + 1)]))  # saturates
        coeffs = model(*make_inputs(2))
    rot = coeffs.rotation.view(2, 3, 3)  # row b * V + v
    for v in range(3):
        torch.testing.assert_close(rot[:, v, 0], torch.full((2,), limit * math.tanh(0.1 * (v + 1))))
    torch.testing.assert_close(coeffs.translation[:, 2], torch.full((6,), 200.0))  # bounded by the limit
    shared = coeffs.identity.view(2, 3, -1)
    assert torch.equal(shared[:, 0], shared[:, 1]) and torch.equal(shared[:, 0], shared[:, 2])
    assert not torch.equal(shared[0, 0], shared[1, 0])  # different samples, different faces


def test_expression_shared_or_per_view():
    rgb, parsing = make_inputs(1)
    shared = build(expression_per_view=False, **TINY)(rgb, parsing).expression
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[0], shared[2])
    per_view = build(expression_per_view=True, **TINY)(rgb, parsing).expression
    assert not torch.equal(per_view[0], per_view[1])


def test_parsing_input_label_or_one_hot():
    rgb, parsing = make_inputs(1)
    label = build(**TINY)
    one_hot = build(parsing_input="one_hot", **TINY)
    x = label.network_input(rgb, parsing)
    assert x.shape == (1, 3, 4, SIZE, SIZE) and torch.equal(x[:, :, 3], parsing.float())
    y = one_hot.network_input(rgb, parsing)
    assert y.shape == (1, 3, 13, SIZE, SIZE) and torch.equal(y[:, :, :3], x[:, :, :3])
    # Channel 3 + c is 1 exactly where the label is c.
    for c in (0, 4, 9):
        assert torch.equal(y[:, :, 3 + c], (parsing == c).float())
    assert torch.equal(y[:, :, 3:].sum(2), torch.ones_like(parsing, dtype=torch.float32))
    assert one_hot.fusion.encoders[0].stages[0].conv[0].in_channels == 13
    check_coefficients(one_hot(rgb, parsing), 3, fake_face_model())
    with pytest.raises(UserError, match="model.parsing_input"):
        build(parsing_input="rgb", **TINY)


def test_source_views():
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, True], [True, False, False], [False, True, False]])
    expected = torch.tensor([[0, 1, 2], [0, 0, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1]])
    assert torch.equal(source_views(mask), expected)


def test_missing_view_content_is_ignored_and_rows_copy_the_source():
    model = build(**TINY).eval()
    rgb, parsing = make_inputs(1)
    mask = torch.tensor([[True, True, False]])
    other_rgb = rgb.clone()
    other_rgb[:, 2] = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        a = model(rgb, parsing, mask)
        b = model(other_rgb, parsing, mask)
        full = model(rgb, parsing)
    for key, value in a.as_dict().items():
        assert torch.equal(value, getattr(b, key)), key
    for key in ("rotation", "translation", "expression"):
        assert torch.equal(getattr(a, key)[2], getattr(a, key)[1]), key  # copied from the front
    assert not torch.equal(a.identity, full.identity)  # the missing view really changed the fusion


def test_attention_gates_receive_gradients():
    model = build(**TINY)
    coeffs = model(*make_inputs(2))
    loss = sum(v.square().sum() for v in coeffs.as_dict().values())
    loss.backward()
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 4 * 3
    for gate in gates:
        for name, p in gate.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert gate.W_g[0].weight.grad.abs().sum() > 0 and gate.W_x[0].weight.grad.abs().sum() > 0
        assert gate.psi[0].weight.grad.abs().sum() > 0


def test_autocast_bf16_forward_and_backward():
    model = build(**TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        coeffs = model(*make_inputs(2))
    check_coefficients(coeffs, 6, fake_face_model())
    coeffs.identity.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_implementations_give_the_same_network_output():
    rgb, parsing = make_inputs(1)
    lean = build(involution="lean", **TINY).eval()
    unfold = build(involution="unfold", **TINY).eval()
    unfold.load_state_dict(lean.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(lean(rgb, parsing).identity, unfold(rgb, parsing).identity, atol=1e-6, rtol=1e-4)


def test_input_does_not_modify_callers_tensors():
    model = build(**TINY)
    rgb, parsing = make_inputs(1)
    rgb0, parsing0 = rgb.clone(), parsing.clone()
    model(rgb, parsing, torch.tensor([[False, True, True]]))
    assert torch.equal(rgb, rgb0) and torch.equal(parsing, parsing0)


@pytest.mark.parametrize(
    "kwargs, size, message",
    [
        (dict(fused_channels=128), SIZE, "model.fused_channels=128"),
        (dict(involution="fast"), SIZE, "model.involution 'fast'"),
        (dict(involution="triton"), SIZE, "model.involution=triton"),
        (dict(rednet_layers=[3, 4, 6, 3, 2]), SIZE, "model.rednet_layers"),
        (dict(width=0.0), SIZE, "model.width"),
        ({}, 60, "data.image_size=60 must be divisible by 16"),
    ],
)
def test_bad_config_is_a_user_error(kwargs, size, message):
    with pytest.raises(UserError, match=message):
        MVRNet(ModelConfig(**kwargs), fake_face_model(), size)


def test_bad_inputs_are_user_errors():
    model = build(**TINY)
    rgb, parsing = make_inputs(1)
    with pytest.raises(UserError, match="rgb must be"):
        model(rgb[:, :2], parsing[:, :2])
    with pytest.raises(UserError, match="parsing must be"):
        model(rgb, parsing[..., :32])
    with pytest.raises(UserError, match="at least one present view"):
        model(rgb, parsing, torch.zeros(1, 3, dtype=torch.bool))


def test_fewer_views_configured():
    model = MVRNet(ModelConfig(num_views=1, fused_channels=128, **TINY), fake_face_model(), SIZE)
    coeffs = model(*make_inputs(2, views=1))
    check_coefficients(coeffs, 2, fake_face_model())
