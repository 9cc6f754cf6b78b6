"""GLB and NoW-submission files: written by lib.meshio and by test_sample.py, read back
by independent readers (trimesh for glTF; NumPy and the NoW evaluation code's own
text parsing for the landmarks)."""
import json
import struct

import numpy as np
import pytest
import trimesh

import test_sample
from lib.facemodel import load_face_model
from lib.facemodel.schema import NOW7_FROM_68
from lib.meshio import read_obj, write_glb, write_now_prediction

FAST = [
    "fit.demo_subjects=1",
    "fit.crop_size=64",
    "fit.steps_pose=3",
    "fit.steps_shape=5",
    "fit.steps_appearance=1",
    "fit.render_size=32",
    "fit.texture_size=32",
]


def seam_mesh():
    """A unit square in the z = 0 plane (mm) made of 2 triangles whose shared edge
    has different texture coordinates in each triangle (a UV seam), a 4x2 texture
    with distinct colours, and the expected split: 6 glTF vertices."""
    vertices = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.5, 0.0], [1.0, 1.0], [1.0, 0.0]])
    uv_faces = np.array([[0, 1, 2], [3, 4, 5]])  # corners 0 and 2 of face 1 use other UVs
    texture = np.arange(24, dtype=np.uint8).reshape(2, 4, 3) * 10
    return vertices, faces, uv, uv_faces, texture


def load_glb(path):
    return trimesh.load(str(path), force="mesh", process=False)


def test_glb_textured_reads_back_with_trimesh(tmp_path):
    vertices, faces, uv, uv_faces, texture = seam_mesh()
    path = tmp_path / "square.glb"
    write_glb(str(path), vertices, faces, uv_coords=uv, uv_faces=uv_faces, texture=texture)
    mesh = load_glb(path)

    # Every corner of every triangle has the position (m = mm / 1000) and the texture
    # coordinate it was given; the shared edge became two pairs of vertices.
    assert len(mesh.vertices) == 6 and len(mesh.faces) == 2
    np.testing.assert_allclose(mesh.vertices[mesh.faces] * 1000, vertices[faces], atol=1e-4)
    # trimesh turns glTF's top-left origin back into the OBJ convention (v up).
    np.testing.assert_allclose(mesh.visual.uv[mesh.faces], uv[uv_faces], atol=1e-6)
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(image, texture)
    # Unit normals along +z: the triangles wind counter-clockwise seen from +z.
    np.testing.assert_allclose(mesh.vertex_normals, np.tile([0, 0, 1.0], (6, 1)), atol=1e-6)
    np.testing.assert_allclose(mesh.face_normals, np.tile([0, 0, 1.0], (2, 1)), atol=1e-6)


def test_glb_layout_follows_the_specification(tmp_path):
    """Header, chunk types, 4-byte alignment, POSITION bounds: what strict viewers check."""
    vertices, faces, uv, uv_faces, texture = seam_mesh()
    path = tmp_path / "square.glb"
    write_glb(str(path), vertices, faces, uv_coords=uv, uv_faces=uv_faces, texture=texture)
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20:20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0 and 28 + json_length + bin_length == len(data)
    assert all(view["byteOffset"] % 4 == 0 for view in document["bufferViews"])
    position = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    np.testing.assert_allclose(position["min"], [0, 0, 0])
    np.testing.assert_allclose(position["max"], [0.01, 0.01, 0])
    assert document["images"][0]["mimeType"] == "image/png"


def test_glb_vertex_colours_without_uvs(tmp_path):
    vertices, faces, *_ = seam_mesh()
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1.0]])
    path = tmp_path / "coloured.glb"
    write_glb(str(path), vertices, faces, colors=colors)
    # trimesh keeps COLOR_0 as vertex colours when it does not build the material.
    mesh = trimesh.load(str(path), force="mesh", process=False, skip_materials=True)
    assert len(mesh.vertices) == 4
    np.testing.assert_allclose(mesh.vertices * 1000, vertices, atol=1e-4)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.visual.vertex_colors[:, :3] / 255.0, colors, atol=1 / 255)


def test_glb_rejects_a_texture_without_uvs(tmp_path):
    vertices, faces, _, _, texture = seam_mesh()
    with pytest.raises(ValueError, match="go together"):
        write_glb(str(tmp_path / "x.glb"), vertices, faces, texture=texture)


def now_load_txt(path):
    """The NoW evaluation code's text reader (compute_error.py `load_txt`), restated:
    lines split on single spaces, converted to float32."""
    with open(path) as f:
        return np.array([line.split(" ") for line in f.read().splitlines()], dtype=np.float32)


def test_now_prediction_files(tmp_path):
    vertices, faces, *_ = seam_mesh()
    points = np.arange(21, dtype=np.float32).reshape(7, 3) * 1.5
    paths = write_now_prediction(str(tmp_path / "sub"), "IMG_0001", vertices, faces, points)
    assert paths["mesh"].endswith("IMG_0001.obj") and paths["npy"].endswith("IMG_0001.npy")
    mesh = trimesh.load(paths["mesh"], process=False)
    np.testing.assert_allclose(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(np.load(paths["npy"]), points)
    np.testing.assert_allclose(now_load_txt(paths["txt"]), points, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[7, 3\]"):
        write_now_prediction(str(tmp_path), "bad", vertices, faces, points[:5])


def test_test_sample_writes_glb_and_now_files(tmp_path):
    """The demo subject's outputs: the GLB holds the textured OBJ's geometry, UVs and
    texture; the NoW files hold the mesh and its 7 points (the 68-landmark vertices
    of the eye corners, nose tip and mouth corners)."""
    out = tmp_path / "out"
    assert test_sample.main(["--out", str(out), *FAST]) == 0
    folder = out / "demo-000"
    obj = read_obj(str(folder / "textured.obj"))
    glb = load_glb(folder / "mesh.glb")
    np.testing.assert_allclose(glb.vertices[glb.faces] * 1000, obj.vertices[obj.faces], atol=1e-3)
    np.testing.assert_allclose(glb.visual.uv[glb.faces], obj.uv_coords[obj.uv_faces], atol=1e-6)
    texture = np.asarray(glb.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(texture, np.asarray(trimesh.load(str(folder / "textured.obj")).visual.material.image))

    now_obj = trimesh.load(str(folder / "now" / "demo-000.obj"), process=False)
    np.testing.assert_allclose(now_obj.vertices, obj.vertices, atol=1e-4)
    landmarks68 = load_face_model("builtin").landmarks68
    expected = obj.vertices[landmarks68[list(NOW7_FROM_68)]]
    np.testing.assert_allclose(np.load(folder / "now" / "demo-000.npy"), expected, atol=1e-3)
    np.testing.assert_allclose(now_load_txt(folder / "now" / "demo-000.txt"), expected, atol=1e-3)
