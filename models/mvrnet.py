"""MVRNet: the DF-MVR network, views -> face-model coefficients.

    rgb [B, V, 3, H, W] in [0, 1], parsing [B, V, H, W] long
      -> per view input [4, H, W]: RGB mapped to [-1, 1], then the parsing label as a
         float 0..9 (model.parsing_input "label": unscaled, as the seed feeds its
         face_mask; the first conv's BatchNorm takes care of the range), or
         [13, H, W] with the label one-hot ("one_hot"), or [3, H, W] RGB alone ("none")
      -> MulEnUNet (fusion) -> [B, (V+1) * 64w, H, W]
      -> RedNet (backbone)  -> [B, 2048w, 1, 1]
      -> CoefficientHeads (heads) -> FaceCoefficients with N = B * V rows, row b*V + v

Missing views (view_mask [B, V] False): each sample needs at least one present view. A
missing view's encoder is fed the input of the sample's "source" view - the front view
(index V // 2) when present, else the present view nearest to it (lower index on a tie)
- and its attention-gated skip features are multiplied by 0 at every decoder level, so
it contributes only a copy of the source's bottleneck. Its output rows are still
returned: the shared coefficients as for any view, and the per-view ones (rotation,
translation, expression) copied from the source view, so they are finite and usable
but carry no information of their own; callers mask them with view_mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib.config.schema import ModelConfig
from lib.errors import UserError
from lib.facemodel.schema import NUM_PARSING_CLASSES, FaceModel
from lib.morphable import FaceCoefficients
from lib.ops import resolve_implementation
from models.heads import POSE_OUTPUTS, CoefficientHeads
from models.layers import kaiming_init
from models.rednet import RedNet
from models.unet import MulEnUNet

PARSING_INPUTS = ("label", "one_hot", "none")
PARSING_CHANNELS = {"label": 1, "one_hot": NUM_PARSING_CLASSES, "none": 0}
PER_VIEW = ("expression", "rotation", "translation")


def check_model_config(cfg: ModelConfig, image_size: int) -> None:
    """Raise UserError naming the first inconsistent `model.*` option."""
    if cfg.width <= 0:
        raise UserError(f"model.width must be positive, got {cfg.width}")
    if cfg.parsing_input not in PARSING_INPUTS:
        raise UserError(f"model.parsing_input must be one of {', '.join(PARSING_INPUTS)}, got {cfg.parsing_input!r}")
    if cfg.num_views < 1:
        raise UserError(f"model.num_views must be at least 1, got {cfg.num_views}")
    if len(cfg.unet_channels) < 2 or min(cfg.unet_channels) < 1:
        raise UserError(f"model.unet_channels needs at least two positive entries, got {cfg.unet_channels}")
    expected = (cfg.num_views + 1) * cfg.unet_channels[0]
    if cfg.fused_channels != expected:
        raise UserError(
            f"model.fused_channels={cfg.fused_channels}: the fused map concatenates the upsampled "
            f"map and every view's gated skip, so it must be (num_views + 1) * unet_channels[0] = {expected}"
        )
    if not 1 <= len(cfg.rednet_layers) <= 4 or min(cfg.rednet_layers) < 1:
        raise UserError(f"model.rednet_layers needs 1 to 4 positive block counts, got {cfg.rednet_layers}")
    if cfg.rednet_op not in RedNet.SPATIAL_OPS:
        raise UserError(f"model.rednet_op must be one of {', '.join(RedNet.SPATIAL_OPS)}, got {cfg.rednet_op!r}")
    resolve_implementation(cfg.involution, 0, 0)  # UserError for unknown or unavailable ones
    factor = 2 ** (len(cfg.unet_channels) - 1)
    if image_size % factor:
        raise UserError(
            f"data.image_size={image_size} must be divisible by {factor} "
            f"(the fusion UNet pools {len(cfg.unet_channels) - 1} times)"
        )
    for key in ("rotation_limit_deg", "translation_limit_mm", "translation_scale_mm"):
        if getattr(cfg, key) <= 0:
            raise UserError(f"model.{key} must be positive, got {getattr(cfg, key)}")
    if cfg.pose_output not in POSE_OUTPUTS:
        raise UserError(f"model.pose_output must be one of {', '.join(POSE_OUTPUTS)}, got {cfg.pose_output!r}")


def source_views(view_mask: torch.Tensor) -> torch.Tensor:
    """view_mask [B, V] bool -> long [B, V]: the view whose input each encoder reads.

    Present views read themselves; missing ones read the front view (V // 2) if present,
    else the present view nearest to the front (lower index on a tie).
    """
    v = view_mask.shape[1]
    index = torch.arange(v, device=view_mask.device)
    distance = (index - v // 2).abs() * (v + 1) + index  # nearest to the front, ties -> lower
    fallback = torch.where(view_mask, distance, v * (v + 1) * 2).argmin(dim=1, keepdim=True)  # [B, 1]
    return torch.where(view_mask, index, fallback)


class MVRNet(nn.Module):
    """The DF-MVR network; see the module docstring for data flow and missing views.

    Of `face_model` only the basis sizes (num_id, num_exp, num_tex) are read: they size
    the heads. `image_size` (px, square inputs) must be divisible by 2^(UNet levels - 1).
    """

    def __init__(self, model_cfg: ModelConfig, face_model: FaceModel, image_size: int):
        super().__init__()
        check_model_config(model_cfg, image_size)
        self.num_views = model_cfg.num_views
        self.image_size = image_size
        self.parsing_input = model_cfg.parsing_input
        in_channels = 3 + PARSING_CHANNELS[self.parsing_input]
        self.fusion = MulEnUNet(in_channels, list(model_cfg.unet_channels), self.num_views, model_cfg.width,
                                model_cfg.attention_gates)
        self.backbone = RedNet(
            self.fusion.out_channels, list(model_cfg.rednet_layers), model_cfg.width, model_cfg.involution,
            model_cfg.rednet_op,
        )
        self.heads = CoefficientHeads(
            self.backbone.out_channels,
            face_model.num_id,
            face_model.num_exp,
            face_model.num_tex,
            self.num_views,
            model_cfg.expression_per_view,
            model_cfg.rotation_limit_deg,
            model_cfg.translation_limit_mm,
            model_cfg.translation_scale_mm,
            model_cfg.pose_output,
        )
        kaiming_init(self.fusion)

    def network_input(self, rgb: torch.Tensor, parsing: torch.Tensor) -> torch.Tensor:
        """rgb [B, V, 3, H, W] in [0, 1], parsing [B, V, H, W] long 0..9 ->
        [B, V, 4, H, W] (label), [B, V, 13, H, W] (one_hot) or [B, V, 3, H, W] (none:
        the parsing map is ignored)."""
        image = rgb * 2.0 - 1.0
        if self.parsing_input == "none":
            return image
        if self.parsing_input == "one_hot":
            labels = F.one_hot(parsing.long(), NUM_PARSING_CLASSES).permute(0, 1, 4, 2, 3)
        else:
            labels = parsing.unsqueeze(2)
        return torch.cat([image, labels.to(rgb.dtype)], dim=2)

    def _check_inputs(self, rgb, parsing, view_mask) -> None:
        size = self.image_size
        if rgb.dim() != 5 or tuple(rgb.shape[1:]) != (self.num_views, 3, size, size):
            raise UserError(f"MVRNet input: rgb must be [B, {self.num_views}, 3, {size}, {size}], got {tuple(rgb.shape)}")
        if tuple(parsing.shape) != (rgb.shape[0], self.num_views, size, size):
            raise UserError(
                f"MVRNet input: parsing must be [{rgb.shape[0]}, {self.num_views}, {size}, {size}], got {tuple(parsing.shape)}"
            )
        if view_mask is not None:
            if tuple(view_mask.shape) != (rgb.shape[0], self.num_views):
                raise UserError(f"MVRNet input: view_mask must be [{rgb.shape[0]}, {self.num_views}], got {tuple(view_mask.shape)}")
            if not bool(view_mask.any(dim=1).all()):
                raise UserError("MVRNet input: every sample needs at least one present view (view_mask all False)")

    def features(self, rgb: torch.Tensor, parsing: torch.Tensor, view_mask: torch.Tensor | None = None):
        """(pooled RedNet features [B, C, 1, 1], source views long [B, V] or None when
        every view is present) for the inputs of `forward`."""
        self._check_inputs(rgb, parsing, view_mask)
        b, v = rgb.shape[:2]
        views = self.network_input(rgb, parsing.clamp(0, NUM_PARSING_CLASSES - 1))
        source = keep = None
        if view_mask is not None and not bool(view_mask.all()):
            source = source_views(view_mask.to(torch.bool))
            views = torch.gather(views, 1, source.view(b, v, 1, 1, 1).expand_as(views))
            keep = view_mask.to(views.dtype)
        return self.backbone(self.fusion(views, keep)), source

    def forward(self, rgb: torch.Tensor, parsing: torch.Tensor, view_mask: torch.Tensor | None = None) -> FaceCoefficients:
        """rgb [B, V, 3, H, W] in [0, 1], parsing [B, V, H, W] long (0..9), view_mask [B, V]
        bool or None (all present) -> FaceCoefficients with B * V rows (row b * V + v)."""
        b, v = rgb.shape[:2]
        features, source = self.features(rgb, parsing, view_mask)
        out = self.heads(features)
        if source is not None:
            for key in PER_VIEW:
                out[key] = torch.gather(out[key], 1, source.unsqueeze(-1).expand_as(out[key]))
        shared = {key: out[key].repeat_interleave(v, dim=0) for key in ("identity", "albedo", "lighting")}
        per_view = {key: out[key].reshape(b * v, -1) for key in PER_VIEW}
        return FaceCoefficients(**shared, **per_view)
