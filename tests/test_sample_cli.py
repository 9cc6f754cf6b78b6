"""test_sample.py end to end on tiny synthetic inputs: files written and read back,
resuming, per-subject failures, one-line user errors."""
import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

import test_sample
from lib.cli import run
from lib.config import load_config
from lib.facemodel import load_face_model
from lib.meshio import read_obj

SIZE = 128  # mediapipe finds the built-in model's rendered faces at this size
FAST = [
    "preprocess.aligned=true",
    "face_model.photos=config",  # the built-in model even where pretrain/ holds a converted ICT
    f"fit.crop_size={SIZE}",
    "fit.steps_pose=5",
    "fit.steps_shape=10",
    "fit.steps_appearance=2",
    "fit.render_size=48",
    "fit.texture_size=64",
]


@pytest.fixture(scope="module")
def rendered_views():
    """Two synthetic subjects' 3 views each, uint8 [2, 3, SIZE, SIZE, 3]."""
    from data.synthetic import generate_split

    cfg = load_config(None)
    data_cfg = dataclasses.replace(cfg.data, image_size=SIZE)
    return generate_split(load_face_model("builtin"), data_cfg, cfg.loss, "val", 2, progress=False,
                          feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)["rgb"]


def write_views(folder, views):
    folder.mkdir(parents=True)
    for k, view in enumerate(views):
        Image.fromarray(np.asarray(view)).save(folder / f"view{k}.png")


