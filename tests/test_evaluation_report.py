"""Evaluation reports: tables written and read back, the cumulative curve by hand,
heat-map colours and a rendered heat map."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from lib.config.schema import RenderConfig
from lib.evaluation.report import (
    OUTSIDE_COLOUR,
    cumulative_curve,
    error_colours,
    plot_cumulative_errors,
    render_error_heatmap,
    save_png,
    summary_table,
    write_json,
    write_sample_table,
)


def test_cumulative_curve_by_hand():
    x, pct = cumulative_curve(np.array([0.5, 1.0, 1.0, 3.0]), max_mm=4.0, bins=4)
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(pct, [0, 75, 75, 100, 100])


def test_tables_round_trip(tmp_path):
    rows = [{"name": "a", "prediction_mean": 1.25, "points": 3}, {"name": "b", "prediction_mean": 2.5, "points": 4}]
    write_sample_table(rows, str(tmp_path / "t.csv"))
    with open(tmp_path / "t.csv") as f:
        back = list(csv.DictReader(f))
    assert [r["name"] for r in back] == ["a", "b"]
    assert float(back[1]["prediction_mean"]) == 2.5 and back[0]["points"] == "3"
    write_json(str(tmp_path / "t.json"), rows)
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    assert not list(tmp_path.glob("*.tmp"))


def test_summary_table_lists_methods_and_explains_rmse():
    stats = {"mean": 1.0, "median": 0.9, "std": 0.5, "rms": 1.1, "RMSE": 1.0, "samples": 3}
    text = summary_table({"prediction": stats, "mean_face": dict(stats, mean=2.0, RMSE=2.0)})
    lines = text.splitlines()
    assert lines[2].startswith("prediction") and "1.0000" in lines[2]
    assert lines[3].startswith("mean_face") and "2.0000" in lines[3]
    assert "RMSE" in lines[-1] and "mean" in lines[-1]


def test_error_colours_scale_and_outside():
    colours = error_colours(np.array([0.0, 4.0, 100.0, np.nan]), max_mm=4.0)
    np.testing.assert_allclose(colours[1], colours[2])  # clipped at the top of the scale
    assert colours[0, 2] > colours[0, 0] and colours[1, 0] > colours[1, 2]  # blue low, red high
    np.testing.assert_array_equal(colours[3], OUTSIDE_COLOUR)


def test_heatmap_render_and_curve_png(tmp_path):
    # A 160 mm square facing the camera (about 70 px wide at 96 px), left half error
    # 0, right half error 4 mm.
    xs, ys = np.meshgrid(np.linspace(-80, 80, 9), np.linspace(-80, 80, 9))
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(81)], 1)
    idx = np.arange(81).reshape(9, 9)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    errors = np.where(verts[:, 0] < 0, 0.0, 4.0)
    image = render_error_heatmap(verts, faces, errors, max_mm=4.0, size=96, render=RenderConfig())
    assert image.dtype == np.uint8 and image.shape[0] == 96 and image.shape[1] > 96
    left, right, corner = image[48, 25].astype(int), image[48, 71].astype(int), image[2, 2]
    assert left[2] > left[0] + 50 and right[0] > right[2] + 50  # blue where 0, red where 4 mm
    np.testing.assert_array_equal(corner, [255, 255, 255])  # background
    save_png(str(tmp_path / "h.png"), image)
    assert Image.open(tmp_path / "h.png").size == (image.shape[1], 96)
    plot_cumulative_errors({"a": np.array([0.5, 1.0]), "b": np.array([2.0])}, str(tmp_path / "c.png"), 8.0)
    assert Image.open(tmp_path / "c.png").size[0] > 100


@pytest.mark.parametrize("bad", [np.zeros(0)])
def test_cumulative_curve_of_nothing_is_zero(bad):
    assert cumulative_curve(bad, 2.0, bins=2)[1].tolist() == [0.0, 0.0, 0.0]
