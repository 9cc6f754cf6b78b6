"""FaceModel schema (validation, .npz round trip, adjacency) and 3DMM formation."""
import numpy as np
import pytest
import torch

from lib.errors import UserError
from lib.facemodel.schema import FaceModel
from lib.morphable import FaceCoefficients, MorphableModel


def tiny_model(num_vertices=81, seed=0, **changes):
    """A random but well-formed FaceModel: a bumpy grid facing +z."""
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(num_vertices))
    xs, ys = np.meshgrid(np.linspace(-50, 50, side), np.linspace(-60, 60, side))
    mean = np.stack([xs.ravel(), ys.ravel(), 20 * np.exp(-(xs.ravel() ** 2 + ys.ravel() ** 2) / 900)], 1)
    v = len(mean)
    faces = []
    for r in range(side - 1):
        for c in range(side - 1):
            i = r * side + c
            faces += [[i, i + 1, i + side + 1], [i, i + side + 1, i + side]]
    fields = dict(
        name="tiny",
        mean_shape=mean,
        id_basis=rng.normal(0, 1, (v, 3, 5)),
        exp_basis=rng.normal(0, 1, (v, 3, 4)),
        albedo_mean=np.full((v, 3), 0.5),
        albedo_basis=rng.normal(0, 0.01, (v, 3, 6)),
        faces=np.array(faces),
        landmarks68=rng.integers(0, v, 68),
        region_labels=rng.integers(0, 10, v),
        skin_mask=np.ones(v, bool),
        extra_landmarks={"now7": np.arange(7)},
    )
    fields.update(changes)
    return FaceModel(**fields)


def test_npz_round_trip(tmp_path):
    model = tiny_model()
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = FaceModel.load(path)
    for key in ("mean_shape", "id_basis", "exp_basis", "albedo_mean", "albedo_basis", "faces",
                "landmarks68", "region_labels", "skin_mask"):
        assert np.array_equal(getattr(model, key), getattr(loaded, key)), key
    assert loaded.name == "tiny"
    assert np.array_equal(loaded.extra_landmarks["now7"], np.arange(7))
    assert loaded.uv_coords is None


def test_npz_round_trip_with_uvs(tmp_path):
    base = tiny_model()
    model = base.replace(uv_coords=np.random.rand(5, 2), uv_faces=np.zeros_like(base.faces))
    model.save(str(tmp_path / "m.npz"))
    loaded = FaceModel.load(str(tmp_path / "m.npz"))
    assert np.allclose(loaded.uv_coords, model.uv_coords) and loaded.has_uv


def test_vertex_faces_lists_every_adjacent_triangle():
    model = tiny_model()
    table = model.vertex_faces
    for vertex in range(model.num_vertices):
        expected = sorted(np.nonzero((model.faces == vertex).any(1))[0])
        assert sorted(t for t in table[vertex] if t >= 0) == expected


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mean_shape": np.zeros((81, 2))}, "mean_shape has shape"),
        ({"landmarks68": np.arange(67)}, "landmarks68 has shape"),
        ({"faces": np.array([[0, 1, 999]])}, "faces must be"),
        ({"region_labels": np.full(81, 12)}, "region_labels must be below 10"),
        ({"id_basis": np.zeros((81, 2, 3))}, "id_basis must be"),
        ({"extra_landmarks": {"now7": np.array([500])}}, "landmark set 'now7'"),
    ],
)
def test_inconsistent_models_are_rejected(changes, message):
    with pytest.raises(UserError, match=message):
        tiny_model(**changes)


def test_missing_npz_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="face model file not found"):
        FaceModel.load(str(tmp_path / "nope.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        FaceModel.load(str(tmp_path / "bad.npz"))


def test_shape_and_albedo_are_mean_plus_basis_times_coefficients():
    model = tiny_model()
    mm = MorphableModel(model).double()
    ident, expr, tex = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    shape = mm.shape(ident, expr).numpy()
    albedo = mm.albedo(tex).numpy()
    for n in range(2):
        expected = model.mean_shape + model.id_basis @ ident[n].numpy() + model.exp_basis @ expr[n].numpy()
        assert np.allclose(shape[n], expected, atol=1e-4)
        assert np.allclose(albedo[n], model.albedo_mean + model.albedo_basis @ tex[n].numpy(), atol=1e-6)


def test_forward_at_zero_coefficients_is_the_mean_face_frontal():
    model = tiny_model()
    mm = MorphableModel(model)
    out = mm(FaceCoefficients.zeros(model, 2), (224, 224))
    assert torch.allclose(out.vertices[0], torch.tensor(model.mean_shape), atol=1e-4)
    # Landmarks are the projected landmark vertices; mean face centred on the image.
    assert torch.allclose(out.landmarks, out.screen[:, model.landmarks68, :2])
    assert abs(out.screen[0, :, 0].mean().item() - 112) < 1.0
    # The bump faces the camera: its normals have +z.
    assert (out.normals[0, :, 2] > 0).all()


def test_gradients_reach_every_coefficient():
    model = tiny_model()
    mm = MorphableModel(model)
    coeffs = FaceCoefficients.zeros(model, 1).map(lambda t: (t + 0.01).requires_grad_())
    out = mm(coeffs, (64, 64))
    (out.colors.sum() + out.landmarks.sum()).backward()
    for name, tensor in coeffs.as_dict().items():
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name
