"""Conventions of DESIGN.md pinned by hand-computed cases: rotation, camera, normals,
SH shading."""
import math

import numpy as np
import pytest
import torch

from lib.geometry import euler_to_matrix, focal_length, project, rigid_transform, vertex_normals
from lib.geometry.normals import vertex_normals_torch
from lib.jit import numba_available
from lib.shading import sh_basis, sh_shade

HALF_PI = math.pi / 2
NORMALS = [vertex_normals_torch]
if numba_available():
    from lib.geometry.normals_numba import vertex_normals_numba

    NORMALS.append(vertex_normals_numba)


def _rotate(angles, point):
    r = euler_to_matrix(torch.tensor([angles], dtype=torch.float64))
    return rigid_transform(torch.tensor([[point]], dtype=torch.float64), r, torch.zeros(1, 3, dtype=torch.float64))[0, 0]


def test_rotation_by_90_degrees_about_each_axis():
    # Right-handed: +90 deg about x takes +y to +z, about y takes +z to +x, about z takes +x to +y.
    assert torch.allclose(_rotate([HALF_PI, 0, 0], [0, 1, 0]), torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(_rotate([0, HALF_PI, 0], [0, 0, 1]), torch.tensor([1.0, 0, 0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(_rotate([0, 0, HALF_PI], [1, 0, 0]), torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12)


def test_rotation_order_is_z_after_y_after_x():
    # Rx(90) then Rz(90): +y -> +z (x-rotation) -> +z (z-rotation leaves z). If the order
    # were Rx Rz, +y -> -x (z-rotation) -> -x.
    out = _rotate([HALF_PI, 0, HALF_PI], [0, 1, 0])
    assert torch.allclose(out, torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-12)


def test_rotation_matrices_are_orthonormal():
    r = euler_to_matrix(torch.randn(10, 3, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand(10, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.det(r), torch.ones(10, dtype=torch.float64))


def test_translation_is_added_after_rotation():
    r = euler_to_matrix(torch.tensor([[0.0, 0.0, HALF_PI]]))
    out = rigid_transform(torch.tensor([[[1.0, 0, 0]]]), r, torch.tensor([[10.0, 20, 30]]))
    assert torch.allclose(out, torch.tensor([[[10.0, 21, 30]]]), atol=1e-5)


def test_projection_of_known_points():
    # A point 10 mm right and 20 mm up of the origin, 1000 mm from the camera:
    # u = 112 + 1015 * 10 / 1000 = 122.15, v = 112 - 1015 * 20 / 1000 = 91.7.
    out = project(torch.tensor([[[10.0, 20.0, 0.0], [0.0, 0.0, 500.0]]]), (224, 224))[0]
    assert torch.allclose(out[0], torch.tensor([122.15, 91.7, 1000.0]), atol=1e-4)
    # Nearer point (z = 500 mm toward the camera) has depth 500 and projects to the centre.
    assert torch.allclose(out[1], torch.tensor([112.0, 112.0, 500.0]), atol=1e-4)


def test_focal_length_scales_with_image_size():
    assert focal_length((224, 224)) == 1015.0
    assert math.isclose(focal_length((112, 112)), 507.5)
    out = project(torch.tensor([[[10.0, 0.0, 0.0]]]), (112, 112))[0, 0]
    assert math.isclose(out[0].item(), 56 + 507.5 * 10 / 1000, rel_tol=1e-6)


def test_projection_behind_camera_is_finite():
    out = project(torch.tensor([[[1.0, 1.0, 1000.0], [1.0, 1.0, 1500.0]]]), (64, 64))
    assert torch.isfinite(out).all()
    assert (out[0, :, 2] <= 0).all()


def _reference_vertex_normals(verts, faces):
    """Loop version: sum unit face normals over each vertex's triangles, normalise."""
    out = np.zeros_like(verts)
    for a, b, c in faces:
        n = np.cross(verts[b] - verts[a], verts[c] - verts[a])
        n /= np.linalg.norm(n)
        for idx in (a, b, c):
            out[idx] += n
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _bumpy_grid(rng, batch=1):
    """A 5 x 4 vertex grid with random heights, 24 counter-clockwise triangles:
    vertices [batch, 20, 3] float64, faces [24, 3]."""
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0), indexing="xy"), -1).reshape(-1, 2)
    verts = np.stack([np.concatenate([grid, rng.normal(0, 0.3, (len(grid), 1))], 1) for _ in range(batch)])
    faces = []
    for r in range(3):
        for c in range(4):
            i = r * 5 + c
            faces += [[i, i + 1, i + 6], [i, i + 6, i + 5]]
    return torch.tensor(verts), torch.tensor(faces)


@pytest.mark.parametrize("implementation", NORMALS)
def test_vertex_normals_match_loop_reference(implementation):
    verts, faces = _bumpy_grid(np.random.default_rng(0), batch=3)
    ours = implementation(verts, faces).numpy()
    for b in range(3):
        assert np.allclose(ours[b], _reference_vertex_normals(verts[b].numpy(), faces.numpy()), atol=1e-10)


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_numba_vertex_normals_gradient():
    verts, faces = _bumpy_grid(np.random.default_rng(1), batch=2)
    verts.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: vertex_normals_numba(v, faces), (verts,))
    # Same gradient as the torch graph, also in float32 on a larger batch.
    weights = torch.randn(2, verts.shape[1], 3, dtype=torch.float64)
    grads = [torch.autograd.grad((fn(verts, faces) * weights).sum(), verts)[0] for fn in NORMALS]
    assert torch.allclose(grads[0], grads[1], atol=1e-10)
    v32 = verts.detach().float().repeat(4, 1, 1).requires_grad_(True)
    w32 = weights.float().repeat(4, 1, 1)
    grads = [torch.autograd.grad((fn(v32, faces) * w32).sum(), v32)[0] for fn in NORMALS]
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_counter_clockwise_triangle_faces_camera():
    # Counter-clockwise in the x-y plane seen from +z: the normal points at the camera.
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    normals = vertex_normals(verts, torch.tensor([[0, 1, 2]]))
    assert torch.allclose(normals, torch.tensor([0.0, 0, 1]).expand(1, 3, 3))


def test_sh_shading_of_known_normals():
    # With only the DC offset (zero coefficients), irradiance is 0.8 * pi / sqrt(4 pi)
    # for every normal.
    normals = torch.tensor([[[0.0, 0, 1], [1, 0, 0], [0, -1, 0]]])
    albedo = torch.full((1, 3, 3), 0.5)
    out = sh_shade(albedo, normals, torch.zeros(1, 27))
    expected = 0.5 * 0.8 * math.pi / math.sqrt(4 * math.pi)
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-6)
    # The z band (index 2) lights normals facing the camera and darkens those facing away.
    lighting = torch.zeros(1, 27)
    lighting[0, [2, 11, 20]] = 0.5
    normals = torch.tensor([[[0.0, 0, 1], [0, 0, -1]]])
    out = sh_shade(torch.ones(1, 2, 3), normals, lighting)
    a1c1 = (2 * math.pi / math.sqrt(3)) * (math.sqrt(3) / math.sqrt(4 * math.pi))
    assert torch.allclose(out[0, 0], torch.full((3,), expected * 2 + 0.5 * a1c1), atol=1e-6)
    assert torch.allclose(out[0, 1], torch.full((3,), expected * 2 - 0.5 * a1c1), atol=1e-6)


def test_sh_basis_is_orthogonal_over_the_sphere():
    # The 9 functions are real spherical harmonics, each band scaled by one constant:
    # orthogonal over the sphere, with equal norms inside a band.
    rng = np.random.default_rng(1)
    dirs = torch.tensor(rng.normal(size=(200000, 3)))
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    y = sh_basis(dirs)
    gram = (y.T @ y) / len(dirs)
    diag = torch.diagonal(gram)
    assert torch.allclose(gram - torch.diag(diag), torch.zeros(9, 9, dtype=torch.float64), atol=0.01)
    for band in (slice(1, 4), slice(4, 9)):
        assert torch.allclose(diag[band], diag[band].mean().expand_as(diag[band]), rtol=0.03)
