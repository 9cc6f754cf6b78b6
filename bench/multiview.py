"""Does multi-view deep fusion win? Every row of the benchmark, trained and evaluated by
one command, and doc/BENCHMARK.md written from the results.

    .venv/bin/python bench/multiview.py                    # CPU budget (configs/bench_cpu.yaml)
    .venv/bin/python bench/multiview.py --budget gpu       # GPU budget, CUDA only
    .venv/bin/python bench/multiview.py --budget tiny --out /tmp/b --doc /tmp/b/BENCHMARK.md  # seconds
    .venv/bin/python bench/multiview.py --rows mean_face,dfmvr_3v   # a subset (others: "not run")

Data: synthetic multi-view subjects rendered from the budget's face model (ICT-FaceKit
for the cpu and gpu budgets: real shape statistics; the built-in model, with a
warning, when face_model.path is absent), `data.synthetic.num_val` held-out subjects
that every row is evaluated on. Rows (ROWS): the mean face; multi-view fitting without
a network (3 views, 1 view); DF-MVR on 3 views, the same network given the front view
alone, a network trained and tested on the front view; ablations (attention gates off,
involution -> 3x3 convolution, no parsing channel and loss, shared expression); DF-MVR
followed by fitting refinement. Every trained row gets the same steps (`train.*`);
each row's wall-clock is recorded.

Metric: NoW-style scan-to-mesh mean distance (mm) per subject, measured the one way
the project measures (lib.evaluation.runner: `synthetic_scan` samples the scan on the
ground-truth mesh, `measure` runs the NoW procedure; the mesh is
lib.evaluation.prediction's `evaluated_shape`, as in training validation and
test_pixel_face.py), then over subjects mean, median, std and a bootstrap 95 %
interval of the mean; claims compare rows on the same subjects (paired bootstrap of
the relative difference). Each row also keeps every subject's predicted coefficients
(rows/<row>.npz), so a change of the metric re-measures rows without retraining or
refitting them (a row measured under another metric is "stale" until then).

Resumable: everything goes under --out (default runs/bench_multiview/<budget>): the
data cache, one train.py run per trained network (train.py resumes from its last.pt),
and rows/<row>.json per finished row, which a rerun skips; the document and figure are
rewritten from whatever rows have finished, so a killed run keeps its rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import machine  # noqa: E402
from lib.config import Config, config_to_dict, load_config, save_config  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.evaluation.prediction import evaluated_shape  # noqa: E402
from lib.evaluation.report import save_png  # noqa: E402
from lib.evaluation.runner import MEAN_FACE, PREDICTION, evaluate_sample, measure, sample_figure, synthetic_scan  # noqa: E402
from lib.facemodel import load_face_model  # noqa: E402
from lib.facemodel.schema import FaceModel  # noqa: E402

BUDGETS = {"cpu": "configs/bench_cpu.yaml", "gpu": "configs/bench_gpu.yaml", "tiny": "configs/bench_tiny.yaml"}
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
FRONT = 1  # view index of the front view (yaw 0)
METRIC_VERSION = "evaluated_shape + synthetic_scan + measure (issue 12)"
"""Changes whenever what a row's number means changes; with cfg.eval it keys rows."""
MEASURE_KEYS = ("crop_radius_factor", "refine_rigid", "scan_points", "refine_iterations", "refine_points", "seed")
"""The eval.* settings a synthetic subject's error depends on (lib.evaluation.runner)."""


@dataclass(frozen=True)
class Row:
    """One benchmark row. kind: mean (the mean face), fit (fitting from the mean face),
    net (a trained network), refine (a network's prediction refined by fitting).
    network: the train.py run it uses (net, refine); overrides: that run's config
    changes; views: the views given at test time."""

    name: str
    label: str
    kind: str
    network: str = ""
    overrides: tuple = ()
    views: tuple = (0, 1, 2)


NETWORKS = {
    "dfmvr": (),
    "train_1view": (f"data.synthetic.present_views=[{FRONT}]",),
    "gates_off": ("model.attention_gates=false",),
    "conv3x3": ("model.rednet_op=conv3x3",),
    "no_parsing": ("model.parsing_input=none", "loss.parsing=0"),
    "shared_expression": ("model.expression_per_view=false",),
}

