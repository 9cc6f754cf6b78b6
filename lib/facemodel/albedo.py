"""A generic albedo model for face meshes that come without one (ICT, built-in).

Mean: one skin tone in linear RGB, tinted per parsing region (redder lips, dark
brows, eye whites with a dark iris, a dark inner mouth) and blended smoothly across
region borders. Basis: smooth, low-frequency colour variations, mutually orthogonal:
polynomials of the vertex position times the mean's relative lightness (so dark brows
and the inner mouth vary proportionally less, like a multiplicative skin change),
orthonormalised over the vertices, times three orthonormal colour directions (skin
lightness, redness, and the direction orthogonal to both, roughly yellow-blue). The
constant polynomial comes first, so the first three modes are global skin-tone
changes; higher degrees follow, with smaller standard deviations. Coefficients
~ N(0, 1) give plausible faces. Everything is deterministic (no random numbers).
"""
from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np

from lib.facemodel.schema import PARSING_CLASSES

_CLASS = {name: i for i, name in enumerate(PARSING_CLASSES)}

SKIN_LINEAR_RGB = np.array([0.58, 0.36, 0.26])
REGION_LINEAR_RGB = {
    "left_brow": np.array([0.10, 0.07, 0.05]),
    "right_brow": np.array([0.10, 0.07, 0.05]),
    "upper_lip": np.array([0.46, 0.16, 0.15]),
    "lower_lip": np.array([0.48, 0.17, 0.16]),
    "inner_mouth": np.array([0.18, 0.04, 0.04]),
    "nose": np.array([0.60, 0.35, 0.25]),
}
EYE_WHITE_LINEAR_RGB = np.array([0.70, 0.66, 0.62])
IRIS_LINEAR_RGB = np.array([0.10, 0.06, 0.04])
IRIS_RADIUS_FRACTION = 0.45  # of the eye region's half-width
MAX_POLYNOMIAL_DEGREE = 8  # enough for 3 * 165 modes on a 3D mesh
BORDER_SMOOTHING_STEPS = 1  # neighbour-averaging passes softening the region tints

# Standard deviation (per-vertex RMS, linear RGB units) of a mode, by polynomial
# degree, for (lightness, redness, yellow-blue).
MODE_STD_BY_DEGREE = np.array(
    [
        [0.09, 0.025, 0.008],
        [0.035, 0.012, 0.004],
        [0.02, 0.007, 0.003],
        [0.012, 0.005, 0.002],
        [0.008, 0.003, 0.0015],
        [0.005, 0.002, 0.001],
    ]
)


def colour_directions() -> np.ndarray:
    """[3, 3] orthonormal RGB directions: skin lightness, redness, yellow-blue."""
    lightness = SKIN_LINEAR_RGB / np.linalg.norm(SKIN_LINEAR_RGB)
    red = np.array([1.0, -0.3, -0.3])
    red = red - red @ lightness * lightness
    red /= np.linalg.norm(red)
    return np.stack([lightness, red, np.cross(lightness, red)])


def neighbour_average(values: np.ndarray, faces: np.ndarray, steps: int) -> np.ndarray:
    """Average per-vertex values [V, C] with their edge neighbours `steps` times."""
    v = len(values)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    degree = np.bincount(edges[:, 0], minlength=v)[:, None] + 1.0
    out = values
    for _ in range(steps):
        summed = out.copy()
        np.add.at(summed, edges[:, 0], out[edges[:, 1]])
        out = summed / degree
    return out


def _eye_colours(vertices: np.ndarray, labels: np.ndarray, eye_class: int) -> np.ndarray:
    """[n, 3] colours of one eye region's vertices: white, with a dark round iris."""
    pts = vertices[labels == eye_class, :2]
    centre = pts.mean(0)
    half_width = max(np.abs(pts[:, 0] - centre[0]).max(), 1e-9)
    r = np.linalg.norm(pts - centre, axis=1) / (IRIS_RADIUS_FRACTION * half_width)
    iris = np.clip(1.5 - r, 0.0, 1.0)[:, None]
    return iris * IRIS_LINEAR_RGB + (1.0 - iris) * EYE_WHITE_LINEAR_RGB


