"""MulEn-UNet: one encoder per view, one decoder with an attention gate per view's skip.

At width 1 with the seed's channels (64, 128, 256, 512, 1024) and 3 views:

    view v input [B, 4, H, W] --encoders[v]--> skips s_v^0..3 (64..512 ch, H..H/8) and a
                                               bottleneck (1024 ch, H/16)
    cat(bottlenecks) [B, 3072, H/16] --ups[0]--> u (512 ch, H/8)
    level j = 0..3 (resolution H/8 .. H):
        gated_v = gates[j][v](g=u, x=s_v) * keep_v       (attention gate per view)
        m = cat(u, gated_0, gated_1, gated_2)            (4 * c ch)
        j < 3: u = ups[j+1](decoders[j](m))               (DoubleConv, transposed conv)
        j = 3: output m                                   [B, 256, H, W], the fused map

The seed (network/Tri_Unet.py, class Tri_UNet) returns the last concatenation as well
and never calls its `conv9`; that unused DoubleConv(256, 64) is not built here.

`attention_gates=False` (the ablation `model.attention_gates: false`) builds no gates:
gated_v = s_v * keep_v, plain concatenation of the skips (same channel counts).
"""
from __future__ import annotations

import torch
from torch import nn

from models.layers import scale_channels


class DoubleConv(nn.Module):
    """(3x3 conv with bias -> BatchNorm -> ReLU) x 2; `conv` indices 0, 1, 3, 4 as in the seed."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.conv(x)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018): x * sigmoid(BN(psi(relu(W_g g + W_x x)))).

    g [B, Cg, h, w] (the upsampled decoder feature), x [B, Cx, h, w] (a skip feature) ->
    [B, Cx, h, w]. Submodule names W_g, W_x, psi follow the seed's Attention_block.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inner_channels: int):
        super().__init__()
        self.W_g = nn.Sequential(nn.Conv2d(gate_channels, inner_channels, 1), nn.BatchNorm2d(inner_channels))
        self.W_x = nn.Sequential(nn.Conv2d(skip_channels, inner_channels, 1), nn.BatchNorm2d(inner_channels))
        self.psi = nn.Sequential(nn.Conv2d(inner_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(torch.relu(self.W_g(g) + self.W_x(x)))


class Encoder(nn.Module):
    """DoubleConv stages with 2x2 max-pooling between them; returns every stage's output."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        stages, previous = [], in_channels
        for c in channels:
            stages.append(DoubleConv(previous, c))
            previous = c
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, Cin, H, W] -> [stage 0 [B, c0, H, W], ..., last [B, cL, H/2^L, W/2^L]]."""
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.pool(x) if i else x)
            outputs.append(x)
        return outputs


class MulEnUNet(nn.Module):
    """Multi-encoder attention UNet fusing `num_views` views into one map at input size."""

    def __init__(self, in_channels: int, channels: list[int], num_views: int, width: float = 1.0,
                 attention_gates: bool = True):
        super().__init__()
        if len(channels) < 2:
            raise ValueError("MulEnUNet needs at least two levels")
        ch = [scale_channels(c, width) for c in channels]
        self.num_views = num_views
        self.levels = len(ch)
        self.encoders = nn.ModuleList(Encoder(in_channels, ch) for _ in range(num_views))
        skip_levels = list(reversed(ch[:-1]))  # decoder order: deepest skip first
        ups, decoders, gates = [], [], []
        previous = num_views * ch[-1]
        for j, c in enumerate(skip_levels):
            ups.append(nn.ConvTranspose2d(previous, c, 2, stride=2))
            if attention_gates:
                gates.append(nn.ModuleList(AttentionGate(c, c, max(1, c // 2)) for _ in range(num_views)))
            if j < len(skip_levels) - 1:
                decoders.append(DoubleConv((num_views + 1) * c, c))
            previous = c
        self.ups = nn.ModuleList(ups)
        self.decoders = nn.ModuleList(decoders)
        self.gates = nn.ModuleList(gates) if attention_gates else None
        self.out_channels = (num_views + 1) * ch[0]

    def forward(self, views: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """views [B, V, Cin, H, W] (H, W divisible by 2^(levels-1)); keep [B, V] float
        (0 masks a view's gated skips, 1 keeps them) or None -> fused [B, out_channels, H, W]."""
        features = [encoder(views[:, v]) for v, encoder in enumerate(self.encoders)]
        x = torch.cat([f[-1] for f in features], dim=1)
        for j, up in enumerate(self.ups):
            x = up(x)
            level = self.levels - 2 - j
            gated = []
            for v in range(self.num_views):
                skip = features[v][level]
                if self.gates is not None:
                    skip = self.gates[j][v](x, skip)
                if keep is not None:
                    skip = skip * keep[:, v].view(-1, 1, 1, 1).to(skip.dtype)
                gated.append(skip)
            x = torch.cat([x, *gated], dim=1)
            if j < len(self.decoders):
                x = self.decoders[j](x)
        return x
