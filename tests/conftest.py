"""Shared pytest fixtures: repository root, shared assets, the unpacked ICT archive."""
from __future__ import annotations

import os
import tarfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_ASSETS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "assets")
ICT_ARCHIVE = os.path.join(SHARED_ASSETS, "ict_facekit", "FaceXModel.tar.xz")


@pytest.fixture(scope="session")
def repo_root() -> str:
    """Absolute path of the project checkout."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_assets() -> str:
    """../shared/assets next to the checkout (test-only data, never in the repo)."""
    if not os.path.isdir(SHARED_ASSETS):
        pytest.skip(f"shared assets not found at {SHARED_ASSETS} (see its README; tests needing them skip)")
    return SHARED_ASSETS


@pytest.fixture(scope="session")
def ict_folder(shared_assets, tmp_path_factory) -> str:
    """ICT-FaceKit's FaceXModel/ unpacked once per pytest run into a session tmp dir."""
    if not os.path.isfile(ICT_ARCHIVE):
        pytest.skip(f"ICT-FaceKit archive not found at {ICT_ARCHIVE}")
    target = tmp_path_factory.mktemp("ict")
    with tarfile.open(ICT_ARCHIVE) as archive:
        archive.extractall(target, filter="data")
    return str(target / "FaceXModel")


@pytest.fixture(scope="session")
def ict_model(ict_folder, tmp_path_factory):
    """The converted ICT FaceModel, converted once per run (cached as .npz in tmp)."""
    from lib.facemodel.ict import convert_ict

    return convert_ict(ict_folder, cache=str(tmp_path_factory.mktemp("ict_npz") / "ict.npz"))
