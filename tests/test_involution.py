"""Involution op: the unfold reference against a per-pixel loop and hand cases, the lean
implementation against the reference (outputs and gradients), AMP, option handling."""
import pytest
import torch

from lib.errors import UserError
from lib.ops import (
    AUTO_UNFOLD_LIMIT,
    SMALL_MAP_PIXELS,
    SMALL_MAP_UNFOLD_LIMIT,
    involution,
    involution_lean,
    involution_output_size,
    involution_unfold,
    resolve_implementation,
)
from models.rednet import Involution


def slow_involution(x, weight, k, stride):
    """Literal per-output-pixel sum of the definition (zero padding (k-1)/2)."""
    b, c, h, w = x.shape
    ho, wo = involution_output_size(h, w, stride)
    groups = weight.shape[1] // (k * k)
    kernel = weight.view(b, groups, k, k, ho, wo)
    pad = (k - 1) // 2
    out = torch.zeros(b, c, ho, wo, dtype=x.dtype)
    for ch in range(c):
        g = ch // (c // groups)
        for i in range(ho):
            for j in range(wo):
                for p in range(k):
                    for q in range(k):
                        y, xx = i * stride + p - pad, j * stride + q - pad
                        if 0 <= y < h and 0 <= xx < w:
                            out[:, ch, i, j] += kernel[:, g, p, q, i, j] * x[:, ch, y, xx]
    return out


def random_case(b, c, h, w, k, stride, groups, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ho, wo = involution_output_size(h, w, stride)
    x = torch.randn(b, c, h, w, dtype=dtype, generator=gen)
    weight = torch.randn(b, groups * k * k, ho, wo, dtype=dtype, generator=gen)
    return x, weight


@pytest.mark.parametrize("stride", [1, 2])
def test_reference_matches_the_definition(stride):
    x, weight = random_case(2, 4, 5, 6, 3, stride, groups=2)
    torch.testing.assert_close(involution_unfold(x, weight, 3, stride), slow_involution(x, weight, 3, stride))


def test_hand_cases_centre_and_shift_taps():
    x = torch.arange(2 * 5 * 7, dtype=torch.float64).view(1, 2, 5, 7)
    centre = torch.zeros(1, 9, 5, 7, dtype=torch.float64)
    centre[:, 4] = 1.0  # tap (1, 1): the pixel itself
    for fn in (involution_unfold, involution_lean):
        torch.testing.assert_close(fn(x, centre, 3, 1), x)
        torch.testing.assert_close(fn(x, centre[..., ::2, ::2], 3, 2), x[..., ::2, ::2])
    right = torch.zeros(1, 9, 5, 7, dtype=torch.float64)
    right[:, 5] = 2.0  # tap (1, 2): twice the right neighbour, zero past the border
    expected = torch.zeros_like(x)
    expected[..., :-1] = 2.0 * x[..., 1:]
    for fn in (involution_unfold, involution_lean):
        torch.testing.assert_close(fn(x, right, 3, 1), expected)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "shape, k, groups",
    [((2, 8, 9, 7), 3, 1), ((1, 8, 11, 10), 7, 2), ((2, 12, 7, 13), 5, 3), ((1, 32, 6, 6), 7, 2), ((1, 4, 5, 5), 3, 4),
     ((1, 4, 1, 3), 3, 2), ((1, 2, 2, 1), 7, 1)],
)
def test_lean_matches_reference_outputs_and_gradients(shape, k, groups, stride):
    x, weight = random_case(*shape, k, stride, groups)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    ref = involution_unfold(x, weight, k, stride)
    lean = involution_lean(x, weight, k, stride)
    assert lean.shape == ref.shape == (shape[0], shape[1], *involution_output_size(*shape[2:], stride))
    torch.testing.assert_close(lean, ref, atol=1e-5, rtol=0)
    upstream = torch.randn_like(ref)
    grads_ref = torch.autograd.grad(ref, (x, weight), upstream)
    grads_lean = torch.autograd.grad(lean, (x, weight), upstream)
    for g_lean, g_ref in zip(grads_lean, grads_ref):
        torch.testing.assert_close(g_lean, g_ref, atol=1e-5, rtol=0)


def test_lean_matches_reference_in_float32():
    x, weight = random_case(2, 16, 14, 14, 7, 2, groups=1, dtype=torch.float32)
    torch.testing.assert_close(involution_lean(x, weight, 7, 2), involution_unfold(x, weight, 7, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_lean_gradcheck(stride):
    x, weight = random_case(1, 4, 5, 4, 3, stride, groups=2)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: involution_lean(a, b, 3, stride), (x, weight))


def test_channels_last_inputs():
    x, weight = random_case(2, 32, 8, 8, 7, 1, groups=2)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(involution_lean(x_cl, weight, 7, 1), involution_unfold(x, weight, 7, 1))


def test_lean_does_not_modify_its_inputs():
    x, weight = random_case(1, 4, 6, 6, 3, 1, groups=1, dtype=torch.float32)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    x0, w0 = x.detach().clone(), weight.detach().clone()
    out = involution_lean(x, weight, 3, 1)
    upstream = torch.ones_like(out)
    torch.autograd.grad(out, (x, weight), upstream)
    assert torch.equal(x, x0) and torch.equal(weight, w0) and torch.equal(upstream, torch.ones_like(out))


@pytest.mark.parametrize("implementation", ["unfold", "lean"])
def test_autocast_bf16_on_cpu(implementation):
    torch.manual_seed(0)
    layer = Involution(16, 7, 2, implementation)
    x = torch.randn(2, 16, 9, 9, requires_grad=True)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.shape == (2, 16, 5, 5) and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)  # bf16 kernels
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_module_implementations_agree_including_odd_sizes():
    torch.manual_seed(0)
    lean = Involution(32, 7, 2, "lean").double()
    ref = Involution(32, 7, 2, "unfold").double()
    ref.load_state_dict(lean.state_dict())
    x = torch.randn(2, 32, 7, 9, dtype=torch.float64)
    out = lean(x)
    assert out.shape == (2, 32, 4, 5)
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=0)


def test_option_resolution():
    big_map = SMALL_MAP_PIXELS + 1
    assert resolve_implementation("auto", AUTO_UNFOLD_LIMIT, big_map) == "lean"
    assert resolve_implementation("auto", AUTO_UNFOLD_LIMIT - 1, big_map) == "unfold"
    assert resolve_implementation("auto", SMALL_MAP_UNFOLD_LIMIT - 1, SMALL_MAP_PIXELS) == "unfold"
    assert resolve_implementation("auto", SMALL_MAP_UNFOLD_LIMIT, SMALL_MAP_PIXELS) == "lean"
    assert resolve_implementation("unfold", 10**9, big_map) == "unfold"
    assert resolve_implementation("lean", 1, 1) == "lean"
    with pytest.raises(UserError, match="model.involution 'fast'"):
        resolve_implementation("fast", 1, 1)
    with pytest.raises(UserError, match="triton"):
        resolve_implementation("triton", 1, 1)
    x, weight = random_case(1, 2, 4, 4, 3, 1, groups=1)
    torch.testing.assert_close(involution(x, weight, 3), involution_unfold(x, weight, 3))


def test_bad_weight_shape_is_rejected():
    x, weight = random_case(1, 4, 6, 6, 3, 1, groups=1)
    with pytest.raises(ValueError, match="weight must be"):
        involution_lean(x, weight[..., :5], 3, 1)
