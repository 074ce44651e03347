"""Bokeh charts of the dashboard: each is built once and then fed new data.

Sources carry names (``gantt``, ``curves``...) so that a browser test can read what is
on the screen from the page's Bokeh document.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, LinearColorMapper
from bokeh.palettes import Category10_10, Viridis256
from bokeh.plotting import figure

from candle_lab.figures import STATE_COLOURS

HEIGHT = 300


def _figure(title: str, **kwargs: Any) -> Any:
    # Canvas, not WebGL: with 10,000 trials it opens twice as fast in a Chromium without a
    # GPU (a portal's browser often has none); see benchmarks/dashboard.py.
    fig = figure(
        title=title, height=kwargs.pop("height", HEIGHT), sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset,save", **kwargs,
    )
    fig.toolbar.logo = None
    return fig


class GanttChart:
    """Trials as bars per worker lane, by state, neighbours in contrasting shades."""

    def __init__(self) -> None:
        self.source = ColumnDataSource(
            {k: [] for k in ("trial_id", "lane", "start", "end", "state", "colour", "objective")}, name="gantt"
        )
        self.figure = _figure("Trials per worker", y_range=FactorRange(), x_axis_label="seconds since the first start")
        self.figure.hbar(
            y="lane", left="start", right="end", height=0.8, fill_color="colour", line_color=None, source=self.source
        )
        self.figure.add_tools(
            HoverTool(tooltips=[("trial", "@trial_id"), ("state", "@state"), ("objective", "@objective"),
                                ("time", "@start{0.0} s – @end{0.0} s")])
        )

    def update(self, rows: pd.DataFrame) -> None:
        colours = [STATE_COLOURS.get(s, ("#999999", "#666666"))[int(h)] for s, h in zip(rows["state"], rows["shade"],
                                                                                         strict=True)]
        lanes = sorted(rows["lane"].unique().tolist(), key=_lane_order, reverse=True)
        if list(self.figure.y_range.factors) != lanes:
            self.figure.y_range.factors = lanes
            self.figure.height = max(HEIGHT, 24 * len(lanes) + 80)
        self.source.data = {
            "trial_id": rows["trial_id"].to_numpy(),
            "lane": rows["lane"].astype(str).to_numpy(),
            "start": rows["start"].to_numpy(dtype=float),
            "end": rows["end"].to_numpy(dtype=float),
            "state": rows["state"].astype(str).to_numpy(),
            "colour": np.asarray(colours, dtype=object),
            "objective": rows["objective"].to_numpy(dtype=float),
        }


def _lane_order(lane: str) -> tuple[int, str]:
    return (1, lane) if lane == "queued" else (0, lane)


class UtilizationChart:
    """Running trials over time against the number of workers."""

    def __init__(self) -> None:
        self.source = ColumnDataSource({"time": [], "running": []}, name="utilization")
        self.workers = ColumnDataSource({"time": [], "workers": []})
        self.figure = _figure("Running trials (utilization)", height=220, x_axis_label="seconds")
        self.figure.step(x="time", y="running", mode="after", source=self.source, line_width=2)
        self.figure.line(x="time", y="workers", source=self.workers, line_dash="dotted", color="black")

    def update(self, series: pd.DataFrame, workers: int) -> None:
        self.source.data = {"time": series["time"].to_numpy(float), "running": series["running"].to_numpy(float)}
        end = float(series["time"].max()) if len(series) else 1.0
        self.workers.data = {"time": [0.0, end], "workers": [workers, workers]}


class CurvesChart:
    """Per-epoch metric of each shown trial, one line per trial."""

    def __init__(self, name: str = "curves") -> None:
        self.source = ColumnDataSource({"xs": [], "ys": [], "trial_id": [], "colour": []}, name=name)
        self.points = ColumnDataSource({"step": [], "value": [], "trial_id": [], "colour": []})
        self.figure = _figure("Loss curves", x_axis_label="epoch")
        self.figure.multi_line(xs="xs", ys="ys", line_color="colour", line_width=2, source=self.source)
        dots = self.figure.scatter(x="step", y="value", color="colour", size=5, source=self.points)  # epoch 1 shows
        self.figure.add_tools(HoverTool(renderers=[dots], tooltips=[("trial", "@trial_id"), ("epoch", "@step"),
                                                                    ("value", "@value")]))

    def update(self, curves: dict[int, pd.DataFrame], metric: str) -> None:
        ids = sorted(curves)
        colours = [Category10_10[t % 10] for t in ids]
        self.figure.title.text = f"{metric} per epoch"
        self.source.data = {
            "xs": [curves[t]["step"].to_numpy(float) for t in ids],
            "ys": [curves[t]["value"].to_numpy(float) for t in ids],
            "trial_id": ids,
            "colour": colours,
        }
        sizes = [len(curves[t]) for t in ids]
        self.points.data = {
            "step": np.concatenate([curves[t]["step"].to_numpy(float) for t in ids]) if ids else [],
            "value": np.concatenate([curves[t]["value"].to_numpy(float) for t in ids]) if ids else [],
            "trial_id": np.repeat(ids, sizes),
            "colour": np.repeat(np.asarray(colours, dtype=object), sizes),
        }


class PopulationChart(CurvesChart):
    """PBT: one line per member over its whole life, a star where it copied another."""

    def __init__(self) -> None:
        super().__init__(name="population")
        self.figure.title.text = "Population"
        self.jumps = ColumnDataSource({"step": [], "value": [], "member": [], "donor": []}, name="jumps")
        stars = self.figure.scatter(x="step", y="value", source=self.jumps, marker="star", size=13,
                                    color="#d62728")
        self.figure.add_tools(HoverTool(renderers=[stars], tooltips=[("member", "@member"), ("copied", "@donor")]))

    def update_population(self, curves: dict[int, pd.DataFrame], jumps: pd.DataFrame, metric: str) -> None:
        self.update(curves, metric)
        self.figure.title.text = f"Population: {metric} per epoch (★ exploit)"
        self.jumps.data = {k: jumps[k].to_numpy() for k in ("step", "value", "member", "donor")}


class LineageChart:
    """PBT lineage: members by interval, an edge from the checkpoint each interval started
    from (red: copied from another member), points coloured by objective."""

    def __init__(self) -> None:
        self.edges = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "colour": []}, name="lineage")
        self.nodes = ColumnDataSource({"interval": [], "member": [], "objective": [], "trial_id": []})
        self.mapper = LinearColorMapper(palette=Viridis256)
        self.figure = _figure("Lineage", x_axis_label="interval", y_axis_label="member")
        self.figure.segment(x0="x0", y0="y0", x1="x1", y1="y1", line_color="colour", line_width=2,
                            source=self.edges)
        dots = self.figure.scatter(x="interval", y="member", size=9, source=self.nodes,
                                   color={"field": "objective", "transform": self.mapper})
        self.figure.add_tools(HoverTool(renderers=[dots], tooltips=[("trial", "@trial_id"),
                                                                    ("objective", "@objective")]))

    def update(self, line: pd.DataFrame) -> None:
        moved = line[line["interval"] > 0]
        self.edges.data = {
            "x0": (moved["interval"] - 1).to_numpy(float), "y0": moved["source"].to_numpy(float),
            "x1": moved["interval"].to_numpy(float), "y1": moved["member"].to_numpy(float),
            "colour": ["#d62728" if e else "#9e9e9e" for e in moved["exploit"]],
        }
        self.nodes.data = {k: line[k].to_numpy() for k in ("interval", "member", "objective", "trial_id")}


class BestChart:
    """Each completed trial's objective and the best so far, over time; the trials are
    coloured by their round (batch round or GA generation) when the search has rounds."""

    def __init__(self) -> None:
        self.points = ColumnDataSource(
            {"ended": [], "objective": [], "trial_id": [], "round": [], "colour": []}, name="objectives"
        )
        self.best = ColumnDataSource({"ended": [], "best": []}, name="best")
        self.figure = _figure("Best so far", x_axis_label="seconds")
        self.figure.scatter(x="ended", y="objective", source=self.points, size=6, alpha=0.6, color="colour")
        self.figure.step(x="ended", y="best", mode="after", source=self.best, color="#d62728", line_width=2)
        self.figure.add_tools(
            HoverTool(tooltips=[("trial", "@trial_id"), ("objective", "@objective"), ("round", "@round")])
        )

    def update(self, curve: pd.DataFrame, label: str) -> None:
        self.figure.yaxis.axis_label = label
        rounds = curve["round"].to_numpy(float) if "round" in curve else np.full(len(curve), np.nan)
        self.points.data = {
            "ended": curve["ended"].to_numpy(float), "objective": curve["objective"].to_numpy(float),
            "trial_id": curve["trial_id"].to_numpy(), "round": rounds, "colour": round_colours(rounds),
        }
        self.best.data = {"ended": curve["ended"].to_numpy(float), "best": curve["best"].to_numpy(float)}


def round_colours(rounds: np.ndarray) -> list[str]:
    """Viridis from the first round (dark) to the latest (light); one blue without rounds."""
    known = rounds[np.isfinite(rounds)]
    if known.size == 0:
        return ["#1f77b4"] * len(rounds)
    top = max(float(known.max()), 1.0)
    return [Viridis256[int(255 * r / top)] if np.isfinite(r) else "#7f7f7f" for r in rounds]


class ParallelChart:
    """Parallel coordinates: one axis per parameter, one polyline per completed trial,
    coloured by objective (dark = better). Drawn as flat segments, which stay fast with
    thousands of trials (a multi-line of one array per trial does not)."""

    def __init__(self) -> None:
        self.source = ColumnDataSource({k: [] for k in ("x0", "y0", "x1", "y1", "objective")}, name="parallel")
        self.labels = ColumnDataSource({"x": [], "y": [], "text": []})
        self.mapper = LinearColorMapper(palette=Viridis256)
        self.figure = _figure("Parameters and objective", x_range=(-0.3, 1.3), y_range=(-0.12, 1.1))
        self.figure.segment(x0="x0", y0="y0", x1="x1", y1="y1", source=self.source, line_alpha=0.7, line_width=1.5,
                            line_color={"field": "objective", "transform": self.mapper})
        self.figure.text(x="x", y="y", text="text", source=self.labels, text_align="center", text_font_size="11px")
        self.figure.yaxis.visible = False
        self.figure.xaxis.visible = False
        self.figure.xgrid.visible = False

    def update(self, trials: pd.DataFrame, direction: str) -> None:
        done = trials[(trials["state"] == "completed") & trials["objective"].notna()] if len(trials) else trials
        params = [c for c in trials.columns if c.startswith("param.")]
        axes = [*params, "objective"]
        if done.empty or not params:
            self.source.data = {k: [] for k in ("x0", "y0", "x1", "y1", "objective")}
            self.labels.data = {"x": [], "y": [], "text": []}
            return
        ys = np.vstack([_unit(done[c]) for c in axes]).T  # trials x axes, in [0, 1]
        xs = np.linspace(0.0, 1.0, len(axes))
        objective = done["objective"].to_numpy(float)
        self.mapper.palette = Viridis256 if direction == "minimize" else Viridis256[::-1]
        self.mapper.low, self.mapper.high = float(np.nanmin(objective)), float(np.nanmax(objective))
        gaps = len(axes) - 1  # one segment per trial between neighbouring axes
        self.source.data = {
            "x0": np.tile(xs[:-1], len(done)), "x1": np.tile(xs[1:], len(done)),
            "y0": ys[:, :-1].ravel(), "y1": ys[:, 1:].ravel(), "objective": np.repeat(objective, gaps),
        }
        self.labels.data = {"x": xs, "y": [-0.08] * len(axes), "text": [a.removeprefix("param.") for a in axes]}


def _unit(column: pd.Series) -> np.ndarray:
    """A column mapped onto [0, 1]: numbers by range (log when they span decades), others by rank."""
    values = pd.to_numeric(column, errors="coerce")
    if values.notna().all() and not column.map(lambda v: isinstance(v, bool | list)).any():
        v = values.to_numpy(float)
        lo, hi = float(np.min(v)), float(np.max(v))
        if lo > 0 and hi / lo > 100:
            v, lo, hi = np.log10(v), math.log10(lo), math.log10(hi)
        return (v - lo) / (hi - lo) if hi > lo else np.full(len(v), 0.5)
    text = column.map(str)
    codes = {c: i for i, c in enumerate(sorted(text.unique()))}
    n = max(1, len(codes) - 1)
    return text.map(codes).to_numpy(float) / n
