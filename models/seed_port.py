"""The seed's released checkpoint (e.g. 000000279.pth): recognise, port, load, run.

The seed saves `model.state_dict()` of its MVRNet (network/MVRnet.py:25-49; tools/log.py
checkpoint_save), possibly with DataParallel's 'module.' prefix. Its module names map to
ours key for key (the table in doc/network.md); this module applies that table and
accounts for every key:

    ported   uuunet.* (fusion UNet), rednet_fc.rednet.{stem,layer1..4}.* (RedNet-50),
             rednet_fc.conv2_* (heads; the split translation heads offset_xy (2 rows)
             and offset_z (1 row) of a view become one 3-row head)
    dropped  uuunet.conv9.* and rednet_fc.rednet.pts_net.*: built by the seed, never
             called by its forward (network/Tri_Unet.py:177, network/Rednet.py:474-477);
             mask_model.*: the seed's frozen 10-class BiSeNet (face_mask.pth), used by
             its preprocessing and its parsing loss, not by the network; our
             preprocessing has its own parser (preprocess.parser)

Nothing is invented: the ported dict holds exactly the keys of an MVRNet built with
SEED_MODEL (one shared expression head, as the seed's), each from one seed key (the
translation heads from two). The network then runs with the seed's settings: shared
expression, the parsing map as one label channel, `model.pose_output=seed` (raw
radians and decimetre offsets in the seed's camera frame), BFM09.
"""
from __future__ import annotations

import dataclasses
import re

import torch

from lib.config import Config
from lib.errors import UserError
from lib.facemodel import load_face_model
from lib.facemodel.schema import FaceModel
from models.checkpoint import build_model, load_checkpoint
from models.mvrnet import MVRNet

SEED_VIEWS = ("lt", "ft", "rt")  # left, front, right = view index 0, 1, 2
SEED_MODEL = {
    "width": 1.0,
    "unet_channels": [64, 128, 256, 512, 1024],
    "fused_channels": 256,
    "rednet_layers": [3, 4, 6, 3],
    "expression_per_view": False,
    "parsing_input": "label",
    "num_views": 3,
    "pose_output": "seed",
}
"""The `model.*` settings of the seed's network (network/MVRnet.py:28-30, Rednet.py:496-516)."""
SEED_FACE_MODELS = ("bfm", "bfm_official", "npz")
"""face_model.source values that can hold BFM09 (npz: a converted BFM09)."""
SEED_COEFFICIENTS = (("identity", 80), ("expression", 64), ("albedo", 80), ("rotation", 3), ("lighting", 27),
                     ("translation", 3))
"""The seed's coefficient vector per view, in order (Deep3DFaceRecon's 257 layout)."""

DROPPED = {
    re.compile(r"^uuunet\.conv9\."): "built by the seed, never called (network/Tri_Unet.py:177)",
    re.compile(r"^rednet_fc\.rednet\.pts_net\."): "built by the seed, never called (network/Rednet.py:474-477)",
    re.compile(r"^mask_model\."): "the seed's frozen face parser (face_mask.pth), not part of the network",
}
_RULES = [
    (re.compile(r"^uuunet\.conv([1-5])_(\d)\.(.*)$"), lambda m: f"fusion.encoders.{m[2]}.stages.{int(m[1]) - 1}.{m[3]}"),
    (re.compile(r"^uuunet\.conv([6-8])\.(.*)$"), lambda m: f"fusion.decoders.{int(m[1]) - 6}.{m[2]}"),
    (re.compile(r"^uuunet\.up([6-9])\.(.*)$"), lambda m: f"fusion.ups.{int(m[1]) - 6}.{m[2]}"),
    (re.compile(r"^uuunet\.att([1-4])_(\d)\.(.*)$"), lambda m: f"fusion.gates.{4 - int(m[1])}.{m[2]}.{m[3]}"),
    (re.compile(r"^rednet_fc\.rednet\.(.*)$"), lambda m: f"backbone.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_id\.(.*)$"), lambda m: f"heads.identity.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_exp\.(.*)$"), lambda m: f"heads.expression.0.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_color\.(.*)$"), lambda m: f"heads.albedo.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_gamma\.(.*)$"), lambda m: f"heads.lighting.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_rotate_(lt|ft|rt)\.(.*)$"),
     lambda m: f"heads.rotation.{SEED_VIEWS.index(m[1])}.{m[2]}"),
]
_OFFSET = re.compile(r"^rednet_fc\.conv2_offset_(xy|z)_(lt|ft|rt)\.(weight|bias)$")
_SIGNATURE = ("rednet_fc.conv2_id.weight", "rednet_fc.conv2_offset_z_ft.weight")


@dataclasses.dataclass
class SeedPort:
    """state: MVRNet state dict; sources: our key -> the seed keys it came from;
    dropped: seed key -> why it is not used."""

    state: dict
    sources: dict
    dropped: dict


def is_seed_state_dict(state: dict) -> bool:
    """True for a state dict of the seed's MVRNet (with or without 'module.')."""
    keys = {k.removeprefix("module.") for k in state if isinstance(k, str)}
    return all(k in keys for k in _SIGNATURE)


