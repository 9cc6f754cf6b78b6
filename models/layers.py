"""Small building blocks shared by the fusion UNet and RedNet."""
from __future__ import annotations

import math

from torch import nn


def scale_channels(channels: int, width: float) -> int:
    """Channel count of a layer with `channels` at width 1.0 under the width multiplier."""
    return max(1, int(round(channels * width)))


class ConvModule(nn.Module):
    """conv -> optional BatchNorm -> optional ReLU.

    Attribute names `conv` and `bn` match mmcv's ConvModule, which the seed uses, so the
    seed's state-dict keys (`...conv.weight`, `...bn.running_mean`) map one to one. As in
    mmcv, the convolution has a bias only when there is no norm layer after it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.act = nn.ReLU(inplace=True) if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


def kaiming_init(module: nn.Module) -> None:
    """He-normal conv weights (fan_out, ReLU), zero biases, unit BatchNorm.

    The seed's RedNet initialises itself this way (mmcv kaiming_init, network/Rednet.py:
    449-461); its UNet keeps PyTorch's default init (MVRNet.init_weights,
    network/MVRnet.py:51-62, is never called). Ours uses this for both."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def group_channels(channels: int, preferred: int) -> int:
    """Channels per involution group: `preferred` (16 in RedNet) or a divisor at small widths."""
    return math.gcd(channels, preferred)
