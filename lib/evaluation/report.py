"""Evaluation outputs: per-sample tables (CSV/JSON), the summary table, the
cumulative error curve (PNG) and error heat-map renders. All errors in mm."""
from __future__ import annotations

import csv
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from lib.config.schema import RenderConfig  # noqa: E402
from lib.geometry import CAMERA_DISTANCE_MM, focal_length, vertex_normals  # noqa: E402
from lib.render import render_mesh  # noqa: E402

STAT_KEYS = ("mean", "median", "std", "rms", "RMSE")
# Heat-map ramp (blue -> cyan -> green -> yellow -> red), linear RGB stops.
_RAMP = np.array([[0.05, 0.15, 0.8], [0.0, 0.75, 0.9], [0.1, 0.8, 0.2], [1.0, 0.85, 0.0], [0.85, 0.05, 0.05]])
OUTSIDE_COLOUR = np.array([0.6, 0.6, 0.6])  # vertices with no error (outside the crop)
FILL = 0.9  # share of the heat-map frame the mesh's larger side spans


def _atomic_write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, data) -> None:
    """Write JSON atomically (write then rename), so an interrupted run leaves no half file."""
    _atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_sample_table(rows: list[dict], path: str) -> None:
    """rows: one dict per sample (same keys) -> CSV at `path` (columns in row order)."""
    if not rows:
        return
    columns = list(rows[0].keys())
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


def summary_table(summary: dict[str, dict[str, float]]) -> str:
    """Text table: one row per method (e.g. prediction, mean face), columns STAT_KEYS, mm."""
    header = f"{'method':<14}" + "".join(f"{k + ' (mm)':>13}" for k in STAT_KEYS) + f"{'samples':>9}"
    lines = [header, "-" * len(header)]
    for method, stats in summary.items():
        lines.append(f"{method:<14}" + "".join(f"{stats[k]:>13.4f}" for k in STAT_KEYS) + f"{stats['samples']:>9d}")
    lines.append("RMSE = the seed's name for the mean scan-to-mesh distance; rms = root mean square.")
    return "\n".join(lines)


def cumulative_curve(distances: np.ndarray, max_mm: float, bins: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(x [bins+1] mm, percentage [bins+1] of distances <= x), x from 0 to max_mm."""
    d = np.sort(np.asarray(distances, np.float64).ravel())
    x = np.linspace(0.0, max_mm, bins + 1)
    return x, 100.0 * np.searchsorted(d, x, side="right") / max(len(d), 1)


def plot_cumulative_errors(curves: dict[str, np.ndarray], path: str, max_mm: float) -> None:
    """One line per method: percentage of scan points with error below x mm (NoW's plot)."""
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for name, distances in curves.items():
        x, pct = cumulative_curve(distances, max_mm)
        ax.plot(x, pct, label=f"{name} (median {np.median(distances):.2f} mm)")
    ax.set_xlim(0, max_mm)
    ax.set_ylim(0, 100)
    ax.set_xlabel("scan-to-mesh error [mm]")
    ax.set_ylabel("scan points below error [%]")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def error_colours(errors: np.ndarray, max_mm: float) -> np.ndarray:
    """Per-vertex errors [V] mm (NaN: not measured) -> linear RGB [V, 3] on the ramp."""
    e = np.asarray(errors, np.float64)
    t = np.clip(np.nan_to_num(e, nan=0.0) / max_mm, 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_RAMP) - 2)
    frac = (t - lo)[:, None]
    colours = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    colours[np.isnan(e)] = OUTSIDE_COLOUR
    return colours


def render_error_heatmap(
    verts: np.ndarray, faces: np.ndarray, errors: np.ndarray, max_mm: float, size: int, render: RenderConfig
) -> np.ndarray:
    """Frontal render of a model-space mesh coloured by per-vertex error, with a scale bar.

    verts [V, 3] mm in model space (+z toward the camera), faces [F, 3], errors [V] mm
    (NaN: grey); render: `render.*` (culling, backend). The mesh is centred, moved along z until it fills about 90% of the
    frame (any face model size), and lit from the camera so the shape reads.
    Returns uint8 [size, size + bar, 3].
    """
    v = np.asarray(verts, np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    v = v - (lo + hi) / 2
    half_extent = max(float((hi - lo)[:2].max()) / 2, 1e-6)
    distance = focal_length((size, size)) * half_extent / (FILL * size / 2)
    v[:, 2] += CAMERA_DISTANCE_MM - distance - (hi - lo)[2] / 2  # nearest point at `distance`
    v = torch.as_tensor(v, dtype=torch.float32)[None]
    f = torch.as_tensor(np.asarray(faces), dtype=torch.long)
    normals = vertex_normals(v, f)
    # Ambient + head-on diffuse: enough shading to see the surface under the colours.
    light = 0.35 + 0.65 * normals[..., 2:3].clamp(min=0.0)
    colours = torch.as_tensor(error_colours(errors, max_mm), dtype=torch.float32)[None] * light
    result = render_mesh(v, f, {"rgb": colours}, (size, size), cull_backfaces=render.cull_backfaces,
                         backend=render.backend)
    image = result.images["rgb"][0] + (1.0 - result.mask[0])  # white background
    rgb = (image.clamp(0, 1) ** (1 / 2.2) * 255).round().to(torch.uint8).numpy()
    return _with_scale_bar(rgb, max_mm)


def _with_scale_bar(image: np.ndarray, max_mm: float) -> np.ndarray:
    h = image.shape[0]
    bar_w, margin = 16, 8
    canvas = Image.new("RGB", (image.shape[1] + bar_w + 56, h), "white")
    canvas.paste(Image.fromarray(image), (0, 0))
    top, bottom = margin + 6, h - margin - 6
    ramp = error_colours(np.linspace(max_mm, 0.0, bottom - top), max_mm)
    bar = (np.clip(ramp, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(bar[:, None], bar_w, axis=1)), (image.shape[1] + 4, top))
    draw = ImageDraw.Draw(canvas)
    x_text = image.shape[1] + bar_w + 8
    draw.text((x_text, top - 6), f"{max_mm:g} mm", fill="black")
    draw.text((x_text, bottom - 6), "0 mm", fill="black")
    return np.asarray(canvas)


def save_png(path: str, image: np.ndarray) -> None:
    """uint8 [H, W, 3] -> PNG, atomically."""
    tmp = path + ".tmp.png"
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)