def test_fit_writes_every_promised_file_and_resumes(tmp_path, rendered_views, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_views(inputs / "ann", rendered_views[0])
    write_views(inputs / "bob", rendered_views[1][:2])  # two views are enough
    assert test_sample.main(["--fit", "--input", str(inputs), "--out", str(out), *FAST]) == 0
    assert (out / "config.yaml").is_file()
    for name, views in (("ann", 3), ("bob", 2)):
        folder = out / name
        mesh = read_obj(str(folder / "mesh.obj"))
        assert mesh.colors is not None and mesh.colors.shape == mesh.vertices.shape
        assert np.isfinite(mesh.vertices).all() and len(mesh.faces) > 0
        textured = read_obj(str(folder / "textured.obj"))
        assert textured.uv_faces is not None and textured.texture_path == str(folder / "textured.png")
        texture = np.asarray(Image.open(textured.texture_path))
        assert texture.shape == (64, 64, 3) and texture.std() > 5  # not a flat / empty image
        assert (folder / "textured.mtl").is_file()
        for k in range(views):
            assert Image.open(folder / f"view{k}.png").size == (3 * SIZE + 8, SIZE)
        assert not (folder / f"view{views}.png").exists()
        sheet = Image.open(folder / "sheet.png")
        assert sheet.size[0] == 3 * SIZE + 8 and sheet.size[1] > (views + 1) * SIZE
        coeffs = np.load(folder / "coeffs.npz")
        assert coeffs["rotation"].shape == (views, 3) and coeffs["landmarks_fit"].shape == (views, 68, 2)
        assert json.loads((folder / "coeffs.json").read_text())["views"] == [f"view{k}" for k in range(views)]
        row = json.loads((folder / "result.json").read_text())
        assert row["views"] == views and len(row["landmark_median_px_per_view"]) == views
    table = capsys.readouterr().out
    assert "ann" in table and "bob" in table

    # Rerunning skips finished subjects (their files stay untouched) unless --overwrite.
    stamp = os.path.getmtime(out / "ann" / "mesh.obj")
    assert test_sample.main(["--fit", "--input", str(inputs), "--out", str(out), *FAST]) == 0
    assert "done before" in capsys.readouterr().out
    assert os.path.getmtime(out / "ann" / "mesh.obj") == stamp


def test_bad_subjects_are_reported_and_the_others_processed(tmp_path, rendered_views, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_views(inputs / "good", rendered_views[0][1:2])
    (inputs / "broken").mkdir()
    (inputs / "broken" / "front.png").write_bytes(b"this is not a png")
    (inputs / "empty").mkdir()
    (inputs / "noface").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(noise).save(inputs / "noface" / "a.png")
    assert test_sample.main(["--fit", "--input", str(inputs), "--out", str(out), *FAST]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "skipped" in line]
    assert any(line.startswith("broken: skipped:") and "front.png" in line for line in lines)
    assert any(line.startswith("empty: skipped:") and "no images" in line for line in lines)
    assert any(line.startswith("noface: skipped:") and "no face found" in line for line in lines)
    assert len(lines) == 3
    assert (out / "good" / "result.json").is_file()
    assert not (out / "broken" / "result.json").exists()


def test_missing_input_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(test_sample.main, ["--fit", "--input", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --input") and "not a folder" in err[0]


def test_demo_mode_reports_error_against_ground_truth(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "fit.demo_subjects=1", *FAST[1:]]
    assert test_sample.main(argv) == 0
    printed = capsys.readouterr().out
    assert "scan-to-mesh error" in printed
    row = json.loads((out / "demo-000" / "result.json").read_text())
    assert np.isfinite(row["shape_error_mm"]) and np.isfinite(row["mean_face_error_mm"])
    assert row["detector_error_px_estimate"] is None  # exact landmarks: no detector ran


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained network of configs/tiny.yaml saved as train.py would."""
    import torch

    from lib.config import config_to_dict
    from models.checkpoint import build_model, save_checkpoint

    cfg = load_config(os.path.join(os.path.dirname(test_sample.__file__), "configs", "tiny.yaml"))
    torch.manual_seed(0)
    model = build_model(cfg, load_face_model(cfg.face_model.source, cfg.face_model.path))
    path = str(tmp_path_factory.mktemp("ckpt") / "last.pt")
    save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(cfg), "epoch": 0, "optimizer": {}})
    return path


@pytest.mark.parametrize("fit", [False, True])
def test_network_and_network_plus_fit_modes(tmp_path, rendered_views, tiny_checkpoint, fit, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_views(inputs / "ann", rendered_views[0][:2])
    argv = ["--checkpoint", tiny_checkpoint, "--input", str(inputs), "--out", str(out), *FAST, "fit.steps_refine=2"]
    assert test_sample.main(argv + (["--fit"] if fit else [])) == 0
    row = json.loads((out / "ann" / "result.json").read_text())
    assert row["mode"] == ("network+fit" if fit else "network") and row["views"] == 2
    assert np.load(out / "ann" / "coeffs.npz")["identity"].shape[0] == 2
    assert read_obj(str(out / "ann" / "mesh.obj")).colors is not None


def test_a_changed_request_redoes_the_subject_never_stale(tmp_path, rendered_views, tiny_checkpoint, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_views(inputs / "ann", rendered_views[0][:2])
    base = ["--input", str(inputs), "--out", str(out), *FAST, "fit.steps_refine=2"]
    assert test_sample.main(["--fit", *base]) == 0
    first = json.loads((out / "ann" / "result.json").read_text())
    assert first["mode"] == "fit"
    capsys.readouterr()

    # Same request: kept. A different thread count changes no result: kept too.
    assert test_sample.main(["--fit", *base, "fit.num_threads=2"]) == 0
    assert "done before" in capsys.readouterr().out

    # A checkpoint now: the network's result, not the old fit.
    assert test_sample.main(["--checkpoint", tiny_checkpoint, *base]) == 0
    captured = capsys.readouterr()
    assert "done before" not in captured.out and "ann: redone: the request changed (" in captured.err
    assert "mode" in captured.err and "checkpoint" in captured.err
    assert json.loads((out / "ann" / "result.json").read_text())["mode"] == "network"

    # A changed fitting setting: redone, named.
    assert test_sample.main(["--fit", *base]) == 0
    assert test_sample.main(["--fit", *base, "fit.steps_shape=11"]) == 0
    assert "settings.fit.steps_shape" in capsys.readouterr().err
    assert json.loads((out / "ann" / "result.json").read_text())["request"]["settings"]["fit"]["steps_shape"] == 11

    # A changed photo: redone, and files of the old third view do not linger.
    write_views(inputs / "cat", rendered_views[1])
    assert test_sample.main(["--fit", *base]) == 0
    assert (out / "cat" / "view2.png").is_file()
    (inputs / "cat" / "view2.png").unlink()
    Image.fromarray(np.asarray(rendered_views[0][0])).save(inputs / "cat" / "view0.png")
    assert test_sample.main(["--fit", *base]) == 0
    assert "cat: redone: the request changed (views)" in capsys.readouterr().err
    assert not (out / "cat" / "view2.png").exists() and not (out / "cat" / "view2_depth_crop.npy").exists()


def test_flat_folder_of_two_identities_is_two_subjects(tmp_path, rendered_views, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    Image.fromarray(np.asarray(rendered_views[0][1])).save(inputs / "ann.png")
    Image.fromarray(np.asarray(rendered_views[1][1])).save(inputs / "bob.ppm")
    assert test_sample.main(["--fit", "--input", str(inputs), "--out", str(out), *FAST]) == 0
    for name in ("ann", "bob"):
        row = json.loads((out / name / "result.json").read_text())
        assert row["views"] == 1 and row["name"] == name
    table = capsys.readouterr().out
    assert "ann" in table and "bob" in table


def test_synthetic_checkpoint_says_so_on_photos(tmp_path, rendered_views, tiny_checkpoint, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_views(inputs / "ann", rendered_views[0][1:2])
    assert test_sample.main(["--checkpoint", tiny_checkpoint, "--input", str(inputs), "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("was trained on synthetic faces") == 1


def test_demo_subjects_honour_preprocess_and_loss_settings():
    """test_sample.py's demo subjects take preprocess.feature_dilation_px and
    loss.skin_weights from the config (the dilation was ignored before)."""
    face_model = load_face_model("builtin")
    base = load_config(None, ["fit.demo_subjects=1", f"fit.crop_size={SIZE}"])
    wide = load_config(None, ["fit.demo_subjects=1", f"fit.crop_size={SIZE}", "preprocess.feature_dilation_px=30"])
    custom = load_config(None, ["fit.demo_subjects=1", f"fit.crop_size={SIZE}", "loss.skin_weights=[0.1, 0.2, 0.3]"])
    a, b, c = (test_sample.demo_subjects(face_model, cfg)[0].skin_weight for cfg in (base, wide, custom))
    feature = np.float32(base.loss.skin_weights[2])
    assert (b == feature).sum() > (a == feature).sum()
    assert np.isclose(c[..., None], (0.1, 0.2, 0.3)).any(-1).all()
