"""Every entry point honours the config sections it reads: one representative value
per section is changed and its effect seen in the outputs or in the objects built.

Sections per entry point (followed through the code):

- train.py: face_model, model (+ num_views for folder datasets), render, data
  (+ data.synthetic), preprocess, loss, train, eval (validation scans);
- test_pixel_face.py: face_model, model (from the checkpoint), render (synthetic
  subjects, heat maps), data (+ synthetic), preprocess and loss.skin_weights (Pixel-Face
  photos: tests/test_evaluation_cli.py), train.device, eval;
- test_sample.py: face_model, model.expression_per_view, render, data.synthetic
  (demo), preprocess and loss (demo skin weights: tests/test_sample_cli.py), fit, eval
  (demo error), train.seed (seeds torch; fitting draws nothing at random);
- prepare.py: face_model (unaligned photos), data (root, cache_dir, image_size),
  preprocess, loss.skin_weights, model.num_views (folder layouts).

Tiny configs (configs/tiny.yaml, 32 px) keep each case to a second or two.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import prepare
import test_pixel_face
import test_sample
import train
from lib.config import load_config
from lib.errors import UserError
from lib.facemodel import load_face_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
FEATURES = np.float32(0.99)  # loss.skin_weights[2] (default): weight of dilated features


@pytest.fixture
def renders(monkeypatch):
    """(cull_backfaces, backend) of every `render_mesh` call (the loss, synthetic
    data, heat maps, pictures), recorded at its rasterizer call."""
    import lib.render.renderer as renderer

    seen = []
    real = renderer.rasterize

    def spy(*args, cull_backfaces, backend):
        seen.append((cull_backfaces, backend))
        return real(*args, cull_backfaces=cull_backfaces, backend=backend)

    monkeypatch.setattr(renderer, "rasterize", spy)
    return seen


RENDER = ["render.cull_backfaces=false", "render.backend=torch"]


@pytest.mark.parametrize("entry", ["train", "test_pixel_face", "test_sample", "prepare"])
def test_face_model_is_loaded_from_the_config(entry, tmp_path):
    """face_model.*: every entry point loads the configured model (here a missing
    BFM file: one clear error naming it) instead of the built-in one."""
    missing = str(tmp_path / "missing.mat")
    argv = ["--out", str(tmp_path / "out"), "face_model.source=bfm", f"face_model.path={missing}"]
    if entry == "prepare":
        argv += ["--input", str(tmp_path)]
    main = {"train": train.main, "test_pixel_face": test_pixel_face.main, "test_sample": test_sample.main,
            "prepare": prepare.main}[entry]
    with pytest.raises(UserError, match="missing.mat"):
        main(["--config", TINY, *argv, "train.device=cpu", "train.progress=false"])


# --- train.py: the Trainer it builds (fit() not run) -------------------------------------------------------

def build_trainer(out, overrides) -> train.Trainer:
    """train.main on configs/tiny.yaml with `overrides`; returns the Trainer it built
    (its fit() returns at once)."""
    built = []

    class Captured(train.Trainer):
        def fit(self):
            built.append(self)
            return []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "Trainer", Captured)
        argv = ["--config", TINY, "--out", str(out), "train.device=cpu", "train.progress=false",
                "eval.scan_points=2000", "eval.refine_points=500", *overrides]
        assert train.main(argv) == 0
    return built[0]


def _parameters(t):
    return sum(p.numel() for p in t.net.parameters())


def _first_sample(t, key):
    return t.train_loader.dataset[0][key]


def _validate(t):
    return t.validate(0, images=False)


def _scan(t):
    """The validator's scan of the first validation subject."""
    sample = t.val_loader.dataset[0]
    return t.validator.scan({"name": [sample["name"]], "gt_shape": sample["gt_shape"][None]}, 0, 0)


