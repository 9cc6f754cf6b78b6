"""lib.meshio: OBJ/PLY written and read back, hand-written OBJ forms, clear errors."""
import os

import numpy as np
import pytest
from PIL import Image

from lib.errors import UserError
from lib.meshio import read_obj, read_obj_vertices, read_ply, write_obj, write_ply


def small_mesh(seed=0):
    """A 4x5 grid of vertices (random heights), two triangles per cell."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(5.0), np.arange(4.0))
    vertices = np.stack([xs.ravel(), ys.ravel(), rng.normal(size=xs.size)], 1).astype(np.float32)
    faces = []
    for r in range(3):
        for c in range(4):
            i = r * 5 + c
            faces += [[i, i + 1, i + 6], [i, i + 6, i + 5]]
    return vertices, np.array(faces)


def test_obj_round_trip_plain(tmp_path):
    vertices, faces = small_mesh()
    path = str(tmp_path / "plain.obj")
    write_obj(path, vertices, faces)
    mesh = read_obj(path)
    np.testing.assert_array_equal(mesh.vertices.astype(np.float32), vertices)  # %.9g keeps float32 exact
    np.testing.assert_array_equal(mesh.faces, faces)
    assert mesh.colors is None and mesh.uv_coords is None and mesh.texture_path is None
    v, f = read_obj(path)  # the agreed `verts, faces = read_obj(path)` form
    assert v.shape == (20, 3) and f.shape == (24, 3)


def test_obj_round_trip_colors(tmp_path):
    vertices, faces = small_mesh()
    colors = np.random.default_rng(1).uniform(size=vertices.shape)
    path = str(tmp_path / "colored.obj")
    write_obj(path, vertices, faces, colors=colors)
    mesh = read_obj(path)
    np.testing.assert_allclose(mesh.colors, colors, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(read_obj_vertices(path).astype(np.float32), vertices)


def test_obj_round_trip_uv_texture(tmp_path):
    vertices, faces = small_mesh()
    uv = np.stack([vertices[:, 0] / 4, vertices[:, 1] / 3], 1)
    uv_faces = faces[:, [0, 1, 2]]
    texture = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    path = str(tmp_path / "textured.obj")
    write_obj(path, vertices, faces, uv_coords=uv, uv_faces=uv_faces, texture=texture)

    assert os.path.isfile(tmp_path / "textured.png") and os.path.isfile(tmp_path / "textured.mtl")
    mtl = (tmp_path / "textured.mtl").read_text()
    assert "map_Kd textured.png" in mtl
    obj_text = (tmp_path / "textured.obj").read_text()
    assert "mtllib textured.mtl" in obj_text and "usemtl" in obj_text
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "textured.png")), texture)

    mesh = read_obj(path)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.uv_coords, uv, atol=1e-7)
    np.testing.assert_array_equal(mesh.uv_faces, uv_faces)
    assert mesh.texture_path == str(tmp_path / "textured.png")


def test_write_obj_accepts_torch(tmp_path):
    torch = pytest.importorskip("torch")
    vertices, faces = small_mesh()
    write_obj(str(tmp_path / "t.obj"), torch.from_numpy(vertices), torch.from_numpy(faces))
    np.testing.assert_array_equal(read_obj(str(tmp_path / "t.obj")).faces, faces)


def test_write_obj_rejects_bad_shapes(tmp_path):
    vertices, faces = small_mesh()
    with pytest.raises(ValueError, match="faces"):
        write_obj(str(tmp_path / "bad.obj"), vertices, faces[:, :2])
    with pytest.raises(ValueError, match="texture needs"):
        write_obj(str(tmp_path / "bad.obj"), vertices, faces, texture=np.zeros((4, 4, 3), np.uint8))


HAND_WRITTEN = """# a unit square as a quad, then a pentagon using relative indices
mtllib missing.mtl
v 0 0 0
v 1 0 0   # inline comment
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 1
g square
f 1/1/1 2/2/1 3/3/1 4/4/1
v 2 0 0
v 3 0 0
v 3 1 0
v 2.5 2 0
v 2 1 0
vt 0.5 0.5
f -5/-1 -4/-1 -3/-1 -2/-1 -1/-1
f 1//1 3//1 4//1
"""


def test_read_hand_written_obj(tmp_path):
    path = tmp_path / "hand.obj"
    path.write_text(HAND_WRITTEN)
    mesh = read_obj(str(path))
    assert mesh.vertices.shape == (9, 3)
    expected = [
        [0, 1, 2], [0, 2, 3],  # quad, fan from its first corner
        [4, 5, 6], [4, 6, 7], [4, 7, 8],  # pentagon: -5 .. -1 are vertices 4 .. 8
        [0, 2, 3],  # v//vn form
    ]
    np.testing.assert_array_equal(mesh.faces, expected)
    np.testing.assert_array_equal(mesh.face_polygon, [0, 0, 1, 1, 1, 2])
    # The last face has no texture slot, so corners without one are not mixed in:
    # uv_faces exists (the first faces use vt) and the relative -1 is vt 5.
    assert mesh.uv_faces[2].tolist() == [4, 4, 4]
    assert mesh.texture_path is None  # the missing .mtl is ignored, not an error
    # Counter-clockwise quad seen from +z: its triangles' normals point +z.
    v = mesh.vertices
    for tri in mesh.faces[:5]:
        assert np.cross(v[tri[1]] - v[tri[0]], v[tri[2]] - v[tri[0]])[2] > 0


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("v 0 0 0\nv 1 0 zero\nv 0 1 0\nf 1 2 3\n", 2, "malformed 'v' line"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", 4, "malformed face"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n", 4, "missing vertex"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", 4, "missing vertex"),
        ("v 0 0 0\nv 1 0 0\n\nf 1 2\n", 4, "at least 3"),
    ],
)
def test_garbled_obj_names_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(UserError, match=what) as err:
        read_obj(str(path))
    assert f"bad.obj:{line}:" in str(err.value)


def test_unreadable_obj(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_obj(str(tmp_path / "nope.obj"))
    (tmp_path / "bin.obj").write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(UserError, match="binary"):
        read_obj(str(tmp_path / "bin.obj"))
    (tmp_path / "empty.obj").write_text("# nothing\n")
    with pytest.raises(UserError, match="no vertices"):
        read_obj(str(tmp_path / "empty.obj"))


def test_ply_round_trip(tmp_path):
    vertices, faces = small_mesh()
    colors = np.random.default_rng(3).uniform(size=vertices.shape)
    path = str(tmp_path / "mesh.ply")
    write_ply(path, vertices, faces, colors=colors)
    with open(path, "rb") as f:
        assert b"format binary_little_endian 1.0" in f.read(200)
    v, f, c = read_ply(path)
    np.testing.assert_array_equal(v, vertices)
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_allclose(c, np.round(colors * 255) / 255)
    write_ply(path, vertices, faces)
    assert read_ply(path)[2] is None


def test_read_ascii_ply_with_quad(tmp_path):
    path = tmp_path / "quad.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n"
    )
    v, f, c = read_ply(str(path))
    assert v.shape == (4, 3) and c is None
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3]])


def test_bad_ply(tmp_path):
    (tmp_path / "x.ply").write_text("not a ply\n")
    with pytest.raises(UserError, match="not a PLY"):
        read_ply(str(tmp_path / "x.ply"))


def test_read_obj_vertices_first_and_count(tmp_path):
    vertices, faces = small_mesh()
    path = str(tmp_path / "m.obj")
    write_obj(path, vertices, faces)
    (tmp_path / "split.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 3\nv 0 1 0\n# end\n")
    np.testing.assert_array_equal(read_obj_vertices(str(tmp_path / "split.obj")), [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(read_obj_vertices(path, first=7).astype(np.float32), vertices[:7])
    with pytest.raises(UserError, match="has 20 vertices, expected 21"):
        read_obj_vertices(path, expected_count=21)
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0\nv 0 1 0\n")
    with pytest.raises(UserError, match="bad.obj:2:"):
        read_obj_vertices(str(tmp_path / "bad.obj"))
