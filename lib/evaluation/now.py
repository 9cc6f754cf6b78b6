"""The NoW benchmark's scan-to-mesh procedure, as the seed applies it.

Steps (all lengths in mm; see doc/evaluation.md):

1. Crop the ground-truth scan to a sphere around the face centre: the nose point
   moved 0.3 of the way toward the nose bridge (midpoint of the inner eye corners);
   radius = factor x mean(outer-eye distance, nose length).
2. Similarity Procrustes (Umeyama, with scale, no reflection) taking the predicted
   mesh's 7 landmarks onto the scan's.
3. Rigid + scale refinement of the predicted mesh minimising the sum of squared
   scan-to-mesh distances (Gauss-Newton / Levenberg-Marquardt, NoW uses dogleg on
   the same objective).
4. Unsigned distance from every cropped scan point to the aligned predicted mesh.

The 7 landmarks are, in order: right outer eye corner, right inner eye corner, left
inner eye corner, left outer eye corner, nose, right mouth corner, left mouth corner
(NoW's order; the seed's BFM09 vertices 2215, 5828, 10455, 14065, 8192, 5522, 10795;
face models expose them as `extra_landmarks['now7']`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from lib.config.schema import EvalConfig
from lib.errors import UserError
from lib.evaluation.distance import MeshDistance
from lib.geometry.similarity import similarity_transform

# Positions inside the 7-point list (NoW's order).
OUTER_EYES = (0, 3)
INNER_EYES = (1, 2)
NOSE = 4
# How far from the nose point toward the nose bridge the crop centre sits (NoW).
CENTRE_TOWARD_BRIDGE = 0.3
# Relative decrease of the squared-distance sum below which refinement has converged
# (the mean error then moves by < 1e-4 mm; measured in bench/evaluation.py).
REFINE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation; rotation [3, 3] proper, translation [3] mm."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def identity(cls) -> "Similarity":
        return cls(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points [N, 3] -> transformed [N, 3] (new array)."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def inverse(self) -> "Similarity":
        rt = self.rotation.T
        return Similarity(1.0 / self.scale, rt, -(rt @ self.translation) / self.scale)

    def then(self, other: "Similarity") -> "Similarity":
        """The transform applying self first, then other."""
        return Similarity(
            other.scale * self.scale,
            other.rotation @ self.rotation,
            other.scale * other.rotation @ self.translation + other.translation,
        )


@dataclass
class NowResult:
    """Output of `now_scan_to_mesh`.

    distances [Nc] mm: cropped scan point -> aligned predicted mesh; crop_mask [N]
    bool over the input scan points; aligned_verts [V, 3] mm: the prediction in the
    scan's frame; transform: prediction -> scan frame; landmark_transform: the
    7-point Procrustes alone; centre [3] mm, radius mm: the crop sphere.
    """

    distances: np.ndarray
    crop_mask: np.ndarray
    aligned_verts: np.ndarray
    transform: Similarity
    landmark_transform: Similarity
    centre: np.ndarray
    radius: float


def _check_landmarks(landmarks, name: str) -> np.ndarray:
    arr = np.asarray(landmarks, np.float64)
    if arr.shape != (7, 3):
        raise UserError(f"{name}: NoW alignment needs 7 landmarks of shape [7, 3], got {tuple(arr.shape)}")
    return arr


def crop_sphere(landmarks7, radius_factor: float) -> tuple[np.ndarray, float]:
    """Face-centre sphere from the scan's 7 landmarks [7, 3] mm -> (centre [3], radius mm)."""
    lm = _check_landmarks(landmarks7, "scan landmarks")
    nose = lm[NOSE]
    bridge = lm[list(INNER_EYES)].mean(axis=0)
    centre = nose + CENTRE_TOWARD_BRIDGE * (bridge - nose)
    outer_eye = np.linalg.norm(lm[OUTER_EYES[0]] - lm[OUTER_EYES[1]])
    nose_length = np.linalg.norm(bridge - nose)
    return centre, float(radius_factor * (outer_eye + nose_length) / 2.0)