# In order of importance: a run stopped early has the main comparisons first.
ROWS = (
    Row("mean_face", "mean face (no reconstruction)", "mean"),
    Row("dfmvr_3v", "DF-MVR, 3 views", "net", "dfmvr"),
    Row("dfmvr_test1v", "DF-MVR, front view only at test time", "net", "dfmvr", views=(FRONT,)),
    Row("train_1v", "trained and tested on the front view", "net", "train_1view", views=(FRONT,)),
    Row("fit_3v", "fitting without a network, 3 views", "fit"),
    Row("fit_1v", "fitting without a network, front view", "fit", views=(FRONT,)),
    Row("dfmvr_refine", "DF-MVR + fitting refinement, 3 views", "refine", "dfmvr"),
    Row("gates_off", "ablation: attention gates off (plain concatenation)", "net", "gates_off"),
    Row("conv3x3", "ablation: involution -> 3x3 convolution", "net", "conv3x3"),
    Row("no_parsing", "ablation: no parsing channel, no parsing loss", "net", "no_parsing"),
    Row("shared_expression", "ablation: one expression shared by the views", "net", "shared_expression"),
)
ROW_BY_NAME = {r.name: r for r in ROWS}

# The embedded default's measured result (doc/training.md, "Measured: the embedded
# default"): `python train.py`, built-in model, 3,456 steps of 8 subjects at 64 px.
EMBEDDED_DEFAULT = {"steps": 3456, "batch": 8, "now_mm": 1.206, "mean_face_now_mm": 1.617, "lower_percent": 25.4}

# (claim, better row, worse row, target relative reduction or None)
CLAIMS = (
    ("learning beats the mean face (target: >= 50 % lower)", "dfmvr_3v", "mean_face", 0.5),
    ("three views beat one view given to the same network (target: >= 10 % lower)", "dfmvr_3v", "dfmvr_test1v", 0.1),
    ("three views beat a network trained and tested on one view", "dfmvr_3v", "train_1v", None),
    ("deep fusion beats multi-view fitting without a network", "dfmvr_3v", "fit_3v", None),
    ("attention-gated skips beat plain concatenation", "dfmvr_3v", "gates_off", None),
    ("involution beats a 3x3 convolution in RedNet", "dfmvr_3v", "conv3x3", None),
    ("the parsing channel and loss help", "dfmvr_3v", "no_parsing", None),
    ("per-view expression beats one shared expression", "dfmvr_3v", "shared_expression", None),
    ("fitting refinement improves the network's prediction", "dfmvr_refine", "dfmvr_3v", None),
    ("fitting on three views beats fitting on one", "fit_3v", "fit_1v", None),
)


