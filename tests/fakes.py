"""Small stand-ins shared by several test files (imported as `from fakes import ...`)."""
import numpy as np

from lib.facemodel.schema import FaceModel


def fake_face_model(num_id=80, num_exp=64, num_tex=80, vertices=70):
    """A random FaceModel whose basis sizes are all that matters (BFM09's by default)."""
    rng = np.random.default_rng(0)
    return FaceModel(
        name="fake",
        mean_shape=rng.normal(size=(vertices, 3)),
        id_basis=rng.normal(size=(vertices, 3, num_id)),
        exp_basis=rng.normal(size=(vertices, 3, num_exp)),
        albedo_mean=rng.uniform(size=(vertices, 3)),
        albedo_basis=rng.normal(size=(vertices, 3, num_tex)),
        faces=np.array([[0, 1, 2]]),
        landmarks68=np.arange(68),
        region_labels=np.zeros(vertices, np.uint8),
        skin_mask=np.ones(vertices, bool),
    )