def crop_mask(points, centre, radius: float) -> np.ndarray:
    """bool [N]: points [N, 3] within `radius` of `centre` (boundary included, as NoW)."""
    return np.linalg.norm(np.asarray(points, np.float64) - centre, axis=1) <= radius


def similarity_procrustes(source, target) -> Similarity:
    """Least-squares similarity taking source [N, 3] onto target [N, 3] (Umeyama 1991,
    `lib.geometry.similarity_transform` in float64).

    No reflection: the sign of the smallest singular direction is fixed so that the
    rotation is proper (NoW's port of MATLAB procrustes allows 'best' reflection,
    which only differs for mirrored inputs).
    """
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if ((src - src.mean(0)) ** 2).sum() <= 0:
        raise UserError("procrustes: the source landmarks coincide; cannot estimate a similarity")
    scale, rotation, translation = similarity_transform(torch.from_numpy(src)[None], torch.from_numpy(dst)[None])
    return Similarity(float(scale[0]), rotation[0].numpy(), translation[0].numpy())


def _rodrigues(omega: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(omega))
    if theta < 1e-12:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def refine_similarity(
    scan_points: np.ndarray, mesh: MeshDistance, init: Similarity, iterations: int
) -> Similarity:
    """Similarity T (mesh frame -> scan frame) minimising sum_i d(p_i, T(mesh))^2.

    scan_points [N, 3] mm; mesh: the tree of the predicted mesh in its own frame
    (built once: the scan is mapped by T^-1 instead of moving the mesh, distances scale
    by T's scale). Levenberg-Marquardt on the unsigned distances; the Jacobian row of
    d_i is the surface velocity at the closest point along the unit direction to the
    scan point (the face normal where d_i = 0). Stops after `iterations` accepted or
    rejected steps, or when the relative decrease falls below REFINE_TOLERANCE.
    """
    pts = np.asarray(scan_points, np.float64)
    centre = pts.mean(axis=0)  # rotate and scale about the scan's centroid: well conditioned
    face_normals = _face_normals(mesh)

    def evaluate(t: Similarity):
        local = t.inverse().apply(pts)
        dist, face, closest = mesh.query(local)
        return t.scale * dist, t.apply(closest), face

    current = init
    dist, closest, face = evaluate(current)
    energy = float((dist**2).sum())
    damping = 1e-3
    for _ in range(iterations):
        if energy == 0.0:  # already exact
            break
        diff = pts - closest
        with np.errstate(divide="ignore", invalid="ignore"):
            direction = diff / dist[:, None]
        on_surface = dist <= 1e-9 * max(current.scale, 1.0)
        direction[on_surface] = face_normals[face[on_surface]] @ current.rotation.T
        arm = closest - centre
        jac = -np.concatenate(
            [np.cross(arm, direction), (direction * arm).sum(1, keepdims=True), direction], axis=1
        )
        normal_eq = jac.T @ jac
        rhs = -jac.T @ dist
        step = np.linalg.solve(normal_eq + damping * np.diag(np.diag(normal_eq) + 1e-12), rhs)
        omega, sigma, tau = step[:3], step[3], step[4:]
        rotation = _rodrigues(omega)
        delta = Similarity(1.0 + sigma, rotation, centre + tau - (1.0 + sigma) * rotation @ centre)
        if delta.scale <= 0:
            damping *= 10.0
            continue
        candidate = current.then(delta)
        cand_dist, cand_closest, cand_face = evaluate(candidate)
        cand_energy = float((cand_dist**2).sum())
        if cand_energy < energy:
            decrease = (energy - cand_energy) / max(energy, 1e-300)
            current, dist, closest, face, energy = candidate, cand_dist, cand_closest, cand_face, cand_energy
            damping = max(damping / 10.0, 1e-9)
            if decrease < REFINE_TOLERANCE:
                break
        else:
            damping *= 10.0
    return current


