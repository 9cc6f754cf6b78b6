"""Face models: the FaceModel type and its sources (built-in, BFM09, ICT-FaceKit, npz)."""
from __future__ import annotations

from lib.errors import UserError
from lib.facemodel.schema import NUM_PARSING_CLASSES, PARSING_CLASSES, FaceModel

SOURCES = ("builtin", "bfm", "bfm_official", "ict", "npz")


def load_face_model(source: str = "builtin", path: str = "") -> FaceModel:
    """Load a face model by source name (FaceModelConfig.source / .path).

    builtin: the deterministic synthetic model (no file); bfm: the seed's
    BFM_model_front.mat; bfm_official: a folder with the official BFM09 release files;
    ict: an ICT-FaceKit FaceXModel folder or .tar.xz; npz: a converted model.
    """
    if source == "builtin":
        from lib.facemodel.builtin import build_builtin_face_model

        return build_builtin_face_model()
    if source not in SOURCES:
        raise UserError(f"face_model.source '{source}' is not one of {', '.join(SOURCES)}")
    if not path:
        raise UserError(f"face_model.source={source} needs face_model.path (see doc/face_models.md)")
    if source == "bfm":
        from lib.facemodel.bfm import load_bfm_front

        return load_bfm_front(path)
    if source == "bfm_official":
        from lib.facemodel.bfm import convert_bfm_official

        return convert_bfm_official(path)
    if source == "ict":
        from lib.facemodel.ict import convert_ict

        return convert_ict(path)
    return FaceModel.load(path)


__all__ = ["FaceModel", "NUM_PARSING_CLASSES", "PARSING_CLASSES", "SOURCES", "load_face_model"]
