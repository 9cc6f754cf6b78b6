"""The one way to load a trained network for inference (test_pixel_face.py,
test_sample.py): the network, its face model (loaded once) and its config, from a
checkpoint written by train.py (`models.checkpoint`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.config import Config
from lib.errors import UserError
from lib.facemodel import load_face_model
from lib.facemodel.schema import FaceModel
from lib.fitting.fit import FitTarget, landmark_pose
from lib.fitting.pipeline import assign_view_slots
from lib.morphable import FaceCoefficients, MorphableModel
from models.checkpoint import build_model, config_from_checkpoint, load_checkpoint
from models.mvrnet import MVRNet


@dataclass
class Predictor:
    """A trained network in eval mode with the face model and config it was trained
    with (cfg: the checkpoint's resolved config; its face_model, model and
    data.image_size describe the network)."""

    model: MVRNet
    face_model: FaceModel
    cfg: Config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor, parsing: torch.Tensor, view_mask: torch.Tensor) -> FaceCoefficients:
        """Network coefficients (CPU, float32) for rgb [B, Vw, 3, S, S] in [0, 1],
        parsing long [B, Vw, S, S], view_mask bool [B, Vw] (S = data.image_size of the
        checkpoint): B*Vw rows, row b*Vw + v = view slot v of sample b."""
        device = self.device
        coeffs = self.model(rgb.to(device), parsing.to(device), view_mask.to(device))
        return coeffs.map(lambda t: t.float().cpu())

    def predict_views(self, target: FitTarget, morphable: MorphableModel) -> FaceCoefficients:
        """Coefficients for a subject's Vw views in any order (Vw rows, the views'
        order): crops resized to the network's input size, each view put in its slot
        (`lib.fitting.pipeline.assign_view_slots`, from the yaw of a landmark pose)."""
        size, slots = self.cfg.data.image_size, self.cfg.model.num_views
        rotation, _ = landmark_pose(morphable, target.landmarks, target.image_size, self.cfg.loss.landmark_heavy_weight)
        slot = assign_view_slots(rotation[:, 1], slots, self.cfg.fit.side_view_deg)
        rgb = torch.zeros(1, slots, 3, size, size)
        parsing = torch.zeros(1, slots, size, size, dtype=torch.long)
        mask = torch.zeros(1, slots, dtype=torch.bool)
        rgb[0, slot] = F.interpolate(target.rgb, size=(size, size), mode="area")
        parsing[0, slot] = F.interpolate(target.parsing[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
        mask[0, slot] = True
        return self(rgb, parsing, mask).map(lambda t: t[slot])


def load_predictor(path: str, device: torch.device | str = "cpu") -> Predictor:
    """The `Predictor` of a checkpoint file; UserError (naming the file) when it is
    missing, unreadable, or its weights do not fit the network of its config."""
    state = load_checkpoint(path, map_location="cpu")
    cfg = config_from_checkpoint(state, path)
    if not isinstance(state.get("model"), dict):
        raise UserError(f"{path}: checkpoint has no 'model' state dict")
    face_model = load_face_model(cfg.face_model.source, cfg.face_model.path)
    model = build_model(cfg, face_model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not match the network of its config ({first})") from None
    return Predictor(model.to(device).eval(), face_model, cfg)