# ---------------------------------------------------------------------- statistics
def bootstrap_mean_ci(values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple:
    """95 % percentile-bootstrap interval (low, high) of the mean of values [S] over
    resampled subjects."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_reduction(better: np.ndarray, worse: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple:
    """Relative reduction 1 - mean(better) / mean(worse) over the same subjects [S] and
    its 95 % paired-bootstrap interval (subjects resampled together)."""
    better, worse = np.asarray(better, np.float64), np.asarray(worse, np.float64)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(better), (samples, len(better)))
    boot = 1.0 - better[index].mean(axis=1) / worse[index].mean(axis=1)
    return float(1.0 - better.mean() / worse.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def summary(errors: list) -> dict:
    """Per-subject errors [S] mm -> mean, median, std, ci_low, ci_high (mm)."""
    e = np.asarray(errors, np.float64)
    low, high = bootstrap_mean_ci(e)
    return {"mean": float(e.mean()), "median": float(np.median(e)), "std": float(e.std()), "ci_low": low,
            "ci_high": high, "subjects": int(e.size)}


def verdict(reduction: float, low: float, high: float, target: float | None) -> str:
    """'holds' when the interval of the reduction lies above 0 (and the target is met
    by the point estimate), 'reversed' when it lies below 0, else 'not resolved'."""
    if low > 0:
        if target is not None and reduction < target:
            return f"holds in direction, misses the {100 * target:.0f} % target"
        return "holds"
    if high < 0:
        return "does not hold (reversed)"
    return "not resolved (interval includes 0)"


# ------------------------------------------------------------------ face model, data
def resolve_face_model(cfg: Config, cache_dir: str) -> tuple[FaceModel, Config, str]:
    """(face model, cfg pointing at a converted .npz of it, note). ICT-FaceKit is
    converted once into cache_dir; when its path is absent the built-in model is used
    with a warning (the numbers then say nothing about real shape statistics)."""
    source, path = cfg.face_model.source, cfg.face_model.path
    if source == "builtin":
        return load_face_model("builtin"), cfg, "built-in synthetic face model (not real shape statistics)"
    if not os.path.exists(path):
        message = (f"face_model.path={path!r} not found: falling back to the built-in synthetic face model; "
                   "the rows then say nothing about real shape statistics (get ICT-FaceKit, see doc/face_models.md)")
        warnings.warn(message, stacklevel=2)
        print(f"warning: {message}", file=sys.stderr)
        fallback = dataclasses.replace(cfg, face_model=dataclasses.replace(cfg.face_model, source="builtin", path=""))
        return load_face_model("builtin"), fallback, "built-in synthetic face model (FALLBACK: ICT-FaceKit not found)"
    os.makedirs(cache_dir, exist_ok=True)
    npz = os.path.abspath(os.path.join(cache_dir, "face_model.npz"))
    if source == "ict":
        from lib.facemodel.ict import convert_ict

        model = convert_ict(path, npz)
    else:
        model = load_face_model(source, path)
        model.save(npz)
    converted = dataclasses.replace(cfg, face_model=dataclasses.replace(cfg.face_model, source="npz", path=npz))
    where = f"{source}: {path}" if source != "npz" else "converted once into the run's cache"
    return model, converted, f"{model.name} ({where}): {model.description}"


# -------------------------------------------------------------------- predictions
def view_mask(views: tuple, num_views: int) -> torch.Tensor:
    mask = torch.zeros(num_views, dtype=torch.bool)
    mask[list(views)] = True
    return mask


def metric_key(cfg: Config) -> str:
    """What a row's errors depend on besides the predictions: the metric's definition
    and the evaluation settings."""
    measured = {k: getattr(cfg.eval, k) for k in MEASURE_KEYS}
    return json.dumps({"metric": METRIC_VERSION, "eval": measured}, sort_keys=True)


def same_metric(record: dict, cfg: Config) -> bool:
    """True when a row record was measured as `metric_key(cfg)` measures (its stored
    key may list more eval settings than MEASURE_KEYS)."""
    try:
        stored = json.loads(record.get("metric") or "{}")
    except ValueError:
        return False
    return stored.get("metric") == METRIC_VERSION and all(
        stored.get("eval", {}).get(k) == getattr(cfg.eval, k) for k in MEASURE_KEYS)


def subject_error(verts: np.ndarray, index: int, ctx: "Context"):
    """NowResult of the mesh verts [V, 3] mm against held-out subject `index`'s scan."""
    gt = ctx.val[index]["gt_shape"].double().numpy()
    scan = synthetic_scan(gt, ctx.face_model, ctx.cfg.eval, index)
    return measure(verts, ctx.face_model, scan, ctx.cfg.eval), scan


@dataclass
class Context:
    cfg: Config
    face_model: FaceModel
    val: object  # data.synthetic.SyntheticMultiView over the held-out subjects
    out: str
    morphable: object = None
    meshes: dict = field(default_factory=dict)  # row -> first subject's evaluated mesh (figure)


def _fit_target(sample: dict, views: tuple):
    """The fitting target of a synthetic subject's `views`: its landmarks are the
    model's fixed vertices projected, so the jaw is fitted without contour marching."""
    from lib.fitting.fit import FitTarget

    index = list(views)
    return FitTarget(rgb=sample["rgb"][index], landmarks=sample["landmarks"][index],
                     parsing=sample["parsing"][index], skin_weight=sample["skin_weight"][index],
                     landmarks_on_silhouette=False)


def predict_row(row: Row, ctx: Context) -> list:
    """Every held-out subject's prediction for a row: a list of (FaceCoefficients with
    one row per view slot, view_mask bool [Vw]); the mean face is the zero coefficients."""
    from lib.fitting.fit import fit_views
    from lib.morphable import FaceCoefficients

    cfg, out = ctx.cfg, []
    predictor = None
    if row.network:
        from models.predictor import load_predictor

        predictor = load_predictor(os.path.join(run_dir(ctx, row.network), "checkpoints", "last.pt"), "cpu")
    for i in range(len(ctx.val)):
        sample = ctx.val[i]
        slots = sample["rgb"].shape[0]
        mask = view_mask(row.views, slots)
        if row.kind == "mean":
            coeffs = FaceCoefficients.zeros(ctx.face_model, slots)
        elif row.kind == "fit":
            fitted = fit_views(ctx.morphable, _fit_target(sample, row.views), cfg.fit, cfg.loss, cfg.render,
                               expression_per_view=cfg.model.expression_per_view).coeffs
            coeffs = _in_slots(fitted, mask)
        else:
            coeffs = predictor(sample["rgb"][None], sample["parsing"][None], mask[None])
            if row.kind == "refine":
                refined = fit_views(ctx.morphable, _fit_target(sample, row.views), cfg.fit, cfg.loss, cfg.render,
                                    init=coeffs.map(lambda t: t[mask]),
                                    expression_per_view=cfg.model.expression_per_view).coeffs
                coeffs = _in_slots(refined, mask)
        out.append((coeffs.map(lambda t: t.detach().float()), mask))
    return out


def _in_slots(coeffs, mask: torch.Tensor):
    """Coefficients of the present views only (rows in view order) -> one row per slot
    (absent slots repeat the first present row; view_mask marks them)."""
    index = torch.cumsum(mask.long(), 0).clamp_min(1) - 1
    return coeffs.map(lambda t: t[index])


def measure_row(row: Row, predictions: list, ctx: Context) -> list:
    """Per-subject NoW-style mean errors (mm) of predictions (from `predict_row`)."""
    errors = []
    for i, (coeffs, mask) in enumerate(predictions):
        verts = evaluated_shape(ctx.morphable, coeffs, mask[None])[0].double().numpy()
        errors.append(float(subject_error(verts, i, ctx)[0].distances.mean()))
        if i == 0:
            ctx.meshes[row.name] = verts
    return errors


def save_predictions(path: str, predictions: list) -> None:
    """rows/<row>.npz: every coefficient field stacked over subjects [S, Vw, K] and the
    view masks [S, Vw]."""
    fields = {name: np.stack([getattr(c, name).numpy() for c, _ in predictions])
              for name in ("identity", "expression", "albedo", "rotation", "translation", "lighting")}
    tmp = path + ".tmp.npz"
    np.savez(tmp, view_mask=np.stack([m.numpy() for _, m in predictions]), **fields)
    os.replace(tmp, path)


def load_predictions(path: str) -> list:
    from lib.morphable import FaceCoefficients

    data = np.load(path)
    names = ("identity", "expression", "albedo", "rotation", "translation", "lighting")
    return [(FaceCoefficients(**{n: torch.from_numpy(data[n][i]) for n in names}), torch.from_numpy(data["view_mask"][i]))
            for i in range(len(data["view_mask"]))]


# ------------------------------------------------------------------------ training
def run_dir(ctx: Context, network: str) -> str:
    return os.path.join(ctx.out, "networks", network)


def train_network(network: str, ctx: Context, config_path: str) -> float:
    """Train (or resume) one network with train.py; returns the wall-clock seconds of
    training so far, summed over invocations (a resumed run adds its part)."""
    folder = run_dir(ctx, network)
    done = os.path.join(folder, "bench_done.json")
    if os.path.isfile(done):
        with open(done) as f:
            return float(json.load(f)["train_seconds"])
    os.makedirs(folder, exist_ok=True)
    elapsed_path = os.path.join(folder, "bench_elapsed.json")
    before = 0.0
    if os.path.isfile(elapsed_path):
        with open(elapsed_path) as f:
            before = float(json.load(f)["seconds"])
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--config", config_path, "--out", folder,
               *NETWORKS[network]]
    start = time.monotonic()
    with open(os.path.join(folder, "bench_train.log"), "a") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = process.wait()
        finally:
            seconds = before + time.monotonic() - start
            _write_json(elapsed_path, {"seconds": seconds})
    if code != 0:
        raise RuntimeError(f"train.py for network '{network}' failed (exit {code}); see {folder}/bench_train.log")
    _write_json(done, {"train_seconds": seconds})
    return seconds


