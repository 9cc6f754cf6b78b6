"""The built-in SYNTHETIC face model, generated deterministically by code.

Nothing is downloaded and nothing is scanned: the geometry is a parametric surface
(an elliptic "head" cylinder from under the chin to the top of the forehead, from
behind one ear to behind the other) plus named smooth features (brow ridge, eye
sockets and eyeballs, nose, cheeks, lips with a mouth slit, chin). The identity and
expression bases are smooth displacement fields, the albedo is the generic one of
`lib.facemodel.albedo`, the region labels come from `lib.facemodel.regions`. It
serves the embedded default config and fast tests; it is NOT a statistical model of
real faces, so reconstructions with it are only as good as a face-like prior.

Conventions (DESIGN.md): millimetres, +x = subject's left = image right in a frontal
view, +y up, +z toward the camera, triangles counter-clockwise seen from outside.
The generator works in "design coordinates" (origin near the nose bridge, nose tip at
z ~ 100 mm); the finished mesh is translated so that the mean of its vertices is the
origin, like Deep3DFaceRecon's re-centred BFM.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.interpolate import PchipInterpolator

from lib.facemodel.regions import landmark_derived_fields
from lib.facemodel.schema import FaceModel

NUM_ID_MODES = 60
NUM_ALBEDO_MODES = 60
RANDOM_MODES_SEED = 20260403
# Largest vertex displacement (mm) of the seeded random identity modes at
# coefficient 1: RANDOM_MODE_PEAK_MM * RANDOM_MODE_PEAK_DECAY**k, 1 mm down to 0.25 mm
# (the named modes have their own peaks, 1.5-4 mm).
RANDOM_MODE_PEAK_MM = 1.0
RANDOM_MODE_PEAK_DECAY = 0.965

# ----------------------------------------------------------------------------- grid

HEAD_AZIMUTH_MAX_RAD = np.deg2rad(100.0)  # columns run to just behind the ears
NUM_COLUMNS = 73  # odd, so one column is the midline x = 0
EAR_PLANE_Z_MM = -20.0  # depth of the head's widest cross-section (the ears)
MOUTH_Y_MM = -36.0  # the mouth slit row


def grid_rows_mm() -> np.ndarray:
    """Row heights y [R] (mm), denser over the mouth and eyes.

    The mouth band has rows at the two lip edges (1.5 mm above and below the slit)
    and three rows between them (the slit and +-0.75 mm), so that the inner mouth
    is three rows of vertices that take up most of the stretch when the jaw opens.
    """
    slit_rows = MOUTH_Y_MM + np.array([-0.75, 0.75])
    return np.concatenate(
        [
            np.arange(-84.0, -50.0, 3.0),  # chin and jaw
            np.sort(np.concatenate([np.arange(-49.5, -23.9, 1.5), slit_rows])),  # lips
            np.arange(-22.0, 19.9, 2.0),  # nose and cheeks
            np.arange(20.0, 40.0, 1.5),  # eyes
            np.arange(42.0, 105.1, 3.5),  # brows and forehead
        ]
    )


def grid_azimuths_rad() -> np.ndarray:
    """Column azimuths [C] (radians about the vertical axis), denser at the front."""
    s = np.linspace(-1.0, 1.0, NUM_COLUMNS)
    return HEAD_AZIMUTH_MAX_RAD * (0.55 * s + 0.45 * s**3)


# Half-width of the head cross-section (mm) and depth of its front (mm) by height.
HEAD_HALF_WIDTH_MM = PchipInterpolator(
    [-90, -84, -75, -60, -45, -25, 0, 30, 60, 85, 110], [14, 24, 36, 50, 59, 66, 71, 73, 71, 64, 50]
)
HEAD_FRONT_Z_MM = PchipInterpolator(
    [-90, -84, -76, -70, -40, 0, 30, 50, 75, 95, 110], [40, 52, 64, 69, 74, 76, 74, 73, 66, 53, 40]
)


def base_head(rows_mm: np.ndarray, azimuths: np.ndarray) -> np.ndarray:
    """Grid points [R, C, 3] (mm) of the featureless head surface.

    Each row is a horizontal cross-section x = W sin(a), z = z_ear + D |cos a|^0.8
    sign(cos a), whose exponent below 1 flattens the front of the face.
    """
    y = rows_mm[:, None] * np.ones_like(azimuths)[None]
    half_width = HEAD_HALF_WIDTH_MM(y)
    depth = HEAD_FRONT_Z_MM(y) - EAR_PLANE_Z_MM
    cos_a = np.cos(azimuths)[None]
    x = half_width * np.sin(azimuths)[None]
    z = EAR_PLANE_Z_MM + depth * np.sign(cos_a) * np.abs(cos_a) ** 0.8
    return np.stack([x, y, z], axis=-1)


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """Triangles [2 (R-1)(C-1), 3] of a row-major grid whose rows go up (+y) and
    columns go right (+x): counter-clockwise seen from the front (+z)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    v00 = (r * cols + c).ravel()
    v10, v01, v11 = v00 + 1, v00 + cols, v00 + cols + 1
    return np.concatenate([np.stack([v00, v10, v01], 1), np.stack([v10, v11, v01], 1)])


