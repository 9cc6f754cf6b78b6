"""3DMM formation in PyTorch: coefficients -> shape, albedo, pose, shading, projection.

Batched and differentiable; every step is one of the small functions of
`lib.geometry` / `lib.shading`, so each can be tested alone.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from lib.facemodel.derived import landmark3d_vertices, region_one_hot
from lib.facemodel.schema import FaceModel
from lib.geometry import euler_to_matrix, project, rigid_transform, vertex_normals
from lib.shading import NUM_SH_COEFFS, sh_shade


@dataclass
class FaceCoefficients:
    """Coefficients of N face instances (N = batch x views when views are flattened).

    identity [N, Kid], expression [N, Kexp], albedo [N, Ktex] (unit-variance
    coefficients of the face model's bases), rotation [N, 3] Euler radians (x, y, z),
    translation [N, 3] mm (offset from the canonical placement at the origin),
    lighting [N, 27] SH coefficients (DC offset added by the shader).
    """

    identity: torch.Tensor
    expression: torch.Tensor
    albedo: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    lighting: torch.Tensor

    def map(self, fn) -> "FaceCoefficients":
        """Apply fn to every tensor (e.g. `lambda t: t.detach()`)."""
        return FaceCoefficients(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def zeros(cls, model: FaceModel, n: int, device=None, dtype=torch.float32) -> "FaceCoefficients":
        """The mean face, frontal, at the canonical placement, under ambient light."""
        z = lambda k: torch.zeros(n, k, device=device, dtype=dtype)  # noqa: E731
        return cls(z(model.num_id), z(model.num_exp), z(model.num_tex), z(3), z(3), z(NUM_SH_COEFFS))


@dataclass
class FaceInstance:
    """What `MorphableModel.forward` returns; N instances, V vertices.

    shape [N, V, 3] mm model space (before pose); vertices [N, V, 3] mm camera space
    (after pose); normals [N, V, 3] unit, camera space; albedo [N, V, 3] and colors
    [N, V, 3] (shaded) linear RGB; screen [N, V, 3] (u px, v px, depth mm);
    landmarks [N, 68, 2] px.
    """

    shape: torch.Tensor
    vertices: torch.Tensor
    normals: torch.Tensor
    albedo: torch.Tensor
    colors: torch.Tensor
    screen: torch.Tensor
    landmarks: torch.Tensor


class MorphableModel(nn.Module):
    """A FaceModel's arrays as torch buffers (they follow .to(device)) plus formation."""

    def __init__(self, face_model: FaceModel):
        super().__init__()
        self.face_model = face_model
        v = face_model.num_vertices
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        self.register_buffer("mean_shape", as_t(face_model.mean_shape).reshape(-1), persistent=False)
        self.register_buffer("id_basis", as_t(face_model.id_basis).reshape(3 * v, -1), persistent=False)
        self.register_buffer("exp_basis", as_t(face_model.exp_basis).reshape(3 * v, -1), persistent=False)
        self.register_buffer("albedo_mean", as_t(face_model.albedo_mean).reshape(-1), persistent=False)
        self.register_buffer("albedo_basis", as_t(face_model.albedo_basis).reshape(3 * v, -1), persistent=False)
        self.register_buffer("faces", torch.as_tensor(face_model.faces, dtype=torch.long), persistent=False)
        self.register_buffer("landmarks68", torch.as_tensor(face_model.landmarks68, dtype=torch.long), persistent=False)
        # Derived once here, not per loss evaluation (lib.facemodel.derived).
        self.register_buffer("region_onehot", region_one_hot(face_model), persistent=False)  # [V, 10]
        self.register_buffer("skin_mask", torch.as_tensor(face_model.skin_mask), persistent=False)  # bool [V]
        index, align = landmark3d_vertices(face_model)
        self.register_buffer("landmark3d_index", index.long(), persistent=False)  # [P]
        self.landmark3d_align = align  # positions of the 7 alignment points in landmark3d_index

    def shape(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """mean + B_id a + B_exp d: identity [N, Kid], expression [N, Kexp] -> [N, V, 3] mm."""
        flat = self.mean_shape + identity @ self.id_basis.T + expression @ self.exp_basis.T
        return flat.reshape(identity.shape[0], -1, 3)

    def albedo(self, coefficients: torch.Tensor) -> torch.Tensor:
        """mean + B_tex b: [N, Ktex] -> [N, V, 3] linear RGB (not clamped)."""
        flat = self.albedo_mean + coefficients @ self.albedo_basis.T
        return flat.reshape(coefficients.shape[0], -1, 3)

    def forward(self, coeffs: FaceCoefficients, image_size: tuple[int, int]) -> FaceInstance:
        shape = self.shape(coeffs.identity, coeffs.expression)
        vertices = rigid_transform(shape, euler_to_matrix(coeffs.rotation), coeffs.translation)
        normals = vertex_normals(vertices, self.faces)
        albedo = self.albedo(coeffs.albedo)
        screen = project(vertices, image_size)
        return FaceInstance(
            shape=shape,
            vertices=vertices,
            normals=normals,
            albedo=albedo,
            colors=sh_shade(albedo, normals, coeffs.lighting),
            screen=screen,
            landmarks=screen[:, self.landmarks68, :2],
        )