TRAIN_CASES = {
    # section: (override, observe(trainer), check(base value, changed value))
    "model": ("model.width=0.125", _parameters, lambda a, b: b > a),
    "data": ("data.image_size=24", lambda t: tuple(_first_sample(t, "rgb").shape[-2:]),
             lambda a, b: a == (32, 32) and b == (24, 24)),
    "data.synthetic": ("data.synthetic.num_train=3", lambda t: len(t.train_loader.dataset), lambda a, b: (a, b) == (4, 3)),
    "preprocess": ("preprocess.feature_dilation_px=40", lambda t: int((_first_sample(t, "skin_weight") == FEATURES).sum()),
                   lambda a, b: b > a),
    "loss.skin_weights": ("loss.skin_weights=[0.1,0.2,0.3]", lambda t: set(np.unique(_first_sample(t, "skin_weight").numpy())),
                          lambda a, b: b == {np.float32(0.1), np.float32(0.2), np.float32(0.3)} and a != b),
    "train.lr": ("train.lr=0.007", lambda t: t.optimizer.param_groups[0]["lr"], lambda a, b: (a, b) == (1e-3, 0.007)),
    "train.batch_size": ("train.batch_size=4", lambda t: t.train_loader.batch_size, lambda a, b: (a, b) == (2, 4)),
    "train.seed": ("train.seed=5", lambda t: next(t.net.parameters()).detach().clone(), lambda a, b: not torch.equal(a, b)),
    "eval": ("eval.scan_points=1500", lambda t: len(_scan(t).points), lambda a, b: (a, b) == (2000, 1500)),
}


@pytest.fixture(scope="module")
def base_trainer(tmp_path_factory):
    return build_trainer(tmp_path_factory.mktemp("train_base"), [])


@pytest.mark.parametrize("section", sorted(TRAIN_CASES))
def test_train_honours(section, base_trainer, tmp_path):
    override, observe, check = TRAIN_CASES[section]
    before, after = observe(base_trainer), observe(build_trainer(tmp_path, [override]))
    assert check(before, after), f"{override}: {before!r} -> {after!r}"


