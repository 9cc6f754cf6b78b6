"""Involution (Li et al., "Involution: Inverting the Inherence of Convolution", CVPR 2021).

An involution applies, at every output pixel, a K x K kernel that is generated for that
pixel and shared by the C / G channels of a group:

    out[b, c, i, j] = sum_{p, q} weight[b, g(c), p, q, i, j] * x_pad[b, c, i*s + p, j*s + q]

with g(c) = c // (C / G), stride s and P = (K - 1) // 2 zero padding on each side.

Shapes (everywhere in this module):
    x       [B, C, H, W]
    weight  [B, G * K * K, Ho, Wo], channel index g * K * K + p * K + q (the layout of the
            kernel-generating 1x1 convolution; the seed views it as [B, G, K, K, Ho, Wo])
    out     [B, C, Ho, Wo], Ho = (H - 1) // s + 1, Wo = (W - 1) // s + 1

Implementations (`IMPLEMENTATIONS`):
    unfold  the reference of the original PyTorch path: `F.unfold` materialises a
            [B, C * K * K, Ho * Wo] tensor (49x the input for K = 7), then multiplies and
            sums. Simple and obviously right; slow and memory hungry.
    lean    a custom autograd Function that accumulates the K * K shifted products
            in place (`addcmul_` of a strided window of the padded input with one kernel
            tap). Its backward recomputes windows the same way, so neither pass ever holds
            more than one padded copy of the input plus output-sized temporaries.
            First-order gradients only (no double backward).
    auto    `unfold` for small calls (see `resolve_implementation`: where it is faster
            and its memory negligible), `lean` otherwise.
    triton  reserved for a fused CUDA kernel; not built into this version (UserError).

Both paths compute in the promoted dtype of (x, weight), so they work under
`torch.autocast` (bf16 on CPU, fp16/bf16 on CUDA), where the kernel weights usually come
from a bf16 convolution while x comes from a float32 batch norm.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lib.errors import UserError

IMPLEMENTATIONS = ("auto", "unfold", "lean", "triton")
# 'auto' takes unfold below this many unfolded elements (4 MiB in float32), and for maps
# of at most SMALL_MAP_PIXELS output pixels below SMALL_MAP_UNFOLD_LIMIT (32 MiB): the
# measured CPU crossovers of forward+backward time (bench/involution.py, doc/network.md).
AUTO_UNFOLD_LIMIT = 2**20
SMALL_MAP_PIXELS = 64
SMALL_MAP_UNFOLD_LIMIT = 2**23


def involution_output_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """Output (Ho, Wo) of an odd-K involution with 'same' padding: ceil(size / stride)."""
    return (height - 1) // stride + 1, (width - 1) // stride + 1


def _check(x: torch.Tensor, weight: torch.Tensor, kernel_size: int, stride: int) -> tuple[int, int, int, int]:
    """Validate shapes; return (groups, channels per group, Ho, Wo)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"involution: kernel_size must be odd, got {kernel_size}")
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"involution: x and weight must be 4-D, got {tuple(x.shape)} and {tuple(weight.shape)}")
    taps = kernel_size * kernel_size
    b, c, h, w = x.shape
    ho, wo = involution_output_size(h, w, stride)
    if weight.shape[1] % taps or weight.shape[0] != b or tuple(weight.shape[2:]) != (ho, wo):
        raise ValueError(
            f"involution: weight must be [{b}, G*{taps}, {ho}, {wo}] for x {tuple(x.shape)} "
            f"and stride {stride}, got {tuple(weight.shape)}"
        )
    groups = weight.shape[1] // taps
    if c % groups:
        raise ValueError(f"involution: {c} channels are not divisible into {groups} groups")
    return groups, c // groups, ho, wo