def _write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _read_rows(out: str, cfg: Config) -> tuple[dict, dict]:
    """(finished rows measured with the current metric, stale rows measured otherwise)."""
    current, stale = {}, {}
    for row in ROWS:
        record = _read_json(os.path.join(out, "rows", f"{row.name}.json"))
        if record is not None:
            (current if same_metric(record, cfg) else stale)[row.name] = record
    return current, stale


# -------------------------------------------------------------------------- figure
def write_figure(ctx: Context, path: str, row: str = "dfmvr_3v") -> bool:
    """Three inputs, the reconstruction and its error heat map (next to the mean
    face's) for the first held-out subject, drawn as test_pixel_face.py draws each
    sample (lib.evaluation.runner.sample_figure); False when `row`'s mesh is unknown."""
    if row not in ctx.meshes or "mean_face" not in ctx.meshes:
        return False
    methods = {PREDICTION: ctx.meshes[row], MEAN_FACE: ctx.meshes["mean_face"]}
    scan = subject_error(methods[PREDICTION], 0, ctx)[1]
    folder = os.path.join(ctx.out, "figure")  # the panels' distances and heat maps
    os.makedirs(folder, exist_ok=True)
    stats, heatmaps = evaluate_sample(methods, ctx.face_model, scan, ctx.cfg.eval, ctx.cfg.render, folder)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_png(path, sample_figure(ctx.val[0], methods, stats, heatmaps, ctx.face_model, ctx.cfg.render))
    return True


