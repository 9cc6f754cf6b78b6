"""Does jaw-contour marching help landmark fitting on turned faces? ICT renders with
known shapes, fitted with fixed jaw vertices and with marching (lib/fitting/contour.py).

    .venv/bin/python bench/contour.py [--subjects N] [--iterations I]

Each subject (ICT identity ~N(0, 1), neutral expression) is seen in three views at
yaw -Y, 0, +Y (Y = 30 and 45 degrees; +-3 degrees jitter, pitch +-5). Targets: the
68 points as 300-W annotates them (the jaw on the silhouette, the ground truth of
bench/landmarks.py), either exact ("truth") or as the default detector finds them on
the 224 px renders ("detector"). A landmark-only multi-view fit (shared identity and
expression, pose per view; weighted squared pixel error, the training weights, plus
a Gaussian prior on the coefficients; pose initialised in closed form from the non-jaw
points, then L-BFGS on pose, then on everything) is run twice: the model's jaw points
are its fixed landmark vertices ("fixed"), or re-selected on the silhouette at every
step ("marching"). Reported: the fitted model's landmark error against the true
300-W-style points (NME, outer-eye-corner distance; the model's points are taken with
marching in both cases so that both are measured against the same definition), for
the side views and the jaw alone; and the NoW-style shape error (mm, lib/evaluation/
now.py: 7-point similarity, rigid refinement, scan = the true mesh).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from bench.common import machine  # noqa: E402
from bench.landmarks import CONTOUR_BAND_MM, CONTOUR_INNER, ICT_ARCHIVE, _paint_eyes, nme  # noqa: E402
from lib.config.schema import EvalConfig  # noqa: E402
from lib.evaluation.now import now_scan_to_mesh  # noqa: E402
from lib.facemodel.ict import convert_ict  # noqa: E402
from lib.facemodel.schema import NOW7_FROM_68  # noqa: E402
from lib.fitting.contour import contour_lines, select_contour  # noqa: E402
from lib.fitting.fit import initial_pose  # noqa: E402
from lib.geometry import euler_to_matrix, project, rigid_transform  # noqa: E402
from lib.losses import landmark_weights  # noqa: E402
from lib.morphable import FaceCoefficients, MorphableModel  # noqa: E402
from lib.preprocess.landmarks import MediapipeBackend  # noqa: E402
from lib.render import render_mesh  # noqa: E402

SIZE = (224, 224)
PRIOR = 0.05  # px^2 per unit coefficient^2: weak, the same in both arms
HEAVY = 20.0  # the training's landmark weight on nose bridge, eyes, inner mouth


def render_subject(morphable, lines, subject: int, yaw: float, detector):
    """(true shape [V, 3], per-view truth [3, 68, 2], detector points [3, 68, 2] or None)."""
    rng = np.random.default_rng([7, subject, int(yaw)])
    num_id, num_exp, num_tex = morphable.id_basis.shape[1], morphable.exp_basis.shape[1], morphable.albedo_basis.shape[1]
    rotation = np.deg2rad(np.stack([rng.uniform(-5, 5, 3), np.array([-yaw, 0, yaw]) + rng.uniform(-3, 3, 3),
                                    rng.uniform(-3, 3, 3)], axis=1))
    coeffs = FaceCoefficients(
        identity=torch.tensor(rng.normal(0, 1, num_id), dtype=torch.float32).expand(3, -1),
        expression=torch.zeros(3, num_exp), albedo=torch.tensor(rng.normal(0, 1, num_tex), dtype=torch.float32).expand(3, -1),
        rotation=torch.tensor(rotation, dtype=torch.float32), translation=torch.zeros(3, 3),
        lighting=torch.tensor(np.tile([-0.1, 0, 0.25, 0, 0, 0, 0, 0, 0], 3), dtype=torch.float32).expand(3, -1))
    with torch.no_grad():
        inst = morphable(coeffs, SIZE)
        chosen = select_contour(lines, morphable.landmarks68, inst.screen[..., 0])
        truth = torch.gather(inst.screen[..., :2], 1, chosen[..., None].expand(-1, -1, 2)).numpy()
        found = None
        if detector is not None:
            render = render_mesh(inst.vertices, morphable.faces, {"color": inst.colors}, SIZE)
            found = []
            for v in range(3):
                covered = render.mask[v, ..., 0].numpy() > 0.5
                image = np.where(covered[..., None], render.images["color"][v].clamp(0, 1).numpy() * 255, 120.0)
                image = image.round().astype(np.uint8)
                _paint_eyes(image, covered, truth[v], rng)
                faces = detector.detect_all(image)
                found.append(None if not faces else max(faces, key=lambda f: f.area).points68)
            found = None if any(f is None for f in found) else np.stack(found)
    return inst.shape[0].numpy(), truth, found


def fit(morphable, lines, targets: np.ndarray, marching: bool, iterations: int):
    """Landmark-only fit of 3 views; returns (shape [V, 3] mm, landmarks [3, 68, 2] px
    taken with marching)."""
    target = torch.tensor(targets, dtype=torch.float32)
    weights = landmark_weights(HEAVY)[None].repeat(3, 1)
    pose_weights = weights.clone()
    pose_weights[:, :17] = 0.0
    mean = morphable.mean_shape.reshape(-1, 3)
    rotation, translation = initial_pose(mean[morphable.landmarks68], target, pose_weights, SIZE)
    num_id, num_exp = morphable.id_basis.shape[1], morphable.exp_basis.shape[1]
    params = {
        "identity": torch.zeros(1, num_id, requires_grad=True), "expression": torch.zeros(1, num_exp, requires_grad=True),
        "rotation": rotation.clone().requires_grad_(True), "translation": translation.clone().requires_grad_(True),
    }

    def landmarks(select: bool):
        shape = morphable.shape(params["identity"].expand(3, -1), params["expression"].expand(3, -1))
        screen = project(rigid_transform(shape, euler_to_matrix(params["rotation"]), params["translation"]), SIZE)
        index = (select_contour(lines, morphable.landmarks68, screen[..., 0]) if select
                 else morphable.landmarks68[None].expand(3, -1))
        return shape, torch.gather(screen[..., :2], 1, index[..., None].expand(-1, -1, 2))

    for names, steps in ((("rotation", "translation"), iterations // 3), (tuple(params), iterations)):
        optimiser = torch.optim.LBFGS([params[n] for n in names], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            _, points = landmarks(marching)
            loss = (weights * ((points - target) ** 2).sum(-1)).sum() / weights.sum()
            loss = loss + PRIOR * (params["identity"].square().sum() + params["expression"].square().sum())
            loss.backward()
            return loss

        optimiser.step(closure)
    with torch.no_grad():
        shape, points = landmarks(True)
    return shape[0].numpy(), points.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=60, help="L-BFGS iterations of the full stage")
    args = parser.parse_args()
    print("machine:", machine())
    if not os.path.isfile(ICT_ARCHIVE):
        print(f"(no ICT-FaceKit at {ICT_ARCHIVE}: nothing to measure)")
        return
    model = convert_ict(ICT_ARCHIVE)  # unpacks the archive itself
    morphable = MorphableModel(model)
    lines = contour_lines(model.mean_shape, model.landmarks68, CONTOUR_BAND_MM, CONTOUR_INNER)
    detector = MediapipeBackend()
    now7 = model.landmarks68[list(NOW7_FROM_68)]
    options = EvalConfig()
    rows: dict = {}
    for yaw in (30.0, 45.0):
        for subject in range(args.subjects):
            true_shape, truth, found = render_subject(morphable, lines, subject, yaw, detector)
            for source, targets in (("truth", truth), ("detector", found)):
                if targets is None:
                    continue
                for arm in ("fixed", "marching"):
                    shape, points = fit(morphable, lines, targets, arm == "marching", args.iterations)
                    now = now_scan_to_mesh(true_shape, true_shape[now7], shape, model.faces, shape[now7], options)
                    rows.setdefault((yaw, source, arm), []).append((
                        np.mean([nme(points[v], truth[v]) for v in (0, 2)]),
                        np.mean([nme(points[v], truth[v], slice(0, 17)) for v in (0, 2)]),
                        nme(points[1], truth[1]), float(now.distances.mean())))
    print(f"\nlandmark-only 3-view fits of {args.subjects} ICT subjects (NME vs the true 300-W-style points; NoW-style mm)")
    print(f"{'yaw':>4} {'targets':<9} {'jaw':<9} {'n':>3} {'side NME':>9} {'side jaw':>9} {'front NME':>10} {'NoW mean mm':>12}")
    for (yaw, source, arm), values in rows.items():
        v = np.array(values)
        print(f"{yaw:>4.0f} {source:<9} {arm:<9} {len(v):>3} {v[:, 0].mean():>9.3f} {v[:, 1].mean():>9.3f} "
              f"{v[:, 2].mean():>10.3f} {v[:, 3].mean():>12.3f}")


if __name__ == "__main__":
    main()
