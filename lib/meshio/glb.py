"""Binary glTF 2.0 (`.glb`) writing: one triangle mesh with normals and either a
texture (UVs + embedded PNG) or per-vertex colours, in one self-contained file that
web viewers (three.js, Babylon.js, gradio's Model3D), Blender and phones open.

Conventions (glTF 2.0 specification, section 3.4 and 3.8):
- Units are metres, +y up, the asset's front facing +z: the project's model space
  (mm, +y up, +z toward the viewer) scaled by 1/1000.
- Front faces wind counter-clockwise, like the project's faces.
- Texture coordinates have their origin at the TOP-left of the image, so the OBJ
  convention's v (up) becomes 1 - v.
- glTF has one index per corner for every attribute, so a vertex used with two
  texture coordinates (a UV seam) is written twice.
"""
from __future__ import annotations

import io
import json
import os
import struct

import numpy as np

GLB_MAGIC = 0x46546C67
"""'glTF' read as a little-endian uint32."""
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
MM_PER_METRE = 1000.0

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals [V, 3]: area-weighted sum of the adjacent faces' normals (a vertex
    in no face gets +z, so the file never holds a zero normal, which glTF forbids)."""
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    summed = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(summed, faces[:, k], cross)
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.where(length > 0, summed / np.maximum(length, 1e-30), np.array([0.0, 0.0, 1.0]))


def _split_seams(faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One glTF vertex per distinct (position, texture coordinate) pair.

    Returns (position index [N], uv index [N], corners [F, 3] into the N vertices).
    """
    pairs = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], axis=1).astype(np.int64)
    unique, corners = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], corners.reshape(-1, 3)


def _as_numpy(array):
    if array is None:
        return None
    return np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)


def write_glb(
    path: str,
    vertices,
    faces,
    normals=None,
    colors=None,
    uv_coords=None,
    uv_faces=None,
    texture=None,
) -> None:
    """Write a triangle mesh as a binary glTF 2.0 file.

    vertices [V, 3] mm (model space, written in metres); faces [F, 3] 0-based,
    counter-clockwise; normals [V, 3] (unit; computed from the faces when None);
    colors [V, 3] in [0, 1] per vertex (COLOR_0; used when there is no texture);
    uv_coords [T, 2] and uv_faces [F, 3] in the OBJ convention (v up) with texture
    uint8 [H, W, 3]: embedded as PNG in the file and used as the base colour.
    numpy or torch arrays are accepted.
    """
    vertices = _as_numpy(vertices).astype(np.float64)
    faces = _as_numpy(faces).astype(np.int64)
    normals, colors = _as_numpy(normals), _as_numpy(colors)
    uv_coords, uv_faces, texture = _as_numpy(uv_coords), _as_numpy(uv_faces), _as_numpy(texture)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"write_glb: vertices must be [V, 3], got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"write_glb: faces must be [F, 3], got {faces.shape}")
    if (uv_coords is None) != (uv_faces is None) or (texture is None) != (uv_coords is None):
        raise ValueError("write_glb: uv_coords, uv_faces and texture go together")
    if uv_faces is not None and uv_faces.shape != faces.shape:
        raise ValueError(f"write_glb: uv_faces must be [F, 3] like faces, got {uv_faces.shape}")
    if texture is not None and (texture.dtype != np.uint8 or texture.ndim != 3 or texture.shape[2] != 3):
        raise ValueError(f"write_glb: texture must be uint8 [H, W, 3], got {texture.dtype} {texture.shape}")
    if colors is not None and colors.shape != vertices.shape:
        raise ValueError(f"write_glb: colors must be [V, 3] like vertices, got {colors.shape}")
    if normals is None:
        normals = _vertex_normals(vertices, faces)
    elif normals.shape != vertices.shape:
        raise ValueError(f"write_glb: normals must be [V, 3] like vertices, got {normals.shape}")

    if uv_faces is not None:
        position_index, uv_index, corners = _split_seams(faces, uv_faces)
    else:
        position_index, uv_index, corners = np.arange(len(vertices)), None, faces
    attributes = {
        "POSITION": vertices[position_index] / MM_PER_METRE,
        "NORMAL": normals[position_index] / np.linalg.norm(normals[position_index], axis=1, keepdims=True),
    }
    if uv_index is not None:
        uv = uv_coords[uv_index]
        attributes["TEXCOORD_0"] = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)
    elif colors is not None:
        attributes["COLOR_0"] = np.clip(colors[position_index], 0.0, 1.0)

    blob = bytearray()
    views, accessors = [], []

    def add_view(data: bytes, target: int | None) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))  # every accessor starts 4-byte aligned
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        blob.extend(data)
        views.append(view)
        return len(views) - 1

    def add_accessor(array: np.ndarray, component: int, kind: str, target: int, bounds: bool = False) -> int:
        data = array.astype(np.float32 if component == _FLOAT else np.uint32)
        accessor = {"bufferView": add_view(data.tobytes(), target), "componentType": component,
                    "count": int(data.shape[0]), "type": kind}
        if bounds:  # required for POSITION
            accessor["min"], accessor["max"] = data.min(axis=0).tolist(), data.max(axis=0).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    primitive = {
        "attributes": {name: add_accessor(values, _FLOAT, f"VEC{values.shape[1]}", _ARRAY_BUFFER, name == "POSITION")
                       for name, values in attributes.items()},
        "indices": add_accessor(corners.reshape(-1), _UINT32, "SCALAR", _ELEMENT_ARRAY_BUFFER),
        "mode": 4,  # triangles
        "material": 0,
    }
    pbr = {"metallicFactor": 0.0, "roughnessFactor": 1.0}
    document = {
        "asset": {"version": "2.0", "generator": "DF-MVR reimplementation (lib.meshio.glb)"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [{"primitives": [primitive], "name": "face"}],
        "materials": [{"pbrMetallicRoughness": pbr, "name": "face"}],
    }
    if texture is not None:
        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(texture).save(png, format="PNG")
        document["images"] = [{"bufferView": add_view(png.getvalue(), None), "mimeType": "image/png"}]
        document["samplers"] = [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR,
                                 "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}]
        document["textures"] = [{"source": 0, "sampler": 0}]
        pbr["baseColorTexture"] = {"index": 0}
    document["bufferViews"] = views
    document["accessors"] = accessors
    blob.extend(b"\0" * (-len(blob) % 4))
    document["buffers"] = [{"byteLength": len(blob)}]

    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)  # the JSON chunk is padded with spaces
    total = 12 + 8 + len(text) + 8 + len(blob)
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(struct.pack("<III", GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(text), CHUNK_JSON) + text)
        f.write(struct.pack("<II", len(blob), CHUNK_BIN) + bytes(blob))
    os.replace(tmp, path)
