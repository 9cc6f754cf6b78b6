"""Rename a state dict of the seed's DF-MVR network (network/MVRnet.py) to MVRNet keys.

The mapping is the table in doc/network.md. Modules the seed builds but never calls
(`uuunet.conv9`, `rednet_fc.rednet.pts_net`) and its frozen face parser (`mask_model`)
are dropped. The seed's split translation heads (offset_xy: 2 rows, offset_z: 1 row) are
concatenated into one 3-row head; its shared expression head is copied to every view's
head when the target network predicts expression per view.

Only names and layouts are converted: the heads' outputs keep the seed's meaning
(decimetres, unbounded), so ported heads need fine-tuning under our parametrisation.
"""
from __future__ import annotations

import re

import torch

from lib.errors import UserError

SEED_VIEWS = ("lt", "ft", "rt")  # left, front, right = view index 0, 1, 2
_DROPPED = re.compile(r"^(uuunet\.conv9\.|rednet_fc\.rednet\.pts_net\.|mask_model\.)")
_RULES = [
    (re.compile(r"^uuunet\.conv([1-5])_(\d)\.(.*)$"), lambda m: f"fusion.encoders.{m[2]}.stages.{int(m[1]) - 1}.{m[3]}"),
    (re.compile(r"^uuunet\.conv([6-8])\.(.*)$"), lambda m: f"fusion.decoders.{int(m[1]) - 6}.{m[2]}"),
    (re.compile(r"^uuunet\.up([6-9])\.(.*)$"), lambda m: f"fusion.ups.{int(m[1]) - 6}.{m[2]}"),
    (re.compile(r"^uuunet\.att([1-4])_(\d)\.(.*)$"), lambda m: f"fusion.gates.{4 - int(m[1])}.{m[2]}.{m[3]}"),
    (re.compile(r"^rednet_fc\.rednet\.(.*)$"), lambda m: f"backbone.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_id\.(.*)$"), lambda m: f"heads.identity.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_color\.(.*)$"), lambda m: f"heads.albedo.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_gamma\.(.*)$"), lambda m: f"heads.lighting.{m[1]}"),
    (re.compile(r"^rednet_fc\.conv2_rotate_(lt|ft|rt)\.(.*)$"),
     lambda m: f"heads.rotation.{SEED_VIEWS.index(m[1])}.{m[2]}"),
]


def port_seed_state_dict(seed: dict, num_views: int, expression_per_view: bool) -> dict:
    """seed's MVRNet state dict (optionally with DataParallel's 'module.' prefix) ->
    a state dict for `MVRNet` with the seed's architecture (width 1, 3 views)."""
    ported: dict[str, torch.Tensor] = {}
    translation: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for raw_key, value in seed.items():
        key = raw_key.removeprefix("module.")
        if _DROPPED.match(key):
            continue
        offset = re.match(r"^rednet_fc\.conv2_offset_(xy|z)_(lt|ft|rt)\.(weight|bias)$", key)
        if offset:
            translation.setdefault((SEED_VIEWS.index(offset[2]), offset[3]), {})[offset[1]] = value
            continue
        expression = re.match(r"^rednet_fc\.conv2_exp\.(weight|bias)$", key)
        if expression:
            for v in range(num_views if expression_per_view else 1):
                ported[f"heads.expression.{v}.{expression[1]}"] = value.clone()
            continue
        for pattern, target in _RULES:
            match = pattern.match(key)
            if match:
                ported[target(match)] = value
                break
        else:
            unknown.append(raw_key)
    if unknown:
        raise UserError(f"seed state dict: unexpected keys {', '.join(unknown[:5])} (not a DF-MVR MVRNet?)")
    for (view, kind), parts in translation.items():
        if set(parts) != {"xy", "z"}:
            raise UserError(f"seed state dict: view {SEED_VIEWS[view]} lacks its offset_xy or offset_z head")
        ported[f"heads.translation.{view}.{kind}"] = torch.cat([parts["xy"], parts["z"]], dim=0)
    return ported
