"""Wavefront OBJ reading and writing (numpy, vectorised).

Conventions:
- Vertices are written as `v x y z` or, with per-vertex colours, `v x y z r g b`
  (colours in [0, 1]; the MeshLab/Blender extension).
- Texture coordinates follow OBJ: (u, v) in [0, 1] with v pointing UP, so texture
  row 0 (the top of the PNG) is v = 1.
- Polygons are fan-triangulated (0, i, i+1) on reading, which keeps their winding.

Reading avoids per-value Python loops: lines are sorted by keyword with list
comprehensions and the numbers are converted by numpy in one call per keyword, so a
26k-vertex OBJ reads in tens of milliseconds.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from lib.errors import UserError, read_user_file

_COMMENT = re.compile(rb"#[^\r\n]*")


@dataclass
class ObjMesh:
    """What `read_obj` returns.

    vertices float64 [V, 3]; faces int64 [F, 3] (0-based, triangulated);
    colors float64 [V, 3] in [0, 1] or None; uv_coords float64 [T, 2] or None;
    uv_faces int64 [F, 3] or None (texture coordinate of each corner, 0-based; -1
    for corners written without one while others have one);
    face_polygon int64 [F]: index of the source polygon of each triangle (in file
    order); texture_path: absolute path of the `map_Kd` image of the first material
    used, or None.

    Unpacks as `vertices, faces = read_obj(path)`.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    uv_coords: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    face_polygon: np.ndarray | None = None
    texture_path: str | None = None

    def __iter__(self):
        return iter((self.vertices, self.faces))


def _read_text(path: str) -> bytes:
    """The file's bytes without comments; UserError when missing or binary."""
    data = read_user_file(path, "OBJ file")
    if b"\0" in data[:4096]:
        raise UserError(f"{path}: not a text OBJ file (binary content)")
    return _COMMENT.sub(b"", data)


def _first_bad_line(path: str, lines: list[bytes], keyword: bytes, counts: tuple[int, ...], number) -> None:
    """Slow scan that names the first malformed line (only runs after a fast path failed)."""
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0] != keyword:
            continue
        values = parts[1:]
        try:
            [number(v) for v in values]
            ok = len(values) in counts
        except ValueError:
            ok = False
        if not ok:
            text = line.decode("utf-8", "replace").strip()[:60]
            raise UserError(f"{path}:{lineno}: malformed '{keyword.decode()}' line: {text!r}")
    raise UserError(f"{path}: inconsistent '{keyword.decode()}' lines (mixed number of values)")


def _table(tokens: list[bytes], n_rows: int, counts: tuple[int, ...], first: int | None = None) -> np.ndarray | None:
    """float64 [n_rows, C] (or only the first `first` rows) from the tokens of n_rows
    lines `kw x y ...` (keyword included), or None when the lines do not all carry
    the same allowed count C. Converting text to floats is the costly step, so rows
    that are not wanted are never converted."""
    n_values = len(tokens) - n_rows
    width = n_values // n_rows
    if n_values % n_rows or width not in counts:
        return None
    keep = n_rows if first is None else min(first, n_rows)
    tokens = tokens[: keep * (width + 1)]
    del tokens[:: width + 1]
    try:
        return np.array(tokens, dtype=np.float64).reshape(keep, width)
    except ValueError:
        return None  # a keyword token left among the numbers, or a non-number


def _numbers(path: str, lines: list[bytes], keyword: bytes, counts: tuple[int, ...]) -> np.ndarray:
    """float64 [N, C] of the lines starting with `keyword` (C = the common value count)."""
    prefix = keyword + b" "
    rows = [line for line in lines if line.startswith(prefix)]
    if not rows:
        return np.zeros((0, counts[0]))
    table = _table(b" ".join(rows).split(), len(rows), counts)
    if table is None:
        _first_bad_line(path, lines, keyword, counts, float)
    return table


def read_obj_vertices(path: str, first: int | None = None, expected_count: int | None = None) -> np.ndarray:
    """float64 [V, 3]: only the vertex positions of an OBJ (fast path for blendshapes),
    or only the first `first` of them. With `expected_count`, a file with another
    number of vertices is a UserError (blendshapes must share one topology).

    The `v` lines are found with numpy on the raw bytes (line starts where the byte
    pair is 'v '), and runs of consecutive ones are sliced out whole, so no Python
    code runs per line.
    """
    data = _read_text(path)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate([[0], np.flatnonzero(buf == ord("\n")) + 1])
    starts = starts[starts + 1 < len(buf)]
    ends = np.append(starts[1:], len(buf))
    rows = np.flatnonzero((buf[starts] == ord("v")) & (buf[starts + 1] == ord(" ")))
    if len(rows) == 0:
        raise UserError(f"{path}: no vertices ('v' lines) in this OBJ file")
    if expected_count is not None and len(rows) != expected_count:
        raise UserError(f"{path}: has {len(rows)} vertices, expected {expected_count} (same topology as the others)")
    breaks = np.flatnonzero(np.diff(rows) != 1)
    run_first, run_last = rows[np.append(0, breaks + 1)], rows[np.append(breaks, len(rows) - 1)]
    block = b" ".join(data[starts[a]:ends[b]] for a, b in zip(run_first, run_last))
    table = _table(block.split(), len(rows), (3, 4, 6, 7), first)
    if table is None:
        _first_bad_line(path, data.splitlines(), b"v", (3, 4, 6, 7), float)
    return table[:, :3]