def port_seed_state_dict(seed: dict) -> SeedPort:
    """The seed's MVRNet state dict -> SeedPort for an MVRNet built with SEED_MODEL.
    UserError for keys this port does not know (not a DF-MVR checkpoint)."""
    ported, sources, dropped, unknown = {}, {}, {}, []
    offsets: dict[tuple[int, str], dict[str, tuple[str, torch.Tensor]]] = {}
    for raw_key, value in seed.items():
        key = raw_key.removeprefix("module.")
        reason = next((why for pattern, why in DROPPED.items() if pattern.match(key)), None)
        if reason is not None:
            dropped[raw_key] = reason
            continue
        offset = _OFFSET.match(key)
        if offset:
            offsets.setdefault((SEED_VIEWS.index(offset[2]), offset[3]), {})[offset[1]] = (raw_key, value)
            continue
        for pattern, target in _RULES:
            match = pattern.match(key)
            if match:
                ported[target(match)] = value
                sources[target(match)] = (raw_key,)
                break
        else:
            unknown.append(raw_key)
    if unknown:
        raise UserError(f"seed state dict: unexpected keys {', '.join(unknown[:5])} (not a DF-MVR MVRNet?)")
    for (view, kind), parts in sorted(offsets.items()):
        if set(parts) != {"xy", "z"}:
            raise UserError(f"seed state dict: view {SEED_VIEWS[view]} lacks its offset_xy or offset_z head")
        key = f"heads.translation.{view}.{kind}"
        ported[key] = torch.cat([parts["xy"][1], parts["z"][1]], dim=0)
        sources[key] = (parts["xy"][0], parts["z"][0])
    return SeedPort(ported, sources, dropped)


def seed_config(cfg: Config) -> Config:
    """`cfg` with the seed's network settings (SEED_MODEL). The image size stays
    cfg.data.image_size (the seed's is 224, configs/pixel_face.yaml's: the network is
    size-agnostic and our camera scales the focal length with it). UserError when
    cfg.face_model cannot be BFM09, which the seed's heads are sized for."""
    if cfg.face_model.source not in SEED_FACE_MODELS:
        raise UserError(
            f"face_model.source={cfg.face_model.source}: a seed checkpoint needs BFM09 "
            "(face_model.source=bfm and face_model.path, as in configs/pixel_face.yaml)"
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **SEED_MODEL))


def load_seed_model(path: str, state: dict, cfg: Config, device="cpu") -> tuple[MVRNet, FaceModel, Config]:
    """(ported network in eval mode on `device`, its face model, the Config it runs
    under) from the seed's state dict `state` read from `path`; the face model comes
    from cfg.face_model (BFM09; its loader says in one line where to get it when the
    file is missing)."""
    run_cfg = seed_config(cfg)
    face_model = load_face_model(run_cfg.face_model.source, run_cfg.face_model.path)
    sizes = {"identity": face_model.num_id, "expression": face_model.num_exp, "albedo": face_model.num_tex}
    expected = {name: size for name, size in SEED_COEFFICIENTS if name in sizes}
    if sizes != expected:
        raise UserError(f"face model '{face_model.name}': basis sizes {sizes} are not BFM09's {expected} "
                        "that the seed's heads predict")
    model = build_model(run_cfg, face_model)
    port = port_seed_state_dict(state)
    try:
        model.load_state_dict(port.state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: seed weights do not fit the seed's network ({first})") from None
    return model.to(device).eval(), face_model, run_cfg


def seed_notice(path: str, cfg: Config) -> str:
    """The line entry points print when they run the seed's checkpoint."""
    return (f"{path}: the seed's checkpoint, ported; run with its settings (shared expression, parsing label "
            f"channel, BFM09 from {cfg.face_model.path})")


def read_seed_checkpoint(path: str) -> dict | None:
    """The seed's state dict when `path` holds one (read with weights_only: no code
    runs), else None."""
    state = load_checkpoint(path)
    return state if is_seed_state_dict(state) else None


@torch.no_grad()
def seed_coefficients(model: MVRNet, rgb: torch.Tensor, parsing: torch.Tensor) -> torch.Tensor:
    """The seed's coefficient vector of each view: rgb [B, 3, 3, H, W] in [0, 1], parsing
    [B, 3, H, W] -> float [B, 3, 257] in SEED_COEFFICIENTS order and the seed's units
    (the raw head outputs: rotation in radians, translation in decimetres in the seed's
    camera frame; identity, albedo, lighting and the shared expression repeated per view)."""
    features, _ = model.features(rgb, parsing)
    raw = model.heads.raw(features)
    views = rgb.shape[1]
    parts = []
    for name, _ in SEED_COEFFICIENTS:
        value = raw[name]
        value = value[:, None].expand(-1, views, -1) if value.dim() == 2 else value.expand(-1, views, -1)
        parts.append(value)
    return torch.cat(parts, dim=-1)
