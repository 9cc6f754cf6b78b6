"""NoW-style evaluation (see doc/evaluation.md): exact scan-to-mesh distance
(`distance`), the NoW crop / alignment / statistics procedure (`now`), scans sampled
from meshes (`sampling`), Pixel-Face validation scans (`pixel_face`) and report files
(`report`, imported on its own because it pulls in matplotlib and the renderer)."""
from lib.evaluation.distance import MeshDistance, scan_to_mesh_distance
from lib.evaluation.now import (
    NowResult,
    Similarity,
    crop_mask,
    crop_sphere,
    error_statistics,
    now_scan_to_mesh,
    similarity_procrustes,
    vertex_errors,
)
from lib.evaluation.sampling import sample_surface

__all__ = [
    "MeshDistance",
    "NowResult",
    "Similarity",
    "crop_mask",
    "crop_sphere",
    "error_statistics",
    "now_scan_to_mesh",
    "sample_surface",
    "scan_to_mesh_distance",
    "similarity_procrustes",
    "vertex_errors",
]