def _corner_indices(path: str, lines: list[bytes], face_lines: list[int], tokens: list[bytes], slot: int):
    """int64 [C]: slot 0 (vertex) or 1 (texture coordinate) of each `a/b/c` corner
    token as written (1-based or negative; 0 where the slot is empty), or None when
    the slot is empty for every corner."""
    if slot == 0:
        values = [t.split(b"/", 1)[0] for t in tokens]
    else:
        values = [(t.split(b"/", 2) + [b""])[1] or b"0" for t in tokens]
    if slot and all(v == b"0" for v in values):
        return None
    try:
        return np.array(values, dtype=np.int64)
    except ValueError:
        for lineno in face_lines:
            for token in lines[lineno].split()[1:]:
                value = (token.split(b"/", 2) + [b""])[slot] or (b"0" if slot else b"")
                try:
                    int(value)
                except ValueError:
                    text = lines[lineno].decode("utf-8", "replace").strip()[:60]
                    raise UserError(f"{path}:{lineno + 1}: malformed face line: {text!r}") from None
        raise


def _resolve(path, lines, face_lines, corner_line, index, before, count, what, optional=False):
    """OBJ indices (1-based, or negative = relative to the `before` elements defined so
    far) -> 0-based, checked against `count`. With `optional`, 0 (an empty slot) maps
    to -1."""
    resolved = np.where(index < 0, before[corner_line] + index, index - 1)
    missing = (index == 0) if optional else np.zeros(len(index), bool)
    bad = ~missing & ((index == 0) | (resolved < 0) | (resolved >= count))
    if bad.any():
        lineno = face_lines[corner_line[int(np.flatnonzero(bad)[0])]]
        text = lines[lineno].decode("utf-8", "replace").strip()[:60]
        raise UserError(f"{path}:{lineno + 1}: face refers to a missing {what}: {text!r}")
    return np.where(missing, -1, resolved)


def _texture_path(path: str, lines: list[bytes]) -> str | None:
    """The map_Kd image of the first material used (or the first material defined)."""
    libs = [line.split(None, 1)[1].strip() for line in lines if line.startswith(b"mtllib ")]
    used = [line.split(None, 1)[1].strip() for line in lines if line.startswith(b"usemtl ")]
    folder = os.path.dirname(os.path.abspath(path))
    for lib in libs:
        mtl = os.path.join(folder, lib.decode("utf-8", "replace"))
        if not os.path.isfile(mtl):
            continue
        with open(mtl, "rb") as f:
            material, maps = None, {}
            for line in f.read().splitlines():
                parts = line.strip().split(None, 1)
                if len(parts) == 2 and parts[0] == b"newmtl":
                    material = parts[1].strip()
                elif len(parts) == 2 and parts[0] == b"map_Kd" and material is not None:
                    maps.setdefault(material, parts[1].strip().split()[-1])
        name = next((m for m in used if m in maps), next(iter(maps), None))
        if name is not None:
            return os.path.join(os.path.dirname(mtl), maps[name].decode("utf-8", "replace"))
    return None