def albedo_mean_from_regions(vertices: np.ndarray, faces: np.ndarray, region_labels: np.ndarray) -> np.ndarray:
    """[V, 3] mean albedo in [0, 1]: skin tone with region tints, softened borders."""
    labels = np.asarray(region_labels)
    colours = np.tile(SKIN_LINEAR_RGB, (len(labels), 1))
    for name, rgb in REGION_LINEAR_RGB.items():
        colours[labels == _CLASS[name]] = rgb
    for eye in ("left_eye", "right_eye"):
        if np.any(labels == _CLASS[eye]):
            colours[labels == _CLASS[eye]] = _eye_colours(vertices, labels, _CLASS[eye])
    return np.clip(neighbour_average(colours, faces, BORDER_SMOOTHING_STEPS), 0.0, 1.0)


def smooth_vertex_functions(
    vertices: np.ndarray, num_modes: int, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal smooth functions over the vertices and their polynomial degrees.

    Returns (functions [V, M], degree int [M]) with 3 M >= num_modes where the mesh
    allows: monomials of the normalised vertex position (x, y, z), times `weight`
    [V] when given, of every degree up to the first that gives enough functions,
    orthonormalised in order of degree (Gram-Schmidt), so function 0 is the
    (weighted) constant. Monomials that depend on earlier ones (z on a flat mesh)
    are skipped: orthonormalising them would give noise.
    """
    p = vertices - vertices.mean(0)
    p = p / np.maximum(np.abs(p).max(0), 1e-12)
    functions, degrees = [], []
    degree = 0
    while 3 * len(functions) < num_modes and degree <= MAX_POLYNOMIAL_DEGREE:
        for combo in combinations_with_replacement(range(3), degree):
            column = np.prod(p[:, list(combo)], axis=1) if combo else np.ones(len(p))
            if weight is not None:
                column = column * weight
            norm = np.linalg.norm(column)
            for _ in range(2):  # twice, for orthogonality to working precision
                for q in functions:
                    column = column - (q @ column) * q
            if np.linalg.norm(column) > 1e-6 * norm:
                functions.append(column / np.linalg.norm(column))
                degrees.append(degree)
        degree += 1
    return np.stack(functions, 1), np.array(degrees)


def generic_albedo(
    vertices: np.ndarray, faces: np.ndarray, region_labels: np.ndarray, num_modes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A generic albedo model for a mesh.

    vertices [V, 3] (any unit, model space), faces [F, 3], region_labels uint8 [V]
    (PARSING_CLASSES), num_modes K >= 1. Returns (albedo_mean float32 [V, 3] linear RGB
    in [0, 1], albedo_basis float32 [V, 3, K]) whose columns, flattened to [3V], are
    mutually orthogonal. Mode order: for each polynomial degree, lightness modes,
    then redness, then yellow-blue (mode 0 = global lightness, 1 = global redness,
    2 = global yellow-blue; "global" = the same on all skin, proportionally less on
    darker regions). Mode k's per-vertex RMS is MODE_STD_BY_DEGREE.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    mean = albedo_mean_from_regions(vertices, faces, region_labels)
    directions = colour_directions()
    relative_lightness = mean @ directions[0] / np.linalg.norm(SKIN_LINEAR_RGB)
    functions, degrees = smooth_vertex_functions(vertices, num_modes, relative_lightness)
    v = len(vertices)
    modes = []
    for degree in range(int(degrees.max()) + 1):
        of_degree = np.flatnonzero(degrees == degree)
        for colour in range(3):
            std = MODE_STD_BY_DEGREE[min(degree, len(MODE_STD_BY_DEGREE) - 1), colour]
            for j in of_degree:
                modes.append(functions[:, j, None] * directions[colour][None] * std * np.sqrt(v))
    if len(modes) < num_modes:
        raise ValueError(f"generic_albedo: the mesh supports only {len(modes)} smooth modes, {num_modes} asked")
    basis = np.stack(modes[:num_modes], axis=2)
    return mean.astype(np.float32), basis.astype(np.float32)