# ------------------------------------------------------------------------ document
def budget_lines(cfg: Config, budget: str) -> list:
    t, syn, m = cfg.train, cfg.data.synthetic, cfg.model
    steps = t.epochs * (syn.num_train // t.batch_size)
    return [
        f"- budget `{budget}`: every trained row gets {steps:,} steps of {t.batch_size} three-view subjects "
        f"({t.epochs} epochs over a pool of {syn.num_train:,} training subjects; {t.processes} process(es), "
        f"lr {t.lr:g}, cosine from epoch {t.step_epoch}, parsing loss from epoch {t.mask_epoch})",
        f"- network: width {m.width:g}, UNet channels {m.unet_channels}, RedNet blocks {m.rednet_layers}, "
        f"parsing input `{m.parsing_input}`, per-view expression {m.expression_per_view}; {cfg.data.image_size} px",
        f"- evaluation: {syn.num_val} held-out subjects (split 'val', never trained on), NoW-style "
        f"scan-to-mesh mean distance per subject ({cfg.eval.scan_points:,} scan points sampled on the ground-truth "
        f"mesh, crop factor {cfg.eval.crop_radius_factor:g}, 7-point + rigid refinement; the evaluated mesh is "
        "identity + the front view's expression, lib/evaluation/prediction.py); bootstrap "
        f"{BOOTSTRAP_SAMPLES} resamples of subjects (seed {BOOTSTRAP_SEED})",
        f"- fitting: L-BFGS pose {cfg.fit.steps_pose} / shape {cfg.fit.steps_shape}, Adam appearance "
        f"{cfg.fit.steps_appearance}, refinement {cfg.fit.steps_refine} steps, renders at {cfg.fit.render_size} px",
        f"- seeds: data {syn.seed} (subject i of a split depends only on (seed, split, i)), training "
        f"{t.seed}, evaluation {cfg.eval.seed}",
    ]


def write_document(path: str, ctx: Context, budget: str, results: dict, notes: dict, figure: str | None) -> None:
    """doc/BENCHMARK.md from the finished rows (results: row -> record)."""
    lines = [
        "# Benchmark: does multi-view deep fusion win?",
        "",
        "Written by `python bench/multiview.py"
        + ("" if budget == "cpu" else f" --budget {budget}") + "` (do not edit by hand; rerun it).",
        "",
        "## Setup",
        "",
        f"- machine: {notes['machine']}",
        f"- face model: {notes['face_model']}",
        f"- data: synthetic multi-view subjects (yaw {ctx.cfg.data.synthetic.yaw_deg} deg with jitter, SH light, "
        f"random backgrounds, {ctx.cfg.data.image_size} px), ground-truth meshes; the network is trained with the "
        "photometric, 2D-landmark, 3D-landmark, parsing and regulariser losses (doc/training.md); fitting sees "
        "only the images, their 2D landmarks and parsing maps. Those landmarks and maps are exact (rendered from "
        "the ground truth), which favours fitting: on photos they come from a detector (normalised mean error "
        "0.037 frontal, 0.058 at 30 deg yaw on ICT renders, doc/preprocess.md)",
        *budget_lines(ctx.cfg, budget),
        f"- run: started {notes['started']}, this document written {notes['written']}; the load average at the "
        f"start of each row is listed ({notes['contention']}; a row's own training processes add "
        f"{ctx.cfg.train.processes} while it trains)",
        "",
        "## Rows",
        "",
        "| row | mean mm | 95 % CI of the mean | median | std | train wall-clock | evaluation wall-clock | load at start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        record = results.get(row.name)
        if record is None:
            lines.append(f"| {row.label} | {notes['status'][row.name]} | | | | | | |")
            continue
        s = record["summary"]
        train = f"{record['train_seconds'] / 60:.1f} min" if record.get("train_seconds") else "-"
        lines.append(
            f"| {row.label} | **{s['mean']:.3f}** | {s['ci_low']:.3f} - {s['ci_high']:.3f} | {s['median']:.3f} | "
            f"{s['std']:.3f} | {train} | {record['eval_seconds'] / 60:.1f} min | {record.get('load', float('nan')):.1f} |"
        )
    if results:
        train = sum(results[name]["train_seconds"] for name in _first_row_of_each_network(results))
        evaluation = sum(r["eval_seconds"] for r in results.values())
        lines += ["", f"Wall-clock of the {len(results)} finished rows: {train / 60:.1f} min of training (each network "
                  f"once) + {evaluation / 60:.1f} min of prediction and evaluation = {(train + evaluation) / 60:.1f} min, "
                  "plus rendering the data once."]
    lines += ["", "## The paper's claims, here", "",
              "Relative reduction of the mean error, 1 - mean(A) / mean(B), with its paired 95 % bootstrap interval "
              "over the same subjects. \"holds\": the interval lies above 0.", "",
              "| claim | A | B | reduction | 95 % CI | verdict |", "|---|---|---|---|---|---|"]
    for text, better, worse, target in CLAIMS:
        if better in results and worse in results:
            red, low, high = paired_reduction(results[better]["errors"], results[worse]["errors"])
            lines.append(f"| {text} | {better} | {worse} | {100 * red:+.1f} % | {100 * low:+.1f} .. {100 * high:+.1f} % | "
                         f"{verdict(red, low, high, target)} |")
        else:
            missing = ", ".join(r for r in (better, worse) if r not in results)
            lines.append(f"| {text} | {better} | {worse} | | | not measured: {missing} did not finish |")
    lines += ["", "## Reading the rows", "",
              "- The network behind \"front view only at test time\" was trained on three views only: with one "
              "view its other encoders read the front view in their place (doc/network.md, missing views), an input "
              "it never saw. The row measures what the three-view network does with one photo; what one view "
              "allows a network to learn is the \"trained and tested on the front view\" row.",
              "- Fitting runs an optimiser per subject on exact landmarks and parsing maps; the network predicts "
              "in one pass after a short training on a small CPU (doc/training.md: at this size training is "
              "limited by the subjects the network sees). The network + refinement row starts fitting from the "
              f"prediction and runs {ctx.cfg.fit.steps_refine} refinement steps instead of the full fit.",
              "- A synthetic subject's views share one expression (like photos taken at one moment, as "
              "Pixel-Face's are), so per-view expression has nothing to gain over a shared one in this data; "
              "the ablation checks that it costs nothing.",
              "- \"not resolved\" means the interval of the difference includes 0 at this budget: the two "
              "variants are not distinguishable here, in either direction."]
    lines += embedded_default_lines(ctx.cfg, results, notes.get("builtin_mean_face"))
    if notes.get("throughput"):
        lines += ["", "## GPU throughput", "", "| autocast | 3-view samples / s | peak GPU memory |", "|---|---|---|"]
        for entry in notes["throughput"]:
            lines.append(f"| {entry['amp']} | {entry['samples_per_s']:.1f} | {entry['peak_mib']:.0f} MiB |")
    if budget != "gpu":
        lines += ["", "## GPU budget", "",
                  "Not on this page: `python bench/multiview.py --budget gpu` (CUDA only, configs/bench_gpu.yaml: a "
                  "larger network at 128 px, more subjects and steps) writes its own page with the same rows plus "
                  "training throughput (three-view samples per second, bf16 autocast on and off) and peak GPU memory. "
                  "GPU results are recorded in doc/gpu.md."]
    if figure:
        lines += ["", "## Picture", "", f"![inputs, reconstruction, error]({figure})", "",
                  "First held-out subject, drawn as test_pixel_face.py draws every sample: the three inputs, DF-MVR's "
                  "reconstruction from them (\"prediction\"), its error heat map (each vertex's distance to the scan "
                  "after the NoW alignment) and the mean face's (grey: outside the NoW crop). The picture is written by the command and not committed: it shows renders of "
                  "ICT-FaceKit, whose files (and files derived from them) this repository does not carry."]
    lines += ["", "## Rerun", "",
              "    python bench/multiview.py                  # this CPU budget; resumes, skips finished rows",
              "    python bench/multiview.py --report-only    # rewrite this page from the finished rows",
              "    python bench/multiview.py --budget gpu     # larger network and data, CUDA only (+ bf16 throughput)",
              "",
              "Everything (data cache, one train.py run per network, one JSON per finished row with every subject's "
              "error) lies under `runs/bench_multiview/<budget>/`. Without ICT-FaceKit at `face_model.path` the "
              "command falls back to the built-in model with a warning, and this page says so under Setup."]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _first_row_of_each_network(results: dict) -> set:
    """Names of the finished rows that carry their network's training time (rows
    sharing a network report the same train.py run)."""
    first = {}
    for row in ROWS:
        if row.name in results and row.network and row.network not in first:
            first[row.network] = row.name
    return set(first.values())


def embedded_default_lines(cfg: Config, results: dict, builtin_mean_face: float | None) -> list:
    """The section relating the embedded default (built-in model) to these rows."""
    e = EMBEDDED_DEFAULT
    steps = cfg.train.epochs * (cfg.data.synthetic.num_train // cfg.train.batch_size)
    gain = e["lower_percent"]  # from the unrounded errors
    lines = ["", "## The embedded default next to these rows", "",
             f"`python train.py` (built-in synthetic model, {e['steps']:,} steps of {e['batch']} subjects, "
             f"{e['steps'] / steps:.2f}x a row's budget here) reaches a NoW-style {e['now_mm']:.2f} mm against "
             f"{e['mean_face_now_mm']:.2f} mm for the mean face, {gain:.1f} % lower (doc/training.md)."]
    if builtin_mean_face is not None and "mean_face" in results:
        ict = results["mean_face"]["summary"]["mean"]
        lines[-1] += (f" Measured here on {cfg.data.synthetic.num_val} held-out subjects of each model rendered "
                      f"with this page's data settings, the mean face is {builtin_mean_face:.3f} mm from built-in "
                      f"subjects and {ict:.3f} mm from this model's: the two data sets differ in how far faces "
                      "lie from their mean, so compare relative reductions, not millimetres.")
    return lines


# ------------------------------------------------------------------------ throughput
def gpu_throughput(ctx: Context, train_set, steps: int = 20) -> list:
    """Training samples per second and peak memory with bf16 autocast on and off (CUDA)."""
    from lib.losses import multiview_losses
    from lib.morphable import MorphableModel
    from models.checkpoint import build_model

    device = torch.device("cuda")
    morphable = MorphableModel(ctx.face_model).to(device)
    batch_size = ctx.cfg.train.batch_size
    samples = [train_set[i] for i in range(batch_size)]
    batch = {k: torch.stack([s[k] for s in samples]).to(device) for k in
             ("rgb", "parsing", "skin_weight", "landmarks", "view_mask", "landmarks3d")}
    results = []
    for amp in (False, True):
        model = build_model(ctx.cfg, ctx.face_model).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        torch.cuda.reset_peak_memory_stats()
        for i in range(steps + 3):
            if i == 3:
                torch.cuda.synchronize()
                start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                coeffs = model(batch["rgb"], batch["parsing"], batch["view_mask"])
            loss = multiview_losses(morphable, coeffs.map(lambda t: t.float()), batch, ctx.cfg.loss, ctx.cfg.render,
                                    True).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results.append({"amp": "bf16" if amp else "off (float32)", "samples_per_s": steps * batch_size / seconds,
                        "peak_mib": torch.cuda.max_memory_allocated() / 2**20})
    return results


# ---------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--config", help="YAML over the schema defaults (default: the budget's configs/bench_*.yaml)")
    parser.add_argument("--out", help="output folder (default: runs/bench_multiview/<budget>)")
    parser.add_argument("--doc", help="the document to write (default: doc/BENCHMARK.md for the cpu budget, "
                                      "else <out>/BENCHMARK.md)")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all): "
                        + ", ".join(r.name for r in ROWS))
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite the document and figure from the rows finished so far")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.budget == "gpu" and not torch.cuda.is_available():
        raise UserError("--budget gpu needs CUDA, and none is available here; use --budget cpu")
    wanted = [r for r in args.rows.split(",") if r] or [r.name for r in ROWS]
    unknown = [r for r in wanted if r not in ROW_BY_NAME]
    if unknown:
        raise UserError(f"--rows: unknown row(s) {', '.join(unknown)}; known: {', '.join(r.name for r in ROWS)}")
    out = os.path.abspath(args.out or os.path.join(ROOT, "runs", "bench_multiview", args.budget))
    doc = args.doc or (os.path.join(ROOT, "doc", "BENCHMARK.md") if args.budget == "cpu" else os.path.join(out, "BENCHMARK.md"))
    figure_path = os.path.join(os.path.dirname(os.path.abspath(doc)), "figures", "benchmark_multiview.png")
    cache = os.path.join(out, "cache")
    config_path = os.path.join(out, "config.yaml")
    report_only = args.report_only and os.path.isfile(config_path)
    # --report-only describes the run that produced the rows, with the settings it ran under.
    cfg = load_config(config_path if report_only else os.path.join(ROOT, args.config or BUDGETS[args.budget]),
                      [] if report_only else args.overrides)
    torch.set_num_threads(max(1, cfg.fit.num_threads))
    face_model, cfg, face_note = resolve_face_model(cfg, cache)
    cfg.data.cache_dir = cache
    os.makedirs(out, exist_ok=True)
    if os.path.isfile(config_path) and not report_only:
        # eval.* only changes how rows are measured (rows keep their predictions and are
        # re-measured, see metric_key); anything else changes what the rows are.
        previous, current = config_to_dict(load_config(config_path)), config_to_dict(cfg)
        if {k: v for k, v in previous.items() if k != "eval"} != {k: v for k, v in current.items() if k != "eval"}:
            raise UserError(f"{config_path}: this --out holds a run with another config; use a new --out")
    save_config(cfg, config_path)
    progress_path = os.path.join(out, "bench_progress.json")
    # When and where the run started: kept by reruns, so a resumed run or --report-only
    # still names the machine and load of the start (each row lists its own load).
    progress = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                **(_read_json(progress_path) or {})}
    _write_json(progress_path, progress)
    notes = {"machine": progress["machine"], "started": progress["started"], "face_model": face_note, "status": {}}

    from data.synthetic import build_synthetic, load_or_generate, SyntheticMultiView
    from lib.morphable import MorphableModel

    if report_only:  # the held-out subjects only
        arrays = load_or_generate(face_model, cfg, cache, {"val": cfg.data.synthetic.num_val}, progress=False)["val"]
        train_set, val_set = None, SyntheticMultiView(arrays, "val", list(cfg.data.synthetic.present_views))
    else:
        train_set, val_set = build_synthetic(face_model, cfg, cache, progress=cfg.train.progress)
    ctx = Context(cfg, face_model, val_set, out, MorphableModel(face_model))
    builtin_mean = None
    if cfg.face_model.source != "builtin":
        builtin = load_face_model("builtin")
        arrays = load_or_generate(builtin, cfg, cache, {"val": cfg.data.synthetic.num_val}, progress=False)["val"]
        builtin_val = SyntheticMultiView(arrays, "val", [])
        mean = builtin.mean_shape.astype(np.float64)
        scans = [synthetic_scan(builtin_val[i]["gt_shape"].double().numpy(), builtin, cfg.eval, i)
                 for i in range(len(builtin_val))]
        builtin_mean = float(np.mean([measure(mean, builtin, scan, cfg.eval).distances.mean() for scan in scans]))
    notes["builtin_mean_face"] = builtin_mean
    if args.budget == "gpu" and not report_only:
        notes["throughput"] = gpu_throughput(ctx, train_set)

    rows_dir = os.path.join(out, "rows")
    os.makedirs(rows_dir, exist_ok=True)
    report = lambda: write_report(ctx, args.budget, notes, doc, figure_path)  # noqa: E731
    for row in ROWS:
        if args.report_only or row.name not in wanted:
            continue
        record_path = os.path.join(rows_dir, f"{row.name}.json")
        predictions_path = os.path.join(rows_dir, f"{row.name}.npz")
        old = _read_json(record_path)
        if old is not None and same_metric(old, cfg):
            continue
        load = os.getloadavg()[0]
        print(f"[{time.strftime('%H:%M:%S')}] row {row.name}: {row.label} (load average {load:.1f})", flush=True)
        if old is not None and os.path.isfile(predictions_path):  # stale: re-measure the stored predictions
            start = time.monotonic()
            errors = measure_row(row, load_predictions(predictions_path), ctx)
            record = dict(old, errors=errors, summary=summary(errors), metric=metric_key(cfg),
                          measure_seconds=time.monotonic() - start)
            _write_json(record_path, record)
            report()
            continue
        train_seconds = train_network(row.network, ctx, config_path) if row.network else None
        start = time.monotonic()
        predictions = predict_row(row, ctx)
        save_predictions(predictions_path, predictions)
        errors = measure_row(row, predictions, ctx)
        record = {"row": row.name, "label": row.label, "errors": errors, "summary": summary(errors),
                  "train_seconds": train_seconds, "eval_seconds": time.monotonic() - start, "load": load,
                  "metric": metric_key(cfg), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        _write_json(record_path, record)
        s = record["summary"]
        print(f"  {s['mean']:.3f} mm (95 % CI {s['ci_low']:.3f} - {s['ci_high']:.3f}), train "
              f"{(train_seconds or 0) / 60:.1f} min, eval {record['eval_seconds'] / 60:.1f} min", flush=True)
        report()  # after every row, so a run stopped later still leaves a current document
    results = report()
    print(f"wrote {doc}; rows finished: {len(results)}/{len(ROWS)}")
    return 0


def unfinished_status(row: Row, ctx: Context) -> str:
    """What became of a row without a result: stopped during training, or never started."""
    if row.network:
        if os.path.isfile(os.path.join(run_dir(ctx, row.network), "bench_done.json")):
            return "did not finish (network trained, row not evaluated)"
        metrics = os.path.join(run_dir(ctx, row.network), "metrics.jsonl")
        if os.path.isfile(metrics):
            with open(metrics) as f:
                epochs = [json.loads(line)["epoch"] for line in f if line.strip()]
            return f"did not finish (training stopped after epoch {max(epochs)} of {ctx.cfg.train.epochs})"
        if os.path.isdir(run_dir(ctx, row.network)):
            return "did not finish (training started, no epoch completed)"
    return "did not finish (not started)"


def write_report(ctx: Context, budget: str, notes: dict, doc: str, figure_path: str) -> dict:
    """Rewrite the document and figure from the rows finished so far; returns them."""
    results, stale = _read_rows(ctx.out, ctx.cfg)
    for name in ("mean_face", "dfmvr_3v"):
        path = os.path.join(ctx.out, "rows", f"{name}.npz")
        if name in results and name not in ctx.meshes and os.path.isfile(path):  # finished by an earlier invocation
            measure_row(ROW_BY_NAME[name], load_predictions(path)[:1], ctx)
    notes["status"] = {r.name: unfinished_status(r, ctx) for r in ROWS if r.name not in results}
    for name, record in stale.items():
        notes["status"][name] = (f"stale: measured as {record['summary']['mean']:.3f} mm under an earlier metric "
                                 "definition; rerun the command to re-measure")
    all_loads = [r.get("load", float("nan")) for r in results.values()]
    notes["contention"] = (f"load average {min(all_loads):.1f} to {max(all_loads):.1f} on {os.cpu_count()} cores"
                           if all_loads else "unknown")
    notes["written"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figure = figure_path if write_figure(ctx, figure_path) else None
    relative = os.path.relpath(figure, os.path.dirname(os.path.abspath(doc))) if figure else None
    write_document(doc, ctx, budget, results, notes, relative)
    return results


if __name__ == "__main__":
    from lib.cli import run

    run(main)