def read_obj(path: str) -> ObjMesh:
    """Read a Wavefront OBJ: positions (+ optional colours), texture coordinates and
    polygons (forms `a`, `a/b`, `a//c`, `a/b/c`; negative = relative indices),
    fan-triangulated; normals and groups are ignored. Raises UserError naming the
    file and line for anything it cannot read."""
    lines = _read_text(path).splitlines()
    positions = _numbers(path, lines, b"v", (3, 4, 6, 7))
    if len(positions) == 0:
        raise UserError(f"{path}: no vertices ('v' lines) in this OBJ file")
    colors = positions[:, 3:6] if positions.shape[1] in (6, 7) else None
    uv_table = _numbers(path, lines, b"vt", (1, 2, 3))
    uv_coords = uv_table[:, :2] if uv_table.shape[1] >= 2 and len(uv_table) else None

    face_lines = [i for i, line in enumerate(lines) if line.startswith(b"f ")]
    if not face_lines:
        return ObjMesh(positions[:, :3], np.zeros((0, 3), np.int64), colors, uv_coords, None, np.zeros(0, np.int64),
                       _texture_path(path, lines))
    polygons = [lines[i].split()[1:] for i in face_lines]
    sizes = np.array([len(p) for p in polygons])
    if sizes.min() < 3:
        bad = face_lines[int(np.argmax(sizes < 3))]
        raise UserError(f"{path}:{bad + 1}: a face needs at least 3 corners")
    tokens = [t for p in polygons for t in p]
    corner_line = np.repeat(np.arange(len(face_lines)), sizes)

    # Relative (negative) indices count back from the elements defined so far.
    line_no = np.array(face_lines)
    v_lines = np.array([i for i, line in enumerate(lines) if line.startswith(b"v ")])
    v_before = np.searchsorted(v_lines, line_no)
    vertex = _resolve(path, lines, face_lines, corner_line, _corner_indices(path, lines, face_lines, tokens, 0),
                      v_before, len(positions), "vertex")
    tex = _corner_indices(path, lines, face_lines, tokens, 1)
    if tex is not None:
        if uv_coords is None:
            raise UserError(f"{path}:{face_lines[0] + 1}: faces use texture coordinates but there are no 'vt' lines")
        vt_lines = np.array([i for i, line in enumerate(lines) if line.startswith(b"vt ")])
        tex = _resolve(path, lines, face_lines, corner_line, tex, np.searchsorted(vt_lines, line_no),
                       len(uv_coords), "texture coordinate", optional=True)

    # Fan triangulation (0, k, k+1) for each polygon, vectorised over corners.
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_tri = sizes - 2
    tri_polygon = np.repeat(np.arange(len(sizes)), n_tri)
    k = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    base = start[tri_polygon]
    corners = np.stack([base, base + k + 1, base + k + 2], axis=1)
    faces = vertex[corners]
    uv_faces = tex[corners] if tex is not None else None
    return ObjMesh(positions[:, :3], faces, colors, uv_coords, uv_faces, tri_polygon, _texture_path(path, lines))


def _fmt_rows(fmt: str, table: np.ndarray) -> str:
    if len(table) == 0:
        return ""
    return "\n".join(fmt % tuple(row) for row in table.tolist()) + "\n"


def write_obj(
    path: str,
    vertices,
    faces,
    colors=None,
    uv_coords=None,
    uv_faces=None,
    texture=None,
) -> None:
    """Write a triangle mesh as OBJ.

    vertices [V, 3] (any unit; the project writes mm); faces [F, 3] 0-based;
    colors [V, 3] in [0, 1] per vertex (written as `v x y z r g b`); uv_coords [T, 2]
    and uv_faces [F, 3] (OBJ convention, v up); texture uint8 [H, W, 3]: also writes
    `<stem>.mtl` and `<stem>.png` next to the OBJ (needs UVs) so Blender/MeshLab open
    it textured. numpy or torch arrays are accepted.
    """
    as_np = lambda a: None if a is None else np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)  # noqa: E731
    vertices, faces, colors = as_np(vertices), as_np(faces), as_np(colors)
    uv_coords, uv_faces, texture = as_np(uv_coords), as_np(uv_faces), as_np(texture)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"write_obj: vertices must be [V, 3], got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"write_obj: faces must be [F, 3], got {faces.shape}")
    if colors is not None and colors.shape != vertices.shape:
        raise ValueError(f"write_obj: colors must be [V, 3] like vertices, got {colors.shape}")
    if (uv_coords is None) != (uv_faces is None):
        raise ValueError("write_obj: uv_coords and uv_faces go together")
    if uv_faces is not None and uv_faces.shape != faces.shape:
        raise ValueError(f"write_obj: uv_faces must be [F, 3] like faces, got {uv_faces.shape}")
    if texture is not None and uv_coords is None:
        raise ValueError("write_obj: a texture needs uv_coords and uv_faces")

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    header = "# written by lib.meshio\n"
    if texture is not None:
        from PIL import Image

        image = np.asarray(texture)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"write_obj: texture must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        Image.fromarray(image).save(os.path.join(folder, stem + ".png"))
        with open(os.path.join(folder, stem + ".mtl"), "w") as f:
            f.write(f"newmtl {stem}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {stem}.png\n")
        header += f"mtllib {stem}.mtl\nusemtl {stem}\n"

    # %.9g round-trips float32 exactly; float64 input keeps ~9 significant digits.
    if colors is not None:
        body = _fmt_rows("v %.9g %.9g %.9g %.6g %.6g %.6g", np.concatenate([vertices, colors], axis=1))
    else:
        body = _fmt_rows("v %.9g %.9g %.9g", vertices)
    one = faces.astype(np.int64) + 1
    if uv_coords is not None:
        body += _fmt_rows("vt %.9g %.9g", uv_coords.reshape(-1, 2))
        corners = np.stack([one, uv_faces.astype(np.int64) + 1], axis=2).reshape(-1, 6)
        body += _fmt_rows("f %d/%d %d/%d %d/%d", corners)
    else:
        body += _fmt_rows("f %d %d %d", one)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(header + body)
    os.replace(tmp, path)
