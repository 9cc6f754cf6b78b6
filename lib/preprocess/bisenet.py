"""Optional face parsing with the BiSeNet of face-parsing.PyTorch (zllrunning), used
when `preprocess.parser=bisenet` and `preprocess.bisenet_weights` names its
`79999_iter.pth` (trained on CelebAMask-HQ, 19 classes; not shipped, not downloaded).

The module tree mirrors that repository's so its state_dict loads unchanged:
`cp` (context path: ResNet-18 `resnet`, attention refinement `arm16`/`arm32`,
`conv_head16`/`conv_head32`, global `conv_avg`), `ffm` (feature fusion) and the three
heads `conv_out`, `conv_out16`, `conv_out32` (only the first is used to predict).

Its 19 classes become our 10 (CELEBAMASK_TO_OURS). Ears, neck, hair, hat, clothes and
jewellery are background (the face model has none of them); eyeglasses count as skin.
Brows and eyes are split into the subject's left and right by the 68 landmarks
(nearest eye centre), which does not depend on which side CelebAMask-HQ calls left.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.errors import UserError
from lib.facemodel.schema import PARSING_CLASSES

CELEBAMASK_CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
"""The 19 output classes of face-parsing.PyTorch, in output-channel order."""

_OURS = {name: i for i, name in enumerate(PARSING_CLASSES)}
_BROW, _EYE = -1, -2  # side decided from the landmarks
CELEBAMASK_TO_OURS = np.array(
    [
        _OURS["background"], _OURS["skin"], _BROW, _BROW, _EYE, _EYE, _OURS["skin"],
        _OURS["background"], _OURS["background"], _OURS["background"], _OURS["nose"], _OURS["inner_mouth"],
        _OURS["upper_lip"], _OURS["lower_lip"], _OURS["background"], _OURS["background"], _OURS["background"],
        _OURS["background"], _OURS["background"],
    ],
    dtype=np.int64,
)
"""int64 [19]: our class for each BiSeNet class (-1 brow, -2 eye: side from landmarks)."""

INPUT_SIZE = 512  # the network was trained on 512 x 512 CelebAMask-HQ images
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; `downsample` (1x1 conv + BN) when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if in_ch != out_ch or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """Returns the stride-8, -16 and -32 feature maps (128, 256, 512 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x):
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    """Features re-weighted per channel by a sigmoid of their global average."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1, padding=0)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        sum32 = self.arm32(feat32) + context  # broadcast = nearest upsampling of a 1x1 map
        up32 = self.conv_head32(F.interpolate(sum32, size=feat16.shape[2:], mode="nearest"))
        sum16 = self.arm16(feat16) + up32
        up16 = self.conv_head16(F.interpolate(sum16, size=feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, kernel=1, padding=0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * attention + feat


class OutputHead(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch)
        self.conv_out = nn.Conv2d(mid_ch, classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's BiSeNet. forward: images [B, 3, H, W] (ImageNet-normalised)
    -> (logits [B, C, H, W], aux16 [B, C, H, W], aux32 [B, C, H, W])."""

    def __init__(self, classes: int = len(CELEBAMASK_CLASSES)):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, classes)
        self.conv_out16 = OutputHead(128, 64, classes)
        self.conv_out32 = OutputHead(128, 64, classes)

    def forward(self, x):
        size = x.shape[2:]
        feat8, context8, context16 = self.cp(x)
        outputs = (self.conv_out(self.ffm(feat8, context8)), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(F.interpolate(o, size=size, mode="bilinear", align_corners=True) for o in outputs)


def map_to_ours(labels19: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """BiSeNet labels int [H, W] (0..18) -> our labels uint8 [H, W]; landmarks68 [68, 2]
    px in the same image decide which brow/eye pixels are the subject's left/right."""
    mapped = CELEBAMASK_TO_OURS[np.asarray(labels19, dtype=np.int64)]
    lm = np.asarray(landmarks68, dtype=np.float64)
    right_eye, left_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    rows, cols = np.indices(mapped.shape)
    pixels = np.stack([cols + 0.5, rows + 0.5], axis=-1)
    is_left = np.linalg.norm(pixels - left_eye, axis=-1) < np.linalg.norm(pixels - right_eye, axis=-1)
    for generic, left, right in ((_BROW, "left_brow", "right_brow"), (_EYE, "left_eye", "right_eye")):
        where = mapped == generic
        mapped[where & is_left] = _OURS[left]
        mapped[where & ~is_left] = _OURS[right]
    return mapped.astype(np.uint8)


class BiSeNetParser:
    """Parses aligned face crops with a BiSeNet; `parse(crop, landmarks68)`."""

    def __init__(self, network: BiSeNet, input_size: int = INPUT_SIZE):
        self.network = network.eval()
        self.input_size = input_size

    @classmethod
    def from_file(cls, path: str) -> "BiSeNetParser":
        """Load face-parsing.PyTorch weights (a state_dict .pth; a 'module.' prefix from
        DataParallel is accepted). UserError when missing or not matching."""
        if not path:
            raise UserError("preprocess.parser=bisenet needs preprocess.bisenet_weights (face-parsing.PyTorch 79999_iter.pth)")
        if not os.path.isfile(path):
            raise UserError(f"{path}: BiSeNet weights not found (preprocess.bisenet_weights)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a bad file
            raise UserError(f"{path}: not a readable PyTorch state_dict ({err.__class__.__name__})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        network = BiSeNet()
        try:
            network.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise UserError(f"{path}: not face-parsing.PyTorch BiSeNet weights with 19 classes ({first})") from None
        return cls(network)

    @torch.no_grad()
    def logits(self, crop: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] RGB -> float [19, H, W] class scores at the crop's size."""
        height, width = crop.shape[:2]
        resized = cv2.resize(crop, (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(resized).float().div(255).permute(2, 0, 1)
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        scores = self.network(x[None])[0]
        return F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)[0]

    def parse(self, crop: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        """Our 10-class labels uint8 [H, W] for an aligned crop uint8 [H, W, 3]."""
        return map_to_ours(self.logits(crop).argmax(0).numpy(), landmarks68)
