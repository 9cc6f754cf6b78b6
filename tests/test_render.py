"""Renderer: rasterizer against a slow reference, hand-made coverage, gradients,
culling, robustness, and a rendered face that a person looked at once."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.geometry import project
from lib.jit import numba_available
from lib.render import interpolate, rasterize, render_mesh
from lib.render.constants import MIN_AREA2, NEAR_DEPTH

BACKENDS = [
    "torch",
    pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="numba not installed")),
]


# --------------------------------------------------------------------------- reference
def reference_rasterize(screen, faces, image_size, cull_backfaces=False):
    """Per-triangle, per-pixel loops in float64 Python arithmetic.

    Same rules as doc/renderer.md: pixel centres (j + .5, i + .5); inside when every
    edge function has the triangle's sign, zero only on top-left edges; each edge
    function evaluated from its endpoints in vertex-index order; the nearest true
    depth 1 / sum(l_k / z_k) wins, ties to the lower face index (loop order + strict
    comparison); perspective-correct barycentrics.
    """
    height, width = image_size
    screen = np.asarray(screen, dtype=np.float64)
    faces = np.asarray(faces)
    batch = screen.shape[0]
    face_index = -np.ones((batch, height, width), dtype=np.int64)
    bary = np.zeros((batch, height, width, 3))
    inv_depth_buffer = np.zeros((batch, height, width))

    def edge(a, b, px, py):
        return (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])

    for n in range(batch):
        for f, ids in enumerate(faces.tolist()):
            p = [screen[n, i].tolist() for i in ids]
            if not all(math.isfinite(c) for q in p for c in q) or min(q[2] for q in p) <= NEAR_DEPTH:
                continue
            area2 = edge(p[0], p[1], p[2][0], p[2][1])
            if abs(area2) <= MIN_AREA2 or (cull_backfaces and area2 > 0):
                continue
            sign = 1.0 if area2 > 0 else -1.0
            xs, ys = [q[0] for q in p], [q[1] for q in p]
            j0, j1 = max(0, math.ceil(min(xs) - 0.5)), min(width - 1, math.floor(max(xs) - 0.5))
            i0, i1 = max(0, math.ceil(min(ys) - 0.5)), min(height - 1, math.floor(max(ys) - 0.5))
            for i in range(i0, i1 + 1):
                for j in range(j0, j1 + 1):
                    px, py = j + 0.5, i + 0.5
                    edges, inside = [], True
                    for k in range(3):
                        a, b = (k + 1) % 3, (k + 2) % 3
                        if ids[a] < ids[b]:
                            e = edge(p[a], p[b], px, py)
                        else:
                            e = -edge(p[b], p[a], px, py)
                        e *= sign
                        dx, dy = sign * (p[b][0] - p[a][0]), sign * (p[b][1] - p[a][1])
                        top_left = dy < 0 or (dy == 0 and dx > 0)
                        inside = inside and (e > 0 or (e == 0 and top_left))
                        edges.append(e)
                    if not inside:
                        continue
                    q = [edges[k] * (1 / p[k][2]) for k in range(3)]  # lambda_k / z_k times area2
                    inv_depth = (q[0] + q[1] + q[2]) * (1 / abs(area2))
                    if inv_depth > inv_depth_buffer[n, i, j]:
                        inv_depth_buffer[n, i, j] = inv_depth
                        face_index[n, i, j] = f
                        bary[n, i, j] = [q[k] / (q[0] + q[1] + q[2]) for k in range(3)]
    return face_index, bary


def random_mesh(generator, batch, num_faces, image_size, scale=6.0):
    """Overlapping random triangles (float64): vertices around random centres."""
    height, width = image_size
    centres = torch.rand(batch, num_faces, 1, 2, generator=generator, dtype=torch.float64) * torch.tensor(
        [width, height], dtype=torch.float64
    )
    uv = centres + scale * torch.randn(batch, num_faces, 3, 2, generator=generator, dtype=torch.float64)
    depth = 5 + 10 * torch.rand(batch, num_faces, 3, 1, generator=generator, dtype=torch.float64)
    screen = torch.cat([uv, depth], -1).reshape(batch, num_faces * 3, 3)
    faces = torch.randperm(num_faces * 3, generator=generator).reshape(num_faces, 3)
    # Every vertex used once, in scrambled order so index order differs from corner order.
    screen = screen[:, torch.argsort(faces.reshape(-1))]
    return screen, faces


def assert_matches_reference(screen, faces, image_size, cull, backend):
    face_index, bary = rasterize(screen, faces, image_size, cull_backfaces=cull, backend=backend)
    ref_index, ref_bary = reference_rasterize(screen, faces, image_size, cull_backfaces=cull)
    assert np.array_equal(face_index.numpy(), ref_index)
    np.testing.assert_allclose(bary.detach().numpy(), ref_bary, atol=1e-5)


# --------------------------------------------------------------------------- reference agreement
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cull", [False, True])
def test_random_meshes_match_reference(backend, cull):
    generator = torch.Generator().manual_seed(3)
    screen, faces = random_mesh(generator, batch=2, num_faces=60, image_size=(20, 24))
    assert_matches_reference(screen, faces, (20, 24), cull, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_vertex_mesh_matches_reference(backend):
    """A grid surface with shared vertices and a bump, so faces occlude each other."""
    generator = torch.Generator().manual_seed(5)
    n = 9
    rows = torch.linspace(-2, 18, n, dtype=torch.float64)
    ys, xs = torch.meshgrid(rows, torch.linspace(-3, 20, n, dtype=torch.float64), indexing="ij")
    depth = 10 + 3 * torch.sin(xs / 3) * torch.cos(ys / 4)
    screen = torch.stack([xs, ys, depth], -1).reshape(1, -1, 3)
    screen = screen + 0.4 * torch.randn(2, n * n, 3, generator=generator, dtype=torch.float64)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([b, d, c], -1).reshape(-1, 3)])
    assert_matches_reference(screen, faces, (16, 18), False, backend)


# --------------------------------------------------------------------------- hand-made coverage
def one_triangle(points, depth=10.0, dtype=torch.float64):
    screen = torch.tensor([[list(p) + [depth] for p in points]], dtype=dtype)
    return screen, torch.tensor([[0, 1, 2]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_made_right_triangle(backend):
    """Corners (1, 1), (1, 6), (6, 1) px: centres (j+.5, i+.5) with x >= 1, y >= 1,
    x + y <= 7. The 5 centres on the hypotenuse x + y = 7 lie on a bottom-right edge
    and are excluded by the top-left rule."""
    screen, faces = one_triangle([(1, 1), (1, 6), (6, 1)])
    face_index, bary = rasterize(screen, faces, (8, 8), backend=backend)
    expected = np.zeros((8, 8), dtype=bool)
    for i in range(8):
        for j in range(8):
            expected[i, j] = i >= 1 and j >= 1 and i + j + 1 < 7
    assert expected.sum() == 10
    assert np.array_equal(face_index[0].numpy() == 0, expected)
    assert np.array_equal(face_index[0].numpy()[~expected], -np.ones((~expected).sum()))
    # Centre (1.5, 1.5): lambda = (1 - .1 - .1, .1, .1) for corners (1,1), (1,6), (6,1).
    np.testing.assert_allclose(bary[0, 1, 1].numpy(), [0.8, 0.1, 0.1], atol=1e-12)
    assert bary[0, 0, 0].abs().sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flip", [False, True])
def test_top_left_rule_on_edges_through_centres(backend, flip):
    """Triangle with a top edge on v = 1.5 and a left edge on u = 1.5 (both through
    pixel centres: included) and a bottom edge on v = 4.5, a right edge on u = 4.5
    (excluded): a square 1.5..4.5 split along the diagonal; its pixels are exactly
    rows 1-3 x cols 1-3, each drawn once (watertight along the diagonal, which passes
    through the centres (1.5, 1.5), (2.5, 2.5), (3.5, 3.5))."""
    screen = torch.tensor([[[1.5, 1.5, 10], [4.5, 1.5, 10], [4.5, 4.5, 10], [1.5, 4.5, 10]]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]]) if not flip else torch.tensor([[0, 1, 2], [0, 2, 3]])
    face_index, _ = rasterize(screen, faces, (6, 6), backend=backend)
    covered = face_index[0].numpy() >= 0
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:4, 1:4] = True
    assert np.array_equal(covered, expected)
    # Face 0 is the upper-right half, face 1 the lower-left one (either winding).
    # The diagonal is face 0's left edge (interior to its right): its centres go to
    # face 0, and face 1, for which it is a bottom-right edge, does not draw them.
    for i in range(1, 4):
        for j in range(1, 4):
            assert face_index[0, i, j].item() == (0 if j >= i else 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_surface_wins_and_ties_go_to_lower_index(backend):
    near = [(0, 0, 5.0), (8, 0, 5.0), (0, 8, 5.0)]
    far = [(0, 0, 9.0), (8, 0, 9.0), (0, 8, 9.0)]
    for order, expect in (([far, near], 1), ([near, far], 0)):
        screen = torch.tensor([[p for tri in order for p in tri]], dtype=torch.float64)
        faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
        face_index, _ = rasterize(screen, faces, (4, 4), backend=backend)
        assert face_index[0, 1, 1].item() == expect
    tie = torch.tensor([[p for tri in (near, near) for p in tri]], dtype=torch.float64)
    face_index, _ = rasterize(tie, torch.tensor([[3, 4, 5], [0, 1, 2]]), (4, 4), backend=backend)
    assert face_index[0, 1, 1].item() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_perspective_correct_barycentrics_and_depth(backend):
    """A plane tilted in depth: interpolating the camera-space point with the
    barycentrics gives the point that projects to the pixel centre."""
    size = (32, 32)
    corners = [[-100.0, -100.0, -300.0], [100.0, -100.0, 300.0], [-100.0, 100.0, 0.0]]
    vertices = torch.tensor([corners], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    result = render_mesh(vertices, faces, {"xyz": vertices}, size, cull_backfaces=False, backend=backend)
    covered = result.face_index[0] >= 0
    assert covered.sum() > 50
    back = project(result.images["xyz"], size)[0][covered]
    rows, cols = torch.nonzero(covered, as_tuple=True)
    np.testing.assert_allclose(back[:, 0].numpy(), cols.double().numpy() + 0.5, atol=1e-9)
    np.testing.assert_allclose(back[:, 1].numpy(), rows.double().numpy() + 0.5, atol=1e-9)


# --------------------------------------------------------------------------- culling
@pytest.mark.parametrize("backend", BACKENDS)
def test_backface_culling_convention(backend):
    """Counter-clockwise seen from +z (the camera side) in model space is front-facing:
    kept with culling; the same triangle wound the other way is culled."""
    vertices = torch.tensor([[[-60.0, -60.0, 0.0], [60.0, -60.0, 0.0], [0.0, 60.0, 0.0]]])
    front, back = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1]])
    screen = project(vertices, (32, 32))
    for faces, visible in ((front, True), (back, False)):
        face_index, _ = rasterize(screen, faces, (32, 32), cull_backfaces=True, backend=backend)
        assert bool((face_index >= 0).any()) == visible
        face_index, _ = rasterize(screen, faces, (32, 32), cull_backfaces=False, backend=backend)
        assert bool((face_index >= 0).any())
    # Model-space +y is up: the apex (0, 60) mm, at v = 16 - 8.7 px, is the narrow top.
    face_index, _ = rasterize(screen, front, (32, 32), backend=backend)
    covered = face_index[0] >= 0
    rows = torch.nonzero(covered)[:, 0]
    assert rows.min() == 8 and rows.max() == 24
    assert covered[8].sum() < covered[24].sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_mesh_culling_shows_only_front(backend):
    """An octahedron facing the camera: with culling every visible face has an
    outward normal with +z; and the image equals the unculled one (closed mesh)."""
    r = 40.0
    verts = torch.tensor([[r, 0, 0], [-r, 0, 0], [0, r, 0], [0, -r, 0], [0, 0, r], [0, 0, -r]]).unsqueeze(0)
    faces = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    rot = torch.tensor([[math.cos(0.3), 0, math.sin(0.3)], [0, 1, 0], [-math.sin(0.3), 0, math.cos(0.3)]])
    verts = verts @ rot.T
    screen = project(verts, (48, 48))
    culled, _ = rasterize(screen, faces, (48, 48), cull_backfaces=True, backend=backend)
    full, _ = rasterize(screen, faces, (48, 48), cull_backfaces=False, backend=backend)
    assert torch.equal(culled, full)
    v = verts[0]
    normals = torch.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]], dim=-1)
    seen = torch.unique(culled[culled >= 0])
    assert (normals[seen, 2] > 0).all() and len(seen) == 4


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_barycentrics_and_interpolate(backend):
    """Both backward implementations (torch autograd, numba's analytic one) against
    finite differences, w.r.t. u, v and depth and the attributes."""
    generator = torch.Generator().manual_seed(11)
    screen, faces = random_mesh(generator, batch=2, num_faces=3, image_size=(7, 7), scale=5.0)
    attributes = torch.randn(2, screen.shape[1], 2, generator=generator, dtype=torch.float64)
    face_index, _ = rasterize(screen, faces, (7, 7), backend=backend)
    assert (face_index >= 0).sum() > 20

    def bary_of(s):
        fi, bary = rasterize(s, faces, (7, 7), backend=backend)
        assert torch.equal(fi, face_index)  # the discrete pass must not move under eps
        return bary

    def image_of(s, attr):
        fi, bary = rasterize(s, faces, (7, 7), backend=backend)
        return interpolate(attr, faces, fi, bary, backend=backend)

    assert torch.autograd.gradcheck(bary_of, (screen.clone().requires_grad_(),))
    assert torch.autograd.gradcheck(image_of, (screen.clone().requires_grad_(), attributes.clone().requires_grad_()))


def test_interpolate_by_hand():
    attributes = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]]])
    faces = torch.tensor([[0, 1, 2]])
    face_index = torch.tensor([[[0, -1]]])
    bary = torch.tensor([[[[0.5, 0.25, 0.25], [0.3, 0.3, 0.4]]]])
    out = interpolate(attributes, faces, face_index, bary)
    np.testing.assert_allclose(out[0, 0].numpy(), [[1.5, 1.5], [0.0, 0.0]])


# --------------------------------------------------------------------------- robustness
def test_bad_backend_and_shapes_are_reported():
    from lib.errors import UserError

    screen, faces = one_triangle([(1, 1), (1, 6), (6, 1)])
    with pytest.raises(UserError, match="render.backend"):
        rasterize(screen, faces, (8, 8), backend="opengl")
    with pytest.raises(ValueError, match="faces"):
        rasterize(screen, faces + 1, (8, 8))
    with pytest.raises(ValueError, match="screen_xyz"):
        rasterize(screen[0], faces, (8, 8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_behind_camera_offscreen_are_finite(backend):
    vertices = torch.tensor(
        [
            [
                [-30.0, -30.0, 0.0], [30.0, -30.0, 0.0], [0.0, 30.0, 0.0],  # a normal triangle
                [0.0, 0.0, 10.0], [0.0, 0.0, 10.0], [5.0, 5.0, 10.0],  # degenerate (repeated vertex)
                [-20.0, -20.0, 990.0], [20.0, -20.0, 1100.0], [0.0, 20.0, 1000.0],  # through and behind the camera
                [1e5, 1e5, 0.0], [2e5, 1e5, 0.0], [1e5, 2e5, 0.0],  # far off-screen
                [-1.0, -1.0, 5.0], [1.0, -1.0, 5.0], [-1.0, -1.0 + 1e-9, 5.0],  # sliver
            ]
        ],
        requires_grad=True,
    )
    faces = torch.arange(15).reshape(5, 3)
    result = render_mesh(vertices, faces, {"xyz": vertices}, (32, 32), cull_backfaces=False, backend=backend)
    assert set(torch.unique(result.face_index).tolist()) <= {-1, 0}
    assert torch.isfinite(result.barycentrics).all() and torch.isfinite(result.images["xyz"]).all()
    result.images["xyz"].sum().backward()
    assert torch.isfinite(vertices.grad).all()
    assert vertices.grad[0, :3].abs().sum() > 0


# --------------------------------------------------------------------------- BFM-size mesh
def posed_face_like_mesh(yaw_deg, dtype):
    from lib.geometry import euler_to_matrix, rigid_transform
    from lib.render.synthetic import face_like_mesh

    vertices, faces = face_like_mesh(dtype=dtype)
    angles = torch.tensor([[0.1, math.radians(yaw_deg), 0.05]], dtype=dtype)
    return rigid_transform(vertices[None], euler_to_matrix(angles), torch.zeros(1, 3, dtype=dtype)), faces


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfm_size_mesh_matches_reference(backend):
    """35,721 vertices / 70,688 triangles (BFM-front size), yawed so that the nose
    occludes the cheek, at 48 x 48 px (the reference is a Python loop)."""
    vertices, faces = posed_face_like_mesh(35.0, torch.float64)
    size = (48, 48)
    screen = project(vertices, size)
    face_index, _ = rasterize(screen, faces, size, cull_backfaces=True, backend=backend)
    assert (face_index >= 0).float().mean() > 0.4
    assert_matches_reference(screen, faces, size, True, backend)


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_backends_agree_at_full_size_float32():
    """Face index, barycentrics, images and gradients (autograd vs numba's analytic
    backward) of the two backends on the BFM-size mesh at 224 px in float32."""
    vertices, faces = posed_face_like_mesh(-20.0, torch.float32)
    vertices = torch.cat([vertices, vertices.flip(-1) * torch.tensor([1.0, 1.0, -1.0])])  # second view: odd geometry
    generator = torch.Generator().manual_seed(8)
    colors = torch.rand(2, vertices.shape[1], 3, generator=generator)
    weights = torch.rand(2, 224, 224, 3, generator=generator)
    out = {}
    for backend in ("torch", "numba"):
        verts, cols = vertices.clone().requires_grad_(), colors.clone().requires_grad_()
        result = render_mesh(verts, faces, {"c": cols}, (224, 224), cull_backfaces=True, backend=backend)
        (result.images["c"] * weights).sum().backward()
        images = result.images["c"].detach()
        out[backend] = (result.face_index, result.barycentrics.detach(), images, verts.grad, cols.grad)
    index_t, bary_t, image_t, vgrad_t, cgrad_t = out["torch"]
    index_n, bary_n, image_n, vgrad_n, cgrad_n = out["numba"]
    assert (index_t >= 0).float().mean() > 0.4
    same = index_t == index_n
    assert same.float().mean() > 0.9999
    np.testing.assert_allclose(bary_n[same].numpy(), bary_t[same].numpy(), atol=1e-4)
    np.testing.assert_allclose(image_n.numpy(), image_t.numpy(), atol=1e-4)
    np.testing.assert_allclose(vgrad_n.numpy(), vgrad_t.numpy(), atol=1e-4 * vgrad_t.abs().max().item())
    np.testing.assert_allclose(cgrad_n.numpy(), cgrad_t.numpy(), atol=1e-4 * cgrad_t.abs().max().item())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    vertices, faces = posed_face_like_mesh(20.0, torch.float32)
    colors = torch.rand_like(vertices)
    cpu = render_mesh(vertices, faces, {"c": colors}, (224, 224), cull_backfaces=True, backend="torch")
    gpu = render_mesh(vertices.cuda(), faces.cuda(), {"c": colors.cuda()}, (224, 224), cull_backfaces=True, backend="auto")
    same = cpu.face_index == gpu.face_index.cpu()
    assert same.float().mean() > 0.9999
    np.testing.assert_allclose(gpu.images["c"].cpu()[same].numpy(), cpu.images["c"][same].numpy(), atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_render_mesh_attributes_and_mask(backend):
    """Stacked interpolation of several attributes equals one call per attribute."""
    vertices, faces = posed_face_like_mesh(10.0, torch.float32)
    generator = torch.Generator().manual_seed(2)
    attributes = {
        "rgb": torch.rand(1, vertices.shape[1], 3, generator=generator),
        "labels": torch.rand(1, vertices.shape[1], 10, generator=generator),
        "depth64": vertices[..., 2:].double(),
    }
    result = render_mesh(vertices, faces, attributes, (40, 40), cull_backfaces=True, backend=backend)
    assert torch.equal(result.mask[..., 0], (result.face_index >= 0).float())
    for name, value in attributes.items():
        alone = interpolate(value, faces, result.face_index, result.barycentrics, backend=backend)
        assert result.images[name].shape == (1, 40, 40, value.shape[-1]) and result.images[name].dtype == value.dtype
        torch.testing.assert_close(result.images[name], alone)
    assert torch.equal(result.screen, project(vertices, (40, 40)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_render_mesh_constant_attributes_get_no_gradient_but_pass_one(backend):
    """Attributes with and without requires_grad are stacked apart: the learnable one
    gets the same gradient as alone, the constant one none, and the vertices receive
    the gradient of both (through the barycentrics)."""
    vertices, faces = posed_face_like_mesh(10.0, torch.float64)
    generator = torch.Generator().manual_seed(3)
    colours = torch.rand(1, vertices.shape[1], 3, generator=generator, dtype=torch.float64).requires_grad_(True)
    labels = torch.rand(1, vertices.shape[1], 10, generator=generator, dtype=torch.float64)
    verts = vertices.clone().requires_grad_(True)
    weights = {name: torch.rand(1, 24, 24, width, dtype=torch.float64) for name, width in (("rgb", 3), ("labels", 10))}
    images = render_mesh(verts, faces, {"rgb": colours, "labels": labels}, (24, 24), cull_backfaces=True, backend=backend).images
    loss = sum((images[k] * w).sum() for k, w in weights.items())
    grad_verts, grad_colours = torch.autograd.grad(loss, (verts, colours))
    assert not labels.requires_grad
    # Reference: both attributes learnable and stacked together (the previous behaviour).
    verts2, both = vertices.clone().requires_grad_(True), torch.cat([colours.detach(), labels], -1).requires_grad_(True)
    image = render_mesh(verts2, faces, {"both": both}, (24, 24), cull_backfaces=True, backend=backend).images["both"]
    loss2 = (image * torch.cat([weights["rgb"], weights["labels"]], -1)).sum()
    ref_verts, ref_both = torch.autograd.grad(loss2, (verts2, both))
    torch.testing.assert_close(grad_colours, ref_both[..., :3])
    torch.testing.assert_close(grad_verts, ref_verts)
    assert grad_verts.abs().sum() > 0


# --------------------------------------------------------------------------- a face, looked at
def test_render_builtin_face_frontal_and_yawed(tmp_path):
    """The built-in face model, shaded, lit from the front (positive SH z-band), frontal
    and at 35 deg yaw. Looked at once (doc/renderer.md): upright, subject's left eye on
    image right, bright where the surface faces the camera. The same facts asserted
    on rendered parsing labels and normals."""
    from PIL import Image

    from lib.facemodel.builtin import build_builtin_face_model
    from lib.facemodel.schema import NUM_PARSING_CLASSES, PARSING_CLASSES
    from lib.morphable import FaceCoefficients, MorphableModel

    face_model = build_builtin_face_model()
    morphable = MorphableModel(face_model)
    coeffs = FaceCoefficients.zeros(face_model, 2)
    coeffs.rotation = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.radians(35.0), 0.0]])
    coeffs.lighting = torch.zeros(2, 27)
    coeffs.lighting[:, [2, 11, 20]] = 0.4  # the z (toward-camera) band of each channel
    size = (224, 224)
    instance = morphable(coeffs, size)
    labels = torch.nn.functional.one_hot(torch.as_tensor(face_model.region_labels).long(), NUM_PARSING_CLASSES)
    result = render_mesh(
        instance.vertices,
        morphable.faces,
        {"rgb": instance.colors, "labels": labels.float()[None].expand(2, -1, -1), "normals": instance.normals},
        size,
        cull_backfaces=True,
        backend="auto",
    )
    rgb = result.images["rgb"].clamp(0, 1) ** (1 / 2.2)  # linear -> display
    picture = torch.cat([rgb[0], rgb[1]], dim=1)
    path = tmp_path / "builtin_face_front_yaw35.png"
    if os.environ.get("RENDER_TEST_PNG"):  # to look at it: RENDER_TEST_PNG=/some/file.png
        path = Path(os.environ["RENDER_TEST_PNG"])
    Image.fromarray((picture * 255).round().byte().numpy()).save(path)
    assert np.asarray(Image.open(path)).shape == (224, 448, 3)

    region = result.images["labels"].argmax(-1)
    covered = result.face_index >= 0

    def centre(view, name):
        rows, cols = torch.nonzero((region[view] == PARSING_CLASSES.index(name)) & covered[view], as_tuple=True)
        assert len(rows) > 10, name
        return rows.float().mean().item(), cols.float().mean().item()

    left_eye, right_eye, nose = centre(0, "left_eye"), centre(0, "right_eye"), centre(0, "nose")
    lips = centre(0, "lower_lip")
    assert left_eye[1] > 112 > right_eye[1]  # subject's left on image right
    assert max(left_eye[0], right_eye[0]) < nose[0] < lips[0]  # upright
    assert centre(1, "nose")[1] > nose[1] + 10  # +35 deg yaw turns the nose to image right
    # Culling keeps surfaces facing the camera; lighting follows the normals.
    normal_z = result.images["normals"][..., 2][covered]
    assert normal_z.mean() > 0.6
    skin = covered & (region == PARSING_CLASSES.index("skin"))
    brightness, facing = result.images["rgb"].mean(-1)[skin], result.images["normals"][..., 2][skin]
    assert brightness[facing > 0.9].mean() > 1.1 * brightness[facing < 0.5].mean()


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
@pytest.mark.parametrize("batch", [1, 3])
def test_numba_threads_split_work_identically(batch):
    """The numba backend splits image rows (forward) and views (backward) over
    torch.get_num_threads() threads; the result must not depend on the split."""
    vertices, faces = posed_face_like_mesh(25.0, torch.float32)
    vertices = vertices.expand(batch, -1, -1) + torch.arange(batch, dtype=torch.float32).view(-1, 1, 1) * 4.0
    colors = torch.rand(batch, vertices.shape[1], 3, generator=torch.Generator().manual_seed(4))
    outputs = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            verts, cols = vertices.clone().requires_grad_(), colors.clone().requires_grad_()
            result = render_mesh(verts, faces, {"rgb": cols}, (50, 40), cull_backfaces=True, backend="numba")
            (result.images["rgb"] * torch.linspace(0, 1, 40)[:, None]).sum().backward()
            outputs.append((result.face_index, result.images["rgb"].detach(), verts.grad, cols.grad))
    finally:
        torch.set_num_threads(previous)
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            assert torch.equal(a, b)