# ------------------------------------------------------------------------- features


def gauss(x, y, centre_x_mm, centre_y_mm, sigma_x_mm, sigma_y_mm):
    """Anisotropic Gaussian bump (peak 1) over the frontal plane."""
    return np.exp(-0.5 * (((x - centre_x_mm) / sigma_x_mm) ** 2 + ((y - centre_y_mm) / sigma_y_mm) ** 2))


def smoothstep(edge0, edge1, t):
    """0 below edge0, 1 above edge1, C1-smooth in between (edges may be reversed)."""
    s = np.clip((t - edge0) / (edge1 - edge0), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def brow_ridge(x, y):
    """Bony ridge above the eyes (+5 mm) and the glabella between them."""
    return 5.0 * gauss(np.abs(x), y, 30.0, 46.0, 18.0, 7.0) + 3.0 * gauss(x, y, 0.0, 40.0, 10.0, 8.0)


def eye_sockets(x, y):
    """Orbits sunk into the face (-10 mm) with the eyeball and lids bulging back (+6)."""
    return -10.0 * gauss(np.abs(x), y, 32.0, 30.0, 13.0, 9.5) + 6.0 * gauss(np.abs(x), y, 32.0, 29.0, 9.0, 5.5)


NOSE_PROFILE_MM = PchipInterpolator(
    [-22, -17, -13, -8, -3, 5, 20, 33, 45], [0, 3, 13, 23, 24, 19.5, 12, 5, 0]
)
NOSE_HALF_WIDTH_MM = PchipInterpolator([-22, -5, 10, 33, 45], [9, 8.5, 6.5, 5.5, 6])


def nose(x, y):
    """Nose: a ridge from the root (y 33 mm) to the tip (y -4 mm, +24 mm proud),
    back in to the subnasale (y -17 mm), with a Gaussian cross-section. The profile
    is 0 at both ends of its table, so clipping y there extends it by 0."""
    yc = np.clip(y, -22.0, 45.0)
    return NOSE_PROFILE_MM(yc) * np.exp(-0.5 * (x / NOSE_HALF_WIDTH_MM(yc)) ** 2)


def nose_alae(x, y):
    """Nostril wings either side of the tip."""
    return 7.0 * gauss(np.abs(x), y, 13.0, -11.0, 5.0, 4.5)


def cheeks(x, y):
    """Cheek fullness and cheekbones."""
    return 4.0 * gauss(np.abs(x), y, 42.0, -5.0, 16.0, 16.0) + 3.0 * gauss(np.abs(x), y, 50.0, 15.0, 12.0, 8.0)


def nasolabial_folds(x, y):
    """Creases from the nostril wings to beside the mouth corners (-1.5 mm)."""
    start, end = np.array([17.0, -12.0]), np.array([29.0, -40.0])
    along = end - start
    rel = np.stack([np.abs(x), y], -1) - start
    t = np.clip(rel @ along / (along @ along), 0.0, 1.0)
    distance = np.linalg.norm(rel - t[..., None] * along, axis=-1)
    return -1.5 * np.exp(-0.5 * (distance / 2.5) ** 2) * np.sin(np.pi * t)


def temples(x, y):
    """Shallow hollows at the temples."""
    return -3.0 * gauss(np.abs(x), y, 60.0, 40.0, 8.0, 12.0)


def muzzle(x, y):
    """The mouth area rides on the dental arch, ahead of the cheeks."""
    return 4.0 * gauss(x, y, 0.0, -38.0, 22.0, 12.0)


def lips(x, y):
    """Upper lip (y -29..-34.5 mm) and fuller lower lip (y -37.5..-46 mm)."""
    width = smoothstep(27.0, 19.0, np.abs(x))
    upper = 3.5 * np.exp(-0.5 * ((y + 31.5) / 2.8) ** 2)
    lower = 4.5 * np.exp(-0.5 * ((y + 41.0) / 3.5) ** 2)
    return width * (upper + lower)


def mouth_slit_mask(x, y):
    """1 on the slit rows (|y - slit| <= 0.8 mm) for |x| < 19 mm, 0 on the lip
    edges (1.5 mm away) and at the mouth corners (25 mm)."""
    return smoothstep(1.3, 0.8, np.abs(y - MOUTH_Y_MM)) * smoothstep(25.0, 19.0, np.abs(x))


def mouth_slit(x, y):
    """The slit between the lips, 7 mm deep: the inner mouth seen when closed."""
    return -7.0 * mouth_slit_mask(x, y)


def chin(x, y):
    """Chin boss (+6 mm) and the mentolabial groove above it."""
    return 6.0 * gauss(x, y, 0.0, -70.0, 14.0, 9.0) - 3.0 * gauss(x, y, 0.0, -52.0, 15.0, 4.0)


FEATURES = {
    "brow_ridge": brow_ridge,
    "eye_sockets": eye_sockets,
    "nose": nose,
    "nose_alae": nose_alae,
    "cheeks": cheeks,
    "nasolabial_folds": nasolabial_folds,
    "temples": temples,
    "muzzle": muzzle,
    "lips": lips,
    "mouth_slit": mouth_slit,
    "chin": chin,
}
"""Named depth offsets dz(x, y) in mm, summed onto the base head."""


def feature_depths(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each feature's depth offset [V] (mm) at frontal positions x, y [V] (mm)."""
    return {name: fn(x, y) for name, fn in FEATURES.items()}


# ------------------------------------------------------------------------ landmarks


def _mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(-px, py) for px, py in points]


# Design positions (x, y) mm of the 68 iBUG landmarks; subject's right is -x.
_JAW_Y_MM = (18.0, 2.0, -14.0, -30.0, -45.0, -58.0, -68.0, -76.0)
_JAW_INSET = (0.97, 0.97, 0.97, 0.96, 0.95, 0.9, 0.75, 0.45)  # fraction of the half-width
_RIGHT_JAW = [(-float(HEAD_HALF_WIDTH_MM(y)) * f, y) for y, f in zip(_JAW_Y_MM, _JAW_INSET)]
_RIGHT_BROW = [(-52.0, 43.0), (-44.0, 47.5), (-34.0, 49.0), (-24.0, 48.0), (-13.0, 45.5)]
_RIGHT_EYE = [(-47.0, 29.0), (-38.0, 33.5), (-26.0, 33.5), (-17.0, 29.0), (-26.0, 24.5), (-38.0, 24.5)]
_LEFT_EYE = [(17.0, 29.0), (26.0, 33.5), (38.0, 33.5), (47.0, 29.0), (38.0, 24.5), (26.0, 24.5)]
LANDMARK_DESIGN_XY_MM = np.array(
    _RIGHT_JAW
    + [(0.0, -80.0)]
    + _mirror(_RIGHT_JAW)[::-1]
    + _RIGHT_BROW
    + _mirror(_RIGHT_BROW)[::-1]
    + [(0.0, 33.0), (0.0, 20.0), (0.0, 8.0), (0.0, -4.0)]  # 27-30 bridge to tip
    + [(-12.0, -14.0), (-6.0, -16.0), (0.0, -17.0), (6.0, -16.0), (12.0, -14.0)]  # 31-35
    + _RIGHT_EYE
    + _LEFT_EYE
    + [(-25.0, -36.0), (-16.0, -31.5), (-7.0, -29.0), (0.0, -30.0), (7.0, -29.0), (16.0, -31.5)]  # 48-53
    + [(25.0, -36.0), (16.0, -42.5), (7.0, -45.5), (0.0, -46.0), (-7.0, -45.5), (-16.0, -42.5)]  # 54-59
    + [(-21.0, -36.0), (-9.0, -34.5), (0.0, -34.5), (9.0, -34.5)]  # 60-63
    + [(21.0, -36.0), (9.0, -37.5), (0.0, -37.5), (-9.0, -37.5)]  # 64-67
)
LANDMARK_MAX_AZIMUTH_RAD = np.deg2rad(80.0)  # landmarks sit in front of the silhouette


def pick_landmarks(vertices: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """int64 [68]: the front vertex nearest (in x, y) to each design landmark."""
    candidates = np.flatnonzero(np.abs(azimuth) <= LANDMARK_MAX_AZIMUTH_RAD)
    d = np.linalg.norm(vertices[candidates, None, :2] - LANDMARK_DESIGN_XY_MM[None], axis=-1)
    return candidates[d.argmin(0)]


# --------------------------------------------------------------------- basis tools


def orthogonal_modes(raw: list[np.ndarray], peaks_mm: np.ndarray) -> np.ndarray:
    """Orthogonalise displacement fields [V, 3] in order and scale mode k so that its
    largest vertex displacement is peaks_mm[k]; returns [V, 3, K].

    Gram-Schmidt (QR) keeps mode 0's direction and each later mode's part that is
    new, so the named modes keep their meaning; signs follow the raw fields. Peaks,
    not RMS, set the scale because most modes are local (a nose, a chin).
    """
    v = raw[0].shape[0]
    q, r = np.linalg.qr(np.stack([d.reshape(-1) for d in raw], 1))
    modes = (q * np.sign(np.diag(r))[None]).reshape(v, 3, -1)
    peak = np.linalg.norm(modes, axis=1).max(0)
    return modes * (np.asarray(peaks_mm) / peak)[None, None]


def _field(dx=0.0, dy=0.0, dz=0.0, n=None):
    """A displacement field [n, 3] from per-axis components (scalars or [n] arrays)."""
    return np.stack(np.broadcast_arrays(dx, dy, dz, np.zeros(n))[:3], 1).astype(np.float64)


# ---------------------------------------------------------------------- identity


def identity_fields(p: np.ndarray, depth: dict[str, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Raw identity displacement fields [V, 3] and each one's peak displacement (mm)
    at coefficient 1: named ones first, then seeded random smooth ones."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    n = len(p)
    sign_x = np.sign(x)
    lower_face = smoothstep(-5.0, -35.0, y)
    nose_area = gauss(x, y, 0.0, 5.0, 14.0, 22.0)
    named = [  # (peak mm, field)
        (4.0, _field(dx=0.05 * x, n=n)),  # face width
        (4.0, _field(dy=0.05 * (y - 20.0) * lower_face, n=n)),  # lower face length
        (2.0, _field(dz=0.05 * z, n=n)),  # head depth
        (3.0, _field(dz=depth["nose"] + depth["nose_alae"], n=n)),  # nose protrusion
        (3.0, _field(dx=0.08 * x * lower_face * smoothstep(-20.0, -50.0, y), n=n)),  # jaw width
        (3.0, _field(dz=-0.2 * (y - 40.0) * smoothstep(40.0, 60.0, y), n=n)),  # forehead slope
        (2.5, _field(dy=-3.0 * nose_area * smoothstep(35.0, -5.0, y), n=n)),  # nose length
        (2.5, _field(dz=depth["chin"], n=n)),  # chin protrusion
        (2.5, _field(dy=-3.0 * smoothstep(-55.0, -80.0, y), n=n)),  # chin height
        (2.0, _field(dx=0.2 * x * gauss(x, y, 0.0, -11.0, 16.0, 7.0), n=n)),  # nose width
        (2.0, _field(dx=2.0 * sign_x * gauss(np.abs(x), y, 32.0, 29.0, 14.0, 10.0), n=n)),  # eye spacing
        (2.0, _field(dz=depth["cheeks"], dx=0.05 * x * gauss(np.abs(x), y, 45.0, 5.0, 15.0, 15.0), n=n)),  # cheeks
        (2.0, _field(dx=0.05 * x * gauss(x, y, 0.0, 45.0, 80.0, 25.0), n=n)),  # temple width
        (1.5, _field(dz=depth["lips"], n=n)),  # lip thickness
        (1.5, _field(dz=depth["brow_ridge"], n=n)),  # brow ridge
        (1.5, _field(dy=2.0 * gauss(np.abs(x), y, 32.0, 29.0, 16.0, 12.0), n=n)),  # eye height
        (1.5, _field(dx=0.12 * x * gauss(x, y, 0.0, -38.0, 25.0, 9.0), n=n)),  # mouth width
        (1.5, _field(dy=2.0 * gauss(x, y, 0.0, -38.0, 28.0, 12.0), n=n)),  # mouth height
        (1.5, _field(dz=depth["eye_sockets"], n=n)),  # eye-socket depth
        (1.5, _field(dy=2.0 * gauss(np.abs(x), y, 32.0, 47.0, 20.0, 8.0), n=n)),  # brow height
    ]
    rng = np.random.default_rng(RANDOM_MODES_SEED)
    random_fields = []
    for _ in range(NUM_ID_MODES - len(named)):
        field = np.zeros((n, 3))
        for _ in range(4):
            centre = rng.uniform([-70.0, -80.0], [70.0, 100.0])
            sigma = rng.uniform(15.0, 35.0, size=2)
            direction = rng.normal(size=3) * [0.4, 0.4, 1.0]
            field += gauss(x, y, centre[0], centre[1], sigma[0], sigma[1])[:, None] * direction
        random_fields.append(field)
    random_peaks = RANDOM_MODE_PEAK_MM * RANDOM_MODE_PEAK_DECAY ** np.arange(len(random_fields))
    peaks = np.concatenate([[peak for peak, _ in named], random_peaks])
    return [field for _, field in named] + random_fields, peaks


# ------------------------------------------------------------------- expression


def _lower_jaw_weight(x, y):
    """How much of the jaw's motion a vertex follows: 1 below the mouth slit, 0
    above it, with a sharp step across the lips and a soft one over the cheeks."""
    softness_mm = 0.4 + 0.25 * np.maximum(np.abs(x) - 20.0, 0.0)
    return 1.0 / (1.0 + np.exp(-(MOUTH_Y_MM - y) / softness_mm))


JAW_PIVOT_YZ_MM = (15.0, -20.0)  # temporomandibular joint, in front of the ears
JAW_OPEN_RAD = 0.18  # per unit coefficient: the lips part by ~18 mm


def _move(weight: np.ndarray, dx_mm=0.0, dy_mm=0.0, dz_mm=0.0) -> np.ndarray:
    """Displacement field [V, 3]: a weight [V] in [0, 1] times one vector (mm)."""
    return weight[:, None] * np.array([dx_mm, dy_mm, dz_mm])


def expression_fields(p: np.ndarray) -> dict[str, np.ndarray]:
    """Named expression displacement fields [V, 3] (mm at coefficient 1) at the
    mean-shape positions p [V, 3] (design coordinates)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    n = len(p)
    jaw = _lower_jaw_weight(x, y)
    lips_area = gauss(x, y, 0.0, -37.0, 20.0, 9.0)
    upper_lip = (1.0 - jaw) * gauss(x, y, 0.0, -31.0, 20.0, 6.0)
    lower_lip = jaw * gauss(x, y, 0.0, -42.0, 20.0, 6.0)
    pivot_y, pivot_z = JAW_PIVOT_YZ_MM
    fields: dict[str, np.ndarray] = {}
    # Linearised rotation about the x axis through the jaw joint; the slit rows are
    # pulled back so the opening shows a cavity, not a membrane at the lips.
    fields["jaw_open"] = _field(
        dy=-JAW_OPEN_RAD * (z - pivot_z) * jaw,
        dz=JAW_OPEN_RAD * (y - pivot_y) * jaw - 15.0 * mouth_slit_mask(x, y),
        n=n,
    )
    for side, sx in (("L", 1.0), ("R", -1.0)):
        corner = gauss(x, y, 25.0 * sx, MOUTH_Y_MM, 11.0, 9.0)
        cheek = gauss(x, y, 38.0 * sx, -15.0, 14.0, 12.0)
        fields[f"smile_{side}"] = _move(corner, 4.0 * sx, 5.0, -2.0) + _move(cheek, sx, 2.5, 2.0)
        fields[f"frown_{side}"] = _move(corner, 0.0, -4.0, -0.5)
        stretch = gauss(x, y, 25.0 * sx, MOUTH_Y_MM, 10.0, 8.0)
        fields[f"stretch_{side}"] = _move(stretch, 5.0 * sx) + _move(corner, 0.0, -1.0, -2.0)
    fields["lip_pucker"] = _field(dx=-0.25 * x * lips_area, dz=7.0 * lips_area, n=n)
    fields["lip_funnel"] = _field(
        dx=-0.12 * x * lips_area, dy=0.6 * (y - MOUTH_Y_MM) * lips_area, dz=4.0 * lips_area, n=n
    )
    fields["mouth_sideways"] = _move(gauss(x, y, 0.0, -38.0, 25.0, 14.0), 5.0)
    fields["upper_lip_raise"] = _move(upper_lip, 0.0, 3.0, 1.0)
    fields["lower_lip_depress"] = _move(lower_lip, 0.0, -3.0, 1.0)
    fields["lips_press"] = _field(dy=-0.3 * (y - MOUTH_Y_MM) * lips_area, dz=-3.0 * lips_area, n=n)
    for side, sx in (("L", 1.0), ("R", -1.0)):
        fields[f"brow_raise_{side}"] = _move(gauss(x, y, 32.0 * sx, 46.0, 22.0, 14.0), 0.0, 6.0, 0.5)
    inner_brows = gauss(np.abs(x), y, 18.0, 44.0, 12.0, 8.0)
    fields["brow_frown"] = _field(dx=-2.5 * np.sign(x) * inner_brows, dy=-4.0 * inner_brows, n=n)
    for side, sx in (("L", 1.0), ("R", -1.0)):
        across = np.exp(-0.5 * ((x - 32.0 * sx) / 12.0) ** 2)
        upper_lid = across * smoothstep(24.0, 26.0, y) * smoothstep(42.0, 34.0, y)
        lower_lid = across * smoothstep(29.0, 25.0, y) * smoothstep(16.0, 22.0, y)
        # Closing: every upper-lid vertex slides down to the lower lid line (y 25 mm).
        fields[f"eye_blink_{side}"] = _field(dy=-(y - 25.0) * upper_lid * (y > 25.0), dz=1.5 * upper_lid, n=n)
        fields[f"eye_wide_{side}"] = _move(upper_lid, 0.0, 3.0)
        cheek_top = gauss(x, y, 38.0 * sx, 10.0, 14.0, 10.0)
        fields[f"squint_{side}"] = _move(lower_lid, 0.0, 2.0) + _move(cheek_top, 0.0, 1.5)
    puff = gauss(np.abs(x), y, 40.0, -30.0, 15.0, 14.0)
    fields["cheek_puff"] = _field(dx=4.0 * np.sign(x) * puff, dz=6.0 * puff, n=n)
    fields["nose_wrinkle"] = _move(gauss(np.abs(x), y, 12.0, -5.0, 8.0, 10.0), 0.0, 3.0, 1.0)
    fields["jaw_sideways"] = _move(jaw, 6.0)
    fields["jaw_forward"] = _move(jaw, 0.0, 0.0, 5.0)
    return fields


EXPRESSION_NAMES = (
    "jaw_open",
    "smile_L", "frown_L", "stretch_L", "smile_R", "frown_R", "stretch_R",
    "lip_pucker", "lip_funnel", "mouth_sideways", "upper_lip_raise", "lower_lip_depress", "lips_press",
    "brow_raise_L", "brow_raise_R", "brow_frown",
    "eye_blink_L", "eye_wide_L", "squint_L", "eye_blink_R", "eye_wide_R", "squint_R",
    "cheek_puff", "nose_wrinkle", "jaw_sideways", "jaw_forward",
)  # fmt: skip
"""Order of the expression basis columns (L / R = subject's left / right, +x / -x)."""


# ------------------------------------------------------------------------- build


def cylindrical_uvs(rows_mm: np.ndarray, azimuths: np.ndarray) -> np.ndarray:
    """[R*C, 2] texture coordinates: u along the azimuth, v up the head, in [0, 1]."""
    u = (azimuths - azimuths[0]) / (azimuths[-1] - azimuths[0])
    v = (rows_mm - rows_mm[0]) / (rows_mm[-1] - rows_mm[0])
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel()], 1)


@lru_cache(maxsize=1)
def build_builtin_face_model() -> FaceModel:
    """The built-in synthetic face model (deterministic, cached; treat as read-only).

    Every call returns the same FaceModel object. Its arrays are left writeable
    (torch.as_tensor warns on read-only numpy arrays), so callers must not edit
    them in place. About 6k vertices, 60 identity / 26 expression / 60 albedo modes, all 10 parsing
    classes, 68 landmarks, 'now7' extra landmarks and cylindrical UVs.
    """
    rows_mm, azimuths = grid_rows_mm(), grid_azimuths_rad()
    head = base_head(rows_mm, azimuths).reshape(-1, 3)
    azimuth = np.broadcast_to(azimuths[None], (len(rows_mm), len(azimuths))).reshape(-1)
    faces = grid_faces(len(rows_mm), len(azimuths))
    # Features and expressions fade out behind the ears so they never fold the
    # back of the grid.
    front = smoothstep(np.deg2rad(95.0), np.deg2rad(75.0), np.abs(azimuth))
    depth = {name: front * dz for name, dz in feature_depths(head[:, 0], head[:, 1]).items()}
    mean = head.copy()
    mean[:, 2] += sum(depth.values())
    landmarks68 = pick_landmarks(mean, azimuth)

    id_raw, id_peaks_mm = identity_fields(mean, depth)
    id_basis = orthogonal_modes(id_raw, id_peaks_mm)
    exp_fields = expression_fields(mean)
    exp_basis = np.stack([exp_fields[name] * front[:, None] for name in EXPRESSION_NAMES], axis=2)

    # Translations leave the bases unchanged; only the mean moves.
    mean = mean - mean.mean(0)
    model = FaceModel(
        name="builtin",
        mean_shape=mean,
        id_basis=id_basis,
        exp_basis=exp_basis,
        faces=faces,
        landmarks68=landmarks68,
        **landmark_derived_fields(mean, faces, landmarks68, NUM_ALBEDO_MODES),
        uv_coords=cylindrical_uvs(rows_mm, azimuths),
        uv_faces=faces,
        description=(
            "SYNTHETIC built-in face model generated by lib/facemodel/builtin.py: parametric "
            "face-like geometry with hand-designed smooth identity and expression modes and a "
            "generic albedo; not learned from scans (see doc/builtin_face_model.md)."
        ),
    )
    return model
