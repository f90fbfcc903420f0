"""Figures of runs' metrics, as PNG files for a notification: one subplot a metric (at
most MAX_METRICS), one line a run, the step along x.

matplotlib is optional (``pip install 'simtui[plots]'``): it is imported only when a
figure is drawn, never when simtui is, and without it there is no figure (None).
The figure is drawn with the Agg canvas directly, never through pyplot: no global
backend is chosen, no window opens, and figures drawn in threads stay apart.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simtui.store.diff import flatten

MAX_METRICS = 4  # subplots in one figure
MAX_LEGEND = 12  # runs named in the legend; more: none named, the title counts them
WIDTH, ROW_HEIGHT, DPI = 8.0, 2.6, 100  # inches, inches a subplot, dots an inch
NO_MATPLOTLIB = "matplotlib is not installed (pip install 'simtui[plots]'): no figure of the metrics"

Series = Sequence[tuple[float, float, float]]  # (step, value, time), as Store.series gives them
log = logging.getLogger("simtui.plots")


def metric_keys(series_by_label: Mapping[str, Mapping[str, Series]]) -> list[str]:
    """The metrics of the runs that have a point, in order of first appearance, at most MAX_METRICS."""
    keys: dict[str, None] = {}
    for series in series_by_label.values():
        keys.update((key, None) for key, points in series.items() if points)
    return list(keys)[:MAX_METRICS]


def run_names(params_by_label: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """A legend entry for each run: the parameters whose values differ between the
    runs (``lr=0.1 seed=3``, dotted paths for nested ones), else its label."""
    flat = {label: flatten(params or {}) for label, params in params_by_label.items()}
    paths: dict[str, None] = {}
    for values in flat.values():
        paths.update(dict.fromkeys(values))
    differing = [path for path in paths
                 if len({repr(values.get(path, _MISSING)) for values in flat.values()}) > 1]
    names = {}
    for label, values in flat.items():
        shown = " ".join(f"{path}={_short(values[path])}" for path in differing if path in values)
        names[label] = shown or label
    counts = Counter(names.values())
    return {label: f"{label} {name}" if counts[name] > 1 and name != label else name  # a rerun of a point:
            for label, name in names.items()}  # its label tells them apart


def metrics_png(series_by_label: Mapping[str, Mapping[str, Series]], path: str | Path, title: str,
                names: Mapping[str, str] | None = None) -> Path | None:
    """Draw the runs' metrics (``{label: {key: [(step, value, time)]}}``, as
    Store.series gives them) into a PNG file at ``path``: one subplot a metric (the
    first MAX_METRICS), one line a run, named in the legend by ``names`` (label ->
    text; default its label). ``path`` when drawn; None when matplotlib is not
    installed or there is no point to draw."""
    keys = metric_keys(series_by_label)
    if not keys:
        return None
    try:
        importlib.import_module("matplotlib")  # first: a blocked one (sys.modules entry None) fails here
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.info(NO_MATPLOTLIB)
        return None
    names = names or {}
    runs = [label for label, series in series_by_label.items() if any(series.get(key) for key in keys)]
    legend = 1 < len(runs) <= MAX_LEGEND  # one run: the title names it
    figure = Figure(figsize=(WIDTH, ROW_HEIGHT * len(keys) + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    colours = _colours(len(runs))
    lines: dict[str, Any] = {}  # a run's first line: its entry in the legend
    for axis, key in zip(axes, keys):
        for label, colour in zip(runs, colours):  # a run has its colour in every subplot
            points = [(step, value) for step, value, _ in series_by_label[label].get(key, ())
                      if math.isfinite(step) and math.isfinite(value)]
            if points:
                steps, values = zip(*sorted(points))
                [line] = axis.plot(steps, values, color=colour, linewidth=1.2,
                                   marker="." if len(points) < 30 else None)
                lines.setdefault(label, line)
        axis.set_ylabel(key)
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel("step")
    if legend:
        shown = [label for label in runs if label in lines]
        axes[0].legend([lines[label] for label in shown], [names.get(label, label) for label in shown],
                       fontsize="small", loc="best")
    count = "" if legend or len(runs) == 1 else f" ({len(runs)} runs)"
    figure.suptitle(title + count, fontsize="medium")
    path = Path(path)
    figure.savefig(path, format="png")
    return path


_MISSING = object()


def _colours(count: int) -> list[Any]:
    """A colour a run: matplotlib's ten, or as many apart along viridis for more runs."""
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    from matplotlib import colormaps

    return [colormaps["viridis"](i / (count - 1)) for i in range(count)]


def _short(value: Any) -> str:
    """A parameter's value for a legend: ``0.1``, ``adam``; long ones cut."""
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else text[:23] + "…"