def test_train_honours_loss_weights(base_trainer, tmp_path):
    """loss.*: the validation total drops by exactly weight x term when a weight is
    zeroed (same network: same train.seed)."""
    base = _validate(base_trainer)
    no_photo = _validate(build_trainer(tmp_path, ["loss.photometric=0"]))
    assert no_photo["val/photometric"] == pytest.approx(base["val/photometric"], rel=1e-5)
    expected = base["val/total"] - 1.92 * base["val/photometric"]
    assert no_photo["val/total"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_train_honours_render(tmp_path, renders):
    """render.*: the synthetic data and the objective render with the configured
    culling and backend."""
    _validate(build_trainer(tmp_path, RENDER))
    assert len(renders) > 1 and set(renders) == {(False, "torch")}


def test_train_folders_honour_model_num_views(tmp_path, monkeypatch):
    """data.dataset=folders groups the photos by model.num_views (train.py always used 3)."""
    import data.folders as folders

    root = tmp_path / "views"
    root.mkdir()
    seen = []

    class Stop(Exception):
        pass

    def spy(path, preprocessor, cache_dir, num_views, progress):
        seen.append((path, num_views))
        raise Stop

    monkeypatch.setattr(folders, "FolderViews", spy)
    with pytest.raises(Stop):
        build_trainer(tmp_path / "run", ["data.dataset=folders", f"data.root={root}", "model.num_views=2"])
    assert seen == [(str(root), 2)]


# --- test_pixel_face.py: summary.json, errors.csv, heat maps ----------------------------------------------

SMALL = ["eval.scan_points=3000", "eval.heatmap_size=64", "eval.refine_points=1000", "train.device=cpu"]


def evaluate(out, overrides) -> dict:
    """test_pixel_face.py (mean-face baseline) on tiny.yaml's 2 validation subjects:
    its summary.json with 'rows' (errors.json) and the first heat map's size."""
    assert test_pixel_face.main(["--config", TINY, "--out", str(out), *SMALL, *overrides]) == 0
    summary = json.loads((out / "summary.json").read_text())
    summary["rows"] = json.loads((out / "errors.json").read_text())
    first = out / "samples" / summary["rows"][0]["name"] / "mean_face_heatmap.png"
    summary["heatmap"] = Image.open(first).size
    return summary


@pytest.fixture(scope="module")
def base_evaluation(tmp_path_factory):
    return evaluate(tmp_path_factory.mktemp("eval_base"), [])


EVAL_CASES = {
    "eval.scan_points": ("eval.scan_points=1000", lambda s: max(r["scan_points"] for r in s["rows"]),
                         lambda a, b: b <= 1000 < a),
    "eval.heatmap_size": ("eval.heatmap_size=48", lambda s: s["heatmap"][1], lambda a, b: (a, b) == (64, 48)),
    "eval.num_samples": ("eval.num_samples=1", lambda s: len(s["rows"]), lambda a, b: (a, b) == (2, 1)),
    "eval.refine_rigid": ("eval.refine_rigid=false", lambda s: (s["refine_rigid"], s["mean_face"]["mean"]),
                          lambda a, b: a[0] and not b[0] and a[1] != b[1]),
    "data.synthetic": ("data.synthetic.seed=7", lambda s: [r["mean_face_mean"] for r in s["rows"]],
                       lambda a, b: a != b),
}


@pytest.mark.parametrize("section", sorted(EVAL_CASES))
def test_pixel_face_honours(section, base_evaluation, tmp_path):
    override, observe, check = EVAL_CASES[section]
    before, after = observe(base_evaluation), observe(evaluate(tmp_path, [override]))
    assert check(before, after), f"{override}: {before!r} -> {after!r}"


def test_pixel_face_honours_render(tmp_path, renders):
    """render.*: the synthetic validation subjects and the heat maps render with the
    configured culling and backend (the heat maps used the renderer's defaults)."""
    evaluate(tmp_path, RENDER)
    assert len(renders) > 1 and set(renders) == {(False, "torch")}


# --- test_sample.py demo: the files it writes ------------------------------------------------------------

DEMO = ["fit.demo_subjects=1", "fit.crop_size=64", "fit.render_size=32", "fit.steps_pose=3", "fit.steps_shape=4",
        "fit.steps_appearance=2", "fit.texture_size=32", "eval.scan_points=2000", "eval.refine_points=500"]


def demo(out, overrides) -> dict:
    """test_sample.py's demo (one synthetic subject, fitting): its result.json with
    the coefficients ('coeffs'), the first view picture's and the texture's sizes."""
    assert test_sample.main(["--out", str(out), *DEMO, *overrides]) == 0
    folder = out / "demo-000"
    row = json.loads((folder / "result.json").read_text())
    row["coeffs"] = dict(np.load(folder / "coeffs.npz"))
    row["view_names"] = json.loads((folder / "coeffs.json").read_text())["views"]
    row["view_png"] = Image.open(folder / "view0.png").size
    texture = folder / "textured.png"
    row["texture"] = Image.open(texture).size if texture.is_file() else None
    return row


@pytest.fixture(scope="module")
def base_demo(tmp_path_factory):
    return demo(tmp_path_factory.mktemp("demo_base"), [])


DEMO_CASES = {
    "fit.texture_size": ("fit.texture_size=16", lambda r: r["texture"], lambda a, b: (a, b) == ((32, 32), (16, 16))),
    "fit.crop_size": ("fit.crop_size=48", lambda r: r["view_png"], lambda a, b: (a, b) == ((3 * 64 + 8, 64), (3 * 48 + 8, 48))),
    "fit.steps": ("fit.steps_shape=0 fit.steps_appearance=0", lambda r: np.abs(r["coeffs"]["identity"]).max(),
                  lambda a, b: a > 0 and b == 0),
    "fit.lr": ("fit.lr=0.5", lambda r: r["coeffs"]["albedo"], lambda a, b: not np.allclose(a, b)),
    "loss": ("loss.landmark_heavy_weight=1", lambda r: r["coeffs"]["identity"], lambda a, b: not np.allclose(a, b)),
    # configs/synthetic.yaml shares one expression over the views
    "model.expression_per_view": ("model.expression_per_view=true", lambda r: r["coeffs"]["expression"],
                                  lambda a, b: np.allclose(a, a[:1]) and not np.allclose(b[0], b[1])),
    "data.synthetic": ("data.synthetic.yaw_deg=[-20,20]", lambda r: r["view_names"],
                       lambda a, b: (a, b) == (["yaw-35", "yaw+0", "yaw+35"], ["yaw-20", "yaw+20"])),
    "eval": ("eval.scan_points=500", lambda r: r["shape_error_mm"], lambda a, b: a != b),
}


@pytest.mark.parametrize("section", sorted(DEMO_CASES))
def test_sample_demo_honours(section, base_demo, tmp_path):
    override, observe, check = DEMO_CASES[section]
    before, after = observe(base_demo), observe(demo(tmp_path, override.split()))
    assert check(before, after), f"{override}: {before!r} -> {after!r}"


def test_sample_demo_honours_render(tmp_path, renders):
    """render.*: the demo subjects, fitting's objective and the pictures render with
    the configured culling and backend."""
    demo(tmp_path, RENDER)
    assert len(renders) > 1 and set(renders) == {(False, "torch")}


# --- prepare.py: the preprocessing cache and overlays ----------------------------------------------------

PHOTO = 128  # mediapipe finds the built-in model's rendered faces at this size


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """One synthetic subject's 3 views as 0/ 1/ 2/ view folders of PHOTO px PNGs."""
    pytest.importorskip("mediapipe")
    from data.synthetic import generate_split

    cfg = load_config(None)
    arrays = generate_split(load_face_model("builtin"), dataclasses.replace(cfg.data, image_size=PHOTO), cfg.loss,
                            "val", 1, progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    root = tmp_path_factory.mktemp("photos")
    for view in range(3):
        (root / str(view)).mkdir()
        Image.fromarray(arrays["rgb"][0, view]).save(root / str(view) / f"ann{view}.png")
    return root


def prepared(root, out, overrides) -> dict:
    """prepare.py --overlays on `root`: the cache's settings, the stacked cached
    skin weights and crops, and the overlay count."""
    argv = ["--input", str(root), "--out", str(out), "--overlays", "preprocess.aligned=true", *overrides]
    assert prepare.main(argv) == 0
    (folder,) = glob.glob(str(out / "cache" / "preprocess-*"))
    entries = sorted(glob.glob(os.path.join(folder, "??", "*", "")))
    return {
        "settings": json.loads(open(os.path.join(folder, "settings.json")).read()),
        "skin": np.stack([np.load(os.path.join(e, "skin_weight.npy")) for e in entries]),
        "crop": np.load(os.path.join(entries[0], "crop.npy")).shape,
        "overlays": len(os.listdir(out / "overlays")),
    }


@pytest.fixture(scope="module")
def base_prepared(photo_folder, tmp_path_factory):
    return prepared(photo_folder, tmp_path_factory.mktemp("prepare_base"), [f"data.image_size={PHOTO}"])


PREPARE_CASES = {
    "data.image_size": ("data.image_size=96", lambda p: p["crop"], lambda a, b: (a, b) == ((PHOTO, PHOTO, 3), (96, 96, 3))),
    "preprocess": ("preprocess.feature_dilation_px=30", lambda p: int((p["skin"] == FEATURES).sum()), lambda a, b: b > a),
    "loss.skin_weights": ("loss.skin_weights=[0.1,0.2,0.3]", lambda p: set(np.unique(p["skin"])),
                          lambda a, b: b == {np.float32(0.1), np.float32(0.2), np.float32(0.3)} and a != b),
    "model.num_views": ("model.num_views=2", lambda p: p["overlays"], lambda a, b: (a, b) == (3, 2)),
}


@pytest.mark.parametrize("section", sorted(PREPARE_CASES))
def test_prepare_honours(section, photo_folder, base_prepared, tmp_path):
    override, observe, check = PREPARE_CASES[section]
    size = [] if override.startswith("data.image_size") else [f"data.image_size={PHOTO}"]
    after = prepared(photo_folder, tmp_path, [*size, override])
    assert check(observe(base_prepared), observe(after)), override


def test_prepare_honours_data_root_and_cache_dir(photo_folder, tmp_path):
    cache = tmp_path / "elsewhere"
    assert prepare.main(["--out", str(tmp_path / "out"), "preprocess.aligned=true", f"data.root={photo_folder}",
                         f"data.image_size={PHOTO}", f"data.cache_dir={cache}"]) == 0
    assert glob.glob(str(cache / "preprocess-*" / "settings.json")) and not (tmp_path / "out" / "cache").exists()
