"""Figures of metrics (simtui.engine.plots): a PNG a figure, one subplot a metric, one
line a run; nothing without matplotlib or without points, and matplotlib is never
loaded before a figure is drawn."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from simtui.engine.plots import MAX_METRICS, DPI, ROW_HEIGHT, WIDTH, metric_keys, metrics_png, run_names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def curve(scale: float, steps: int = 20) -> list[tuple[float, float, float]]:
    return [(float(step), scale / (step + 1), 100.0 + step) for step in range(steps)]


def test_one_subplot_a_metric_at_most_four(tmp_path):
    pytest.importorskip("matplotlib")
    series = {"a1": {f"m{i}": curve(i + 1) for i in range(6)}, "a2": {"m0": curve(2.0), "m5": curve(3.0)}}
    assert metric_keys(series) == ["m0", "m1", "m2", "m3"] and MAX_METRICS == 4
    drawn = metrics_png(series, tmp_path / "six.png", "six metrics", {"a1": "lr=0.1", "a2": "lr=0.2"})
    assert drawn == tmp_path / "six.png"
    assert png_size(drawn.read_bytes()) == (round(WIDTH * DPI), round((ROW_HEIGHT * 4 + 0.6) * DPI))
    one = metrics_png({"a1": {"loss": curve(1.0), "acc": []}}, tmp_path / "one.png", "one metric")
    assert png_size(one.read_bytes())[1] == round((ROW_HEIGHT + 0.6) * DPI)


def test_odd_points_are_left_out_and_nothing_to_draw_is_no_figure(tmp_path):
    pytest.importorskip("matplotlib")
    odd = [(0.0, 1.0, 0.0), (1.0, float("nan"), 0.0), (2.0, float("inf"), 0.0), (3.0, 0.5, 0.0)]
    assert metrics_png({"a1": {"loss": odd}}, tmp_path / "odd.png", "odd").read_bytes().startswith(PNG_SIGNATURE)
    assert metrics_png({}, tmp_path / "none.png", "none") is None
    assert metrics_png({"a1": {}, "a2": {"loss": []}}, tmp_path / "empty.png", "empty") is None
    assert not (tmp_path / "none.png").exists() and not (tmp_path / "empty.png").exists()


def test_without_matplotlib_there_is_no_figure_and_no_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails, as when not installed
    assert metrics_png({"a1": {"loss": curve(1.0)}}, tmp_path / "x.png", "x") is None
    assert not (tmp_path / "x.png").exists()


def test_runs_are_named_by_the_parameters_that_differ():
    assert run_names({"a1": {"lr": 0.1, "seed": 1, "opt": {"name": "adam"}},
                      "a2": {"lr": 0.2, "seed": 1, "opt": {"name": "sgd"}}}) == {
        "a1": "lr=0.1 opt.name=adam", "a2": "lr=0.2 opt.name=sgd"}
    assert run_names({"a1": {"lr": 0.1}, "a2": {}}) == {"a1": "lr=0.1", "a2": "a2"}
    assert run_names({"a1": {"lr": 0.1}, "a2": {"lr": 0.1}}) == {"a1": "a1", "a2": "a2"}  # nothing differs
    # the same point twice (a rerun): its label tells them apart
    assert run_names({"a1": {"lr": 0.1}, "a2": {"lr": 0.2}, "a3": {"lr": 0.2}}) == {
        "a1": "lr=0.1", "a2": "a2 lr=0.2", "a3": "a3 lr=0.2"}
    assert run_names({"a1": {"p": "x" * 40}, "a2": {"p": "y"}})["a1"] == "p=" + "x" * 23 + "…"


def test_simtui_and_its_notifier_load_no_matplotlib():
    code = "import sys, simtui, simtui.engine.notify, simtui.engine.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
