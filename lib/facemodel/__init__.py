"""Face models: the FaceModel type and its sources (built-in, BFM09, ICT-FaceKit, npz)."""
from __future__ import annotations

import os

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


PHOTO_CHOICES = ("auto", "config")

GET_ICT = (
    "git clone https://github.com/ICT-VGL/ICT-FaceKit && .venv/bin/python -m lib.facemodel.ict ICT-FaceKit"
)
"""The one command that gets the real face model for photos (doc/face_models.md)."""


def photo_face_model(cfg) -> tuple[FaceModel, str]:
    """(face model, notice) for reconstructing photos. cfg: FaceModelConfig.

    With cfg.photos == "auto" and the synthetic builtin configured, the converted
    ICT-FaceKit model at cfg.converted is used when it exists (a statistical model of
    real heads); a configured non-builtin model (BFM09, ICT, npz) is always used as
    configured. notice is "" or the one line to print: that photos are fitted with
    the synthetic builtin model, what that means and how to get the real one.
    """
    if cfg.photos not in PHOTO_CHOICES:
        raise UserError(f"face_model.photos='{cfg.photos}' is not one of {', '.join(PHOTO_CHOICES)}")
    if cfg.photos == "auto" and cfg.source == "builtin" and os.path.isfile(cfg.converted):
        return FaceModel.load(cfg.converted), ""
    model = load_face_model(cfg.source, cfg.path)
    if cfg.source != "builtin":
        return model, ""
    missing = f"no {cfg.converted}; " if cfg.photos == "auto" else ""
    return model, (
        f"face model: the synthetic built-in model ({missing}face_model.photos={cfg.photos}). It is not a model of "
        "real faces: fitted shapes look like nobody and only the texture resembles the person. "
        f"For real heads get ICT-FaceKit once: {GET_ICT}"
    )


__all__ = [
    "FaceModel", "GET_ICT", "NUM_PARSING_CLASSES", "PARSING_CLASSES", "PHOTO_CHOICES", "SOURCES", "load_face_model",
    "photo_face_model",
]
