"""Stanford PLY: binary little-endian writer, reader for binary and ASCII triangle meshes."""
from __future__ import annotations

import os

import numpy as np

from lib.errors import UserError

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def write_ply(path: str, vertices, faces, colors=None) -> None:
    """Binary little-endian PLY: float32 x y z, optional uchar red green blue, faces
    as uchar-count int32 lists. vertices [V, 3]; faces [F, 3] 0-based; colors [V, 3]
    in [0, 1] (rounded to 8 bits). numpy or torch arrays are accepted."""
    as_np = lambda a: None if a is None else np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)  # noqa: E731
    vertices, faces, colors = as_np(vertices), as_np(faces), as_np(colors)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"write_ply: need vertices [V, 3] and faces [F, 3], got {vertices.shape}, {faces.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        if colors.shape != vertices.shape:
            raise ValueError(f"write_ply: colors must be [V, 3] like vertices, got {colors.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex_table = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex_table[name] = vertices[:, axis]
    if colors is not None:
        rgb = np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)
        for axis, name in enumerate(("red", "green", "blue")):
            vertex_table[name] = rgb[:, axis]
    face_table = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_table["n"] = 3
    face_table["idx"] = faces
    header = ["ply", "format binary_little_endian 1.0", "comment written by lib.meshio",
              f"element vertex {len(vertices)}", "property float x", "property float y", "property float z"]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertex_table.tobytes())
        f.write(face_table.tobytes())
    os.replace(tmp, path)


def _parse_header(path: str, f):
    if f.readline().strip() != b"ply":
        raise UserError(f"{path}: not a PLY file (first line is not 'ply')")
    fmt, elements = None, []
    for lineno in range(2, 1000):
        line = f.readline()
        if not line:
            break
        parts = line.decode("ascii", "replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "end_header":
            return fmt, elements
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append((parts[1], int(parts[2]), []))
            elif parts[0] == "property" and parts[1] == "list":
                elements[-1][2].append((parts[4], _PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]]))
            elif parts[0] == "property":
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]], None))
            else:
                raise KeyError(parts[0])
        except (IndexError, KeyError, ValueError):
            raise UserError(f"{path}:{lineno}: cannot read PLY header line {line.strip()[:60]!r}") from None
    raise UserError(f"{path}: PLY header has no end_header")


def read_ply(path: str):
    """(vertices float64 [V, 3], faces int64 [F, 3], colors float64 [V, 3] in [0, 1] or
    None) from a PLY with x/y/z and optional red/green/blue vertex properties and
    triangle or polygon faces (fan-triangulated). Formats: binary_little_endian and
    ascii."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: PLY file not found")
    with open(path, "rb") as f:
        fmt, elements = _parse_header(path, f)
        if fmt not in ("binary_little_endian", "ascii"):
            raise UserError(f"{path}: PLY format '{fmt}' is not supported (use binary_little_endian or ascii)")
        body = f.read()
    tables, offset = {}, 0
    tokens = body.split() if fmt == "ascii" else None
    for name, count, props in elements:
        lists = [p for p in props if p[2] is not None]
        try:
            if fmt == "ascii":
                tables[name], offset = _ascii_element(tokens, offset, count, props)
            elif not lists:
                dtype = np.dtype([(p[0], "<" + p[1]) for p in props])
                tables[name] = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
                offset += dtype.itemsize * count
            else:
                tables[name], offset = _binary_list_element(body, offset, count, props)
        except (ValueError, IndexError):
            raise UserError(f"{path}: PLY element '{name}' is truncated or malformed") from None
    tables = {name: ({k: table[k] for k in table.dtype.names} if isinstance(table, np.ndarray) else table)
              for name, table in tables.items()}
    vertex = tables.get("vertex")
    if vertex is None or not all(k in vertex for k in "xyz"):
        raise UserError(f"{path}: PLY has no vertex element with x, y, z")
    vertices = np.stack([np.asarray(vertex[k], np.float64) for k in "xyz"], axis=1)
    colors = None
    if all(k in vertex for k in ("red", "green", "blue")):
        colors = np.stack([np.asarray(vertex[k], np.float64) for k in ("red", "green", "blue")], axis=1) / 255.0
    polygons = tables.get("face", {}).get("vertex_indices", tables.get("face", {}).get("vertex_index", []))
    faces = _fan_triangulate(polygons)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise UserError(f"{path}: PLY faces refer to vertices past the {len(vertices)} defined")
    return vertices, faces, colors


def _fan_triangulate(polygons) -> np.ndarray:
    """int64 [F, 3] from an [N, n] array (one call) or a list of index arrays."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        k = np.arange(1, polygons.shape[1] - 1)
        first = np.broadcast_to(polygons[:, :1], (len(polygons), len(k)))
        return np.stack([first, polygons[:, k], polygons[:, k + 1]], axis=2).reshape(-1, 3).astype(np.int64)
    triangles = [np.stack([p[:1].repeat(len(p) - 2), p[1:-1], p[2:]], axis=1) for p in map(np.asarray, polygons)]
    return np.concatenate(triangles).astype(np.int64) if triangles else np.zeros((0, 3), np.int64)


def _ascii_element(tokens, offset, count, props):
    columns = {p[0]: [] for p in props}
    for _ in range(count):
        for name, dtype, list_dtype in props:
            if list_dtype is None:
                columns[name].append(float(tokens[offset]))
                offset += 1
            else:
                n = int(tokens[offset])
                columns[name].append(np.array(tokens[offset + 1:offset + 1 + n], dtype=np.int64))
                offset += 1 + n
    return {k: (v if any(p[0] == k and p[2] is not None for p in props) else np.array(v))
            for k, v in columns.items()}, offset


def _binary_list_element(body, offset, count, props):
    """Faces with a uniform corner count are read in one call; mixed sizes row by row."""
    if len(props) == 1:
        name, count_type, item_type = props[0]
        first = int(np.frombuffer(body, dtype="<" + count_type, count=1, offset=offset)[0])
        dtype = np.dtype([("n", "<" + count_type), ("idx", "<" + item_type, (first,))])
        if offset + dtype.itemsize * count <= len(body):
            table = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
            if (table["n"] == first).all():
                return {name: table["idx"].astype(np.int64)}, offset + dtype.itemsize * count
    columns = {p[0]: [] for p in props}
    for _ in range(count):
        for name, dtype, list_dtype in props:
            if list_dtype is None:
                value = np.frombuffer(body, dtype="<" + dtype, count=1, offset=offset)[0]
                columns[name].append(value)
                offset += np.dtype(dtype).itemsize
            else:
                n = int(np.frombuffer(body, dtype="<" + dtype, count=1, offset=offset)[0])
                offset += np.dtype(dtype).itemsize
                columns[name].append(np.frombuffer(body, dtype="<" + list_dtype, count=n, offset=offset))
                offset += np.dtype(list_dtype).itemsize * n
    return columns, offset