def _face_normals(mesh: MeshDistance) -> np.ndarray:
    """Unit normals [F, 3] indexed like the mesh's input faces (zero for degenerate ones)."""
    normals = np.zeros((mesh.num_faces, 3))
    v, tri = mesh.verts, mesh.triangles
    n = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    normals[mesh.triangle_ids] = n / np.linalg.norm(n, axis=1, keepdims=True)
    return normals


def now_scan_to_mesh(
    scan_points,
    scan_landmarks7,
    pred_verts,
    pred_faces,
    pred_landmarks7,
    options: EvalConfig,
) -> NowResult:
    """The whole NoW procedure (module docstring) for one scan and one prediction.

    scan_points [N, 3] mm (scan vertices or points sampled on it), scan_landmarks7
    [7, 3] mm; pred_verts [V, 3] (any frame and scale), pred_faces [F, 3],
    pred_landmarks7 [7, 3] in the prediction's frame. Uses options.crop_radius_factor,
    .refine_rigid, .refine_iterations, .refine_points, .seed.
    """
    scan = np.asarray(scan_points, np.float64)
    if scan.ndim != 2 or scan.shape[1] != 3:
        raise UserError(f"scan points must have shape [N, 3], got {tuple(scan.shape)}")
    pred = np.asarray(pred_verts, np.float64)
    centre, radius = crop_sphere(scan_landmarks7, options.crop_radius_factor)
    mask = crop_mask(scan, centre, radius)
    cropped = scan[mask]
    if len(cropped) == 0:
        raise UserError("scan: no point lies inside the NoW crop sphere; check the scan's 7 landmarks and units (mm)")
    landmark_t = similarity_procrustes(_check_landmarks(pred_landmarks7, "predicted landmarks"), scan_landmarks7)
    mesh = MeshDistance(pred, pred_faces)
    transform = landmark_t
    if options.refine_rigid:
        subset = cropped
        if 0 < options.refine_points < len(cropped):
            rng = np.random.default_rng(options.seed)
            subset = cropped[rng.choice(len(cropped), options.refine_points, replace=False)]
        transform = refine_similarity(subset, mesh, landmark_t, options.refine_iterations)
    distances = transform.scale * mesh.distance(transform.inverse().apply(cropped))
    return NowResult(distances, mask, transform.apply(pred), transform, landmark_t, centre, radius)


def error_statistics(distances) -> dict[str, float]:
    """Summary of distances [N] mm: mean, median, std, rms, and 'RMSE'.

    'RMSE' is the seed's name for the mean distance (DF-MVR's Pixel-Face tables call
    the NoW mean error RMSE); the root mean square proper is 'rms'.
    """
    d = np.asarray(distances, np.float64)
    if d.size == 0:
        raise UserError("error statistics: no distances (empty crop?)")
    return {
        "mean": float(d.mean()),
        "median": float(np.median(d)),
        "std": float(d.std()),
        "rms": float(np.sqrt((d**2).mean())),
        "RMSE": float(d.mean()),
        "points": int(d.size),
    }


def vertex_errors(verts, scan_points, scan_faces, centre, radius: float) -> np.ndarray:
    """Error of each aligned predicted vertex, for heat maps: float [V] mm.

    verts [V, 3] in the scan frame; scan_points [N, 3]; scan_faces [F, 3] indexing
    scan_points, or None for a bare point cloud (then: distance to the nearest scan
    point). Vertices inside the crop sphere get their distance to the whole scan (so
    the crop's rim does not show up as error); the others get NaN (not measured).
    """
    v = np.asarray(verts, np.float64)
    scan = np.asarray(scan_points, np.float64)
    out = np.full(len(v), np.nan)
    measured = crop_mask(v, centre, radius)
    if scan_faces is not None and len(scan_faces):
        out[measured] = MeshDistance(scan, scan_faces).distance(v[measured])
    else:
        out[measured] = cKDTree(scan).query(v[measured])[0]
    return out