def involution_unfold(x: torch.Tensor, weight: torch.Tensor, kernel_size: int, stride: int = 1) -> torch.Tensor:
    """Reference involution through `F.unfold` (see the module docstring for shapes)."""
    groups, per_group, ho, wo = _check(x, weight, kernel_size, stride)
    dtype = torch.promote_types(x.dtype, weight.dtype)
    b, c = x.shape[:2]
    taps = kernel_size * kernel_size
    cols = F.unfold(x.to(dtype), kernel_size, padding=(kernel_size - 1) // 2, stride=stride)
    cols = cols.view(b, groups, per_group, taps, ho, wo)
    kernel = weight.to(dtype).reshape(b, groups, 1, taps, ho, wo)
    return (cols * kernel).sum(dim=3).reshape(b, c, ho, wo)


def _phase_extent(size: int, pad: int, stride: int, phase: int) -> tuple[int, int, int, int]:
    """Along one axis of length `size` padded by `pad`: phase `phase` (padded indices
    phase, phase + s, ...) = `lead` zeros, then x[start::s] (`count` values), then
    zeros up to `total`. Returns (start, lead, count, total)."""
    lead = max(0, -((phase - pad) // stride))
    start = phase + stride * lead - pad
    count = len(range(start, size, stride))
    total = len(range(phase, size + 2 * pad, stride))
    return start, lead, count, total


def _padded_phases(x: torch.Tensor, pad: int, stride: int, groups: int) -> dict[tuple[int, int], torch.Tensor]:
    """Polyphase split of the zero-padded, grouped map of x [B, C, H, W]: (a, b) ->
    padded[..., a::s, b::s] as a contiguous [B, G, C/G, h_a, w_b], built straight from x
    (the padded map itself is never allocated). Every tap window of a strided involution
    is then a unit-stride slice of one phase; strided reads and writes are several
    times slower on CPU. Stride 1: one phase, the padded map."""
    b, c, h, w = x.shape
    phases = {}
    for i in range(stride):
        top, lead_h, count_h, total_h = _phase_extent(h, pad, stride, i)
        for j in range(stride):
            left, lead_w, count_w, total_w = _phase_extent(w, pad, stride, j)
            source = x[..., top::stride, left::stride]
            padding = (lead_w, total_w - lead_w - count_w, lead_h, total_h - lead_h - count_h)
            phases[(i, j)] = F.pad(source, padding).reshape(b, groups, c // groups, total_h, total_w)
    return phases


def _phase_gradients(like: torch.Tensor, h: int, w: int, pad: int, stride: int) -> dict[tuple[int, int], torch.Tensor]:
    """Zero buffers shaped like `_padded_phases` of a [B, G, C/G, h, w] map."""
    shape = like.shape[:3]
    return {
        (i, j): like.new_zeros(*shape, _phase_extent(h, pad, stride, i)[3], _phase_extent(w, pad, stride, j)[3])
        for i in range(stride)
        for j in range(stride)
    }


def _unphase(phases: dict, out: torch.Tensor, pad: int, stride: int) -> torch.Tensor:
    """Write the un-padded part of each phase back into out [B, G, C/G, h, w] (inverse of
    `_padded_phases` without the padding); returns out."""
    h, w = out.shape[-2:]
    for (i, j), phase in phases.items():
        top, lead_h, count_h, _ = _phase_extent(h, pad, stride, i)
        left, lead_w, count_w, _ = _phase_extent(w, pad, stride, j)
        out[..., top::stride, left::stride] = phase[..., lead_h : lead_h + count_h, lead_w : lead_w + count_w]
    return out


def _window(phases: dict, p: int, q: int, stride: int, ho: int, wo: int) -> torch.Tensor:
    """View [..., Ho, Wo] of the padded map read by kernel tap (p, q) at every output pixel."""
    plane = phases[(p % stride, q % stride)]
    return plane[..., p // stride : p // stride + ho, q // stride : q // stride + wo]


class _LeanInvolution(torch.autograd.Function):
    """Shifted-product involution; saves only (x, weight) for backward.

    Works on grouped views: maps [B, G, C/G, h, w], kernels [B, G, K*K, Ho, Wo], so each
    tap's kernel [B, G, 1, Ho, Wo] broadcasts over the channels of its group.
    """

    @staticmethod
    def forward(ctx, x, weight, kernel_size: int, stride: int):
        groups, per_group, ho, wo = _check(x, weight, kernel_size, stride)
        dtype = torch.promote_types(x.dtype, weight.dtype)
        b, c = x.shape[:2]
        pad = (kernel_size - 1) // 2
        phases = _padded_phases(x.to(dtype), pad, stride, groups)
        kernels = weight.to(dtype).reshape(b, groups, kernel_size * kernel_size, ho, wo)
        out = kernels.new_zeros(b, groups, per_group, ho, wo)
        for p in range(kernel_size):
            for q in range(kernel_size):
                tap = kernels[:, :, p * kernel_size + q, None]
                out.addcmul_(_window(phases, p, q, stride, ho, wo), tap)
        ctx.save_for_backward(x, weight)
        ctx.geometry = (kernel_size, stride, groups, per_group, ho, wo)
        return out.view(b, c, ho, wo)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        k, stride, groups, per_group, ho, wo = ctx.geometry
        dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), grad_out.dtype)
        b, c, h, w = x.shape
        pad = (k - 1) // 2
        grad = grad_out.to(dtype).reshape(b, groups, per_group, ho, wo)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # Scatter-add each tap's contribution into the phases of a padded buffer, then
            # drop the padding while interleaving the phases back.
            kernels = weight.to(dtype).reshape(b, groups, k * k, ho, wo)
            phases = _phase_gradients(grad, h, w, pad, stride)
            for p in range(k):
                for q in range(k):
                    _window(phases, p, q, stride, ho, wo).addcmul_(grad, kernels[:, :, p * k + q, None])
            grad_x = _unphase(phases, grad.new_empty(b, groups, per_group, h, w), pad, stride)
            grad_x = grad_x.view(b, c, h, w).to(x.dtype)
        if ctx.needs_input_grad[1]:
            phases = _padded_phases(x.to(dtype), pad, stride, groups)
            grad_weight = grad.new_empty(b, groups, k * k, ho, wo)
            product = torch.empty_like(grad)  # reused by every tap
            for p in range(k):
                for q in range(k):
                    torch.mul(grad, _window(phases, p, q, stride, ho, wo), out=product)
                    torch.sum(product, dim=2, out=grad_weight[:, :, p * k + q])
            grad_weight = grad_weight.view(weight.shape).to(weight.dtype)
        return grad_x, grad_weight, None, None


def involution_lean(x: torch.Tensor, weight: torch.Tensor, kernel_size: int, stride: int = 1) -> torch.Tensor:
    """Memory-lean involution (see the module docstring for shapes); first-order autograd."""
    return _LeanInvolution.apply(x, weight, kernel_size, stride)


def resolve_implementation(name: str, unfolded_elements: int, output_pixels: int) -> str:
    """The concrete implementation ('unfold' or 'lean') for option `model.involution`.

    'auto' takes 'unfold' while the unfolded tensor (B * C * K * K * Ho * Wo elements) is
    small - under AUTO_UNFOLD_LIMIT, or under SMALL_MAP_UNFOLD_LIMIT when the output map
    has at most SMALL_MAP_PIXELS pixels (Ho * Wo): there its memory does not matter and
    its three large kernels beat the lean path's 3 * K * K small ones (per-call
    overhead). Otherwise 'lean', faster and a fraction of the memory (doc/network.md).
    """
    if name not in IMPLEMENTATIONS:
        raise UserError(f"model.involution '{name}' is not one of {', '.join(IMPLEMENTATIONS)}")
    if name == "triton":
        raise UserError(
            "model.involution=triton: no fused CUDA kernel is built into this version; "
            "use auto, lean or unfold"
        )
    if name == "auto":
        limit = SMALL_MAP_UNFOLD_LIMIT if output_pixels <= SMALL_MAP_PIXELS else AUTO_UNFOLD_LIMIT
        return "unfold" if unfolded_elements < limit else "lean"
    return name


_FUNCTIONS = {"unfold": involution_unfold, "lean": involution_lean}


def involution(
    x: torch.Tensor, weight: torch.Tensor, kernel_size: int, stride: int = 1, implementation: str = "auto"
) -> torch.Tensor:
    """Involution of x [B, C, H, W] with per-pixel kernels weight [B, G*K*K, Ho, Wo]."""
    pixels = weight.shape[2] * weight.shape[3]
    unfolded = x.shape[0] * x.shape[1] * kernel_size * kernel_size * pixels
    return _FUNCTIONS[resolve_implementation(implementation, unfolded, pixels)](x, weight, kernel_size, stride)
