"""RedNet (Li et al. 2021): ResNet whose 3x3 convolutions are 7x7 involutions.

Follows the seed's network/Rednet.py (class RedNet, depth 50, "pytorch" style: the stride
sits in the involution, i.e. the bottleneck's middle layer). Module and attribute names
mirror the seed's mmcv modules so that its state dict maps key for key (doc/network.md):

    stem:  0 ConvModule(Cin -> s/2, 3x3, stride 2, BN, ReLU)
           1 Involution(s/2, K=3, stride 1)
           2 BatchNorm(s/2), 3 ReLU
           4 ConvModule(s/2 -> s, 3x3, BN, ReLU)              (s = 64 at width 1)
    maxpool 3x3 stride 2
    layer1..4: Bottleneck x (3, 4, 6, 3), middle width 64, 128, 256, 512 (x width),
           output 4x that, first block of layers 2-4 with stride 2
    global average pool -> [B, 2048, 1, 1]

The seed also builds an MLP (`pts_net`) that its forward never uses; it is not built here.

`op="conv3x3"` (the ablation `model.rednet_op: conv3x3`) puts a plain 3x3 convolution
(no bias, same stride) wherever an involution stands, stem included: a ResNet-50 with
the same widths, to ask what the involutions themselves add.
"""
from __future__ import annotations

from torch import nn

from lib.ops import involution
from models.layers import ConvModule, group_channels, kaiming_init, scale_channels

REDUCTION_RATIO = 4  # kernel-generating branch: C -> C / 4 -> G * K * K (seed's value)
GROUP_CHANNELS = 16  # channels sharing one generated kernel (seed's value)
EXPANSION = 4  # bottleneck output / middle channels
STEM_CHANNELS = 64
BASE_CHANNELS = 64
STAGE_STRIDES = (1, 2, 2, 2)
BOTTLENECK_KERNEL = 7
STEM_KERNEL = 3


class Involution(nn.Module):
    """Involution layer: kernels generated per pixel from the (average-pooled) input.

    x [B, C, H, W] -> [B, C, ceil(H/s), ceil(W/s)]. The kernel branch is
    conv1 (1x1, C -> C/4, BN, ReLU) -> conv2 (1x1 with bias, C/4 -> G*K*K), on
    AvgPool(s, s) of x when s > 1. `ceil_mode` makes odd sizes work (the seed's CUDA
    op requires even sizes); it changes nothing for even sizes.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int, implementation: str = "auto"):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.implementation = implementation
        self.groups = channels // group_channels(channels, GROUP_CHANNELS)
        reduced = max(1, channels // REDUCTION_RATIO)
        self.conv1 = ConvModule(channels, reduced, 1)
        self.conv2 = ConvModule(reduced, kernel_size * kernel_size * self.groups, 1, norm=False, act=False)
        self.avgpool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()

    def forward(self, x):
        weight = self.conv2(self.conv1(self.avgpool(x)))
        return involution(x, weight, self.kernel_size, self.stride, self.implementation)


def spatial_layer(channels: int, kernel_size: int, stride: int, implementation: str, op: str) -> nn.Module:
    """The layer in an involution's place: Involution(channels, kernel_size, stride), or
    for op "conv3x3" a 3x3 convolution channels -> channels with that stride (padding 1,
    no bias: a BatchNorm follows either way). [B, C, H, W] -> [B, C, ceil(H/s), ceil(W/s)]."""
    if op == "conv3x3":
        return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
    return Involution(channels, kernel_size, stride, implementation)


class Bottleneck(nn.Module):
    """1x1 conv -> 7x7 involution (stride) -> 1x1 conv, each with BN; residual; ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, implementation: str,
                 op: str = "involution"):
        super().__init__()
        mid = out_channels // EXPANSION
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = spatial_layer(mid, BOTTLENECK_KERNEL, stride, implementation, op)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class RedNet(nn.Module):
    """RedNet backbone: [B, Cin, H, W] -> globally pooled features [B, out_channels, 1, 1].
    op: "involution" (the paper) or "conv3x3" (see the module docstring)."""

    SPATIAL_OPS = ("involution", "conv3x3")

    def __init__(self, in_channels: int, layers: list[int], width: float = 1.0, implementation: str = "auto",
                 op: str = "involution"):
        super().__init__()
        if not 1 <= len(layers) <= len(STAGE_STRIDES) or min(layers) < 1:
            raise ValueError(f"RedNet needs 1 to 4 stages of at least one block, got {layers}")
        if op not in self.SPATIAL_OPS:
            raise ValueError(f"RedNet op must be one of {self.SPATIAL_OPS}, got {op!r}")
        stem = scale_channels(STEM_CHANNELS, width)
        half = scale_channels(STEM_CHANNELS // 2, width)
        self.stem = nn.Sequential(
            ConvModule(in_channels, half, 3, stride=2),
            spatial_layer(half, STEM_KERNEL, 1, implementation, op),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            ConvModule(half, stem, 3),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        previous = stem
        self.stage_names = []
        for i, blocks in enumerate(layers):
            out = EXPANSION * scale_channels(BASE_CHANNELS * 2**i, width)
            stage = [Bottleneck(previous, out, STAGE_STRIDES[i], implementation, op)]
            stage += [Bottleneck(out, out, 1, implementation, op) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            self.stage_names.append(f"layer{i + 1}")
            previous = out
        self.out_channels = previous
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        kaiming_init(self)
        # As the seed (zero_init_residual): every bottleneck starts as its shortcut.
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.avgpool(x)
