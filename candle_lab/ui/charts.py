"""Bokeh charts of the dashboard: each is built once and then fed new data.

Sources carry names (``gantt``, ``curves``...) so that a browser test can read what is
on the screen from the page's Bokeh document.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from bokeh.models import (
    ColumnDataSource,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    NumeralTickFormatter,
    TapTool,
)
from bokeh.palettes import Category10_10, Viridis256
from bokeh.plotting import figure

from candle_lab.figures import STATE_COLOURS
from candle_lab.monitor import QUEUE_LANE

HEIGHT = 300
GANTT_MAX_HEIGHT = 900
GANTT_TITLE = "Trials per worker"
GANTT_NAMED_LANES = 64  # past this many workers the lanes are too thin to name (the hover names the worker)


def set_data(source: ColumnDataSource, data: dict[str, Any]) -> None:
    """Give ``source`` these columns, sending the browser only those that changed: a tick
    of a running 100,000-trial experiment moves the ends of the running bars, and the
    other columns of 5,000 bars (and the charts that did not change) stay where they are."""
    old = source.data
    if set(old) != set(data) or any(len(old[k]) != len(v) for k, v in data.items()):
        source.data = data
        return
    changed = {k: v for k, v in data.items() if not _same(old[k], v)}
    if changed:
        source.data.update(changed)


def _same(a: Any, b: Any) -> bool:
    try:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" and b.dtype.kind in "fc":
            return np.array_equal(a, b, equal_nan=True)
        return bool((a == b).all())
    except (TypeError, ValueError):  # ragged columns (a multi-line's xs): sent again
        return False


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
    """Trials as bars per worker lane, by state (a legend names each state's colour),
    neighbours in contrasting shades; a selected trial is outlined."""

    def __init__(self) -> None:
        self.source = ColumnDataSource(
            {k: [] for k in ("trial_id", "lane", "start", "end", "state", "colour", "objective", "outline", "trials")},
            name="gantt",
        )
        self.figure = _figure(GANTT_TITLE, y_range=FactorRange(),
                              x_axis_label="seconds since the first trial was queued")
        self.figure.hbar(y="lane", left="start", right="end", height=0.8, fill_color="colour", line_color="outline",
                         line_width=2, source=self.source, nonselection_fill_alpha=1.0)
        self.figure.add_tools(
            TapTool(),
            HoverTool(tooltips=[("trial", "@trial_id"), ("worker", "@lane"), ("trials in this bar", "@trials"),
                                ("state", "@state"),
                                ("objective", "@objective{0.0000[0]}"), ("time", "@start{0.0} s – @end{0.0} s")]),
        )

    def update(self, rows: pd.DataFrame, selected: int | None = None) -> None:
        colours = [STATE_COLOURS.get(s, ("#999999", "#666666"))[int(h)] for s, h in zip(rows["state"], rows["shade"],
                                                                                         strict=True)]
        lanes = sorted(rows["lane"].unique().tolist(), key=_lane_order, reverse=True)
        if list(self.figure.y_range.factors) != lanes:
            self.figure.y_range.factors = lanes
            # 24 px a lane up to GANTT_MAX_HEIGHT: 1,024 lanes would make a 25,000 px canvas
            self.figure.height = min(GANTT_MAX_HEIGHT, max(HEIGHT, 24 * len(lanes) + 110))
            # 1,024 names on a 900 px axis: unreadable, and measuring them slows the page's opening
            named = len(lanes) <= GANTT_NAMED_LANES
            self.figure.yaxis.visible = named
            many = f"{GANTT_TITLE} ({len(lanes):,}: hover a bar for its name)"
            self.figure.title.text = GANTT_TITLE if named else many
        ids = rows["trial_id"].to_numpy()
        set_data(self.source, {
            "trial_id": ids,
            "lane": rows["lane"].astype(str).to_numpy(),
            "start": rows["start"].to_numpy(dtype=float),
            "end": rows["end"].to_numpy(dtype=float),
            "state": rows["state"].astype(str).to_numpy(),
            "colour": np.asarray(colours, dtype=object),
            "objective": rows["objective"].to_numpy(dtype=float),
            "outline": np.asarray(["black" if t == selected else None for t in ids], dtype=object),
            "trials": rows["trials"].to_numpy(dtype=int) if "trials" in rows else np.ones(len(rows), dtype=int),
        })


def state_legend_html() -> str:
    """The Gantt's colours, one swatch per state (both shades), for a line above the chart."""
    swatch = "<span style='display:inline-block;width:11px;height:11px;background:{};margin-right:1px'></span>"
    items = [
        f"<span class='gantt-legend-item' style='margin-right:14px'>{swatch.format(a)}{swatch.format(b)} {state}</span>"
        for state, (a, b) in STATE_COLOURS.items()
    ]
    return f"<div class='gantt-legend' style='font-size:13px'>{''.join(items)}</div>"


def _lane_order(lane: str) -> tuple[int, list[tuple[int, float, str]]]:
    """Lanes in natural order ("worker 2" before "worker 10"), the queue last."""
    parts = [(0, float(p), "") if p.isdigit() else (1, 0.0, p) for p in re.split(r"(\d+)", lane) if p]
    return (1, parts) if lane == QUEUE_LANE else (0, parts)


class UtilizationChart:
    """Running trials over time against the number of workers."""

    def __init__(self) -> None:
        self.source = ColumnDataSource({"time": [], "running": []}, name="utilization")
        self.workers = ColumnDataSource({"time": [], "workers": []})
        self.figure = _figure("Running trials (utilization)", height=220, x_axis_label="seconds")
        self.figure.step(x="time", y="running", mode="after", source=self.source, line_width=2)
        self.figure.line(x="time", y="workers", source=self.workers, line_dash="dotted", color="black")

    def update(self, series: pd.DataFrame, workers: int) -> None:
        set_data(self.source, {"time": series["time"].to_numpy(float), "running": series["running"].to_numpy(float)})
        end = float(series["time"].max()) if len(series) else 1.0
        set_data(self.workers, {"time": [0.0, end], "workers": [workers, workers]})


class CurvesChart:
    """Per-epoch metric of each shown trial, one line per trial: the best drawn thick in
    red, running trials bold, a cross where a stopped or failed trial ended, the selected
    trial in black; the hover names the trial and its state."""

    def __init__(self, name: str = "curves") -> None:
        self.source = ColumnDataSource({"xs": [], "ys": [], "trial_id": [], "colour": [], "width": [], "state": []},
                                       name=name)
        self.points = ColumnDataSource({"step": [], "value": [], "trial_id": [], "colour": [], "state": []})
        self.ends = ColumnDataSource({"step": [], "value": [], "trial_id": [], "state": []}, name=f"{name}-ends")
        self.figure = _figure("Loss curves", x_axis_label="epoch")
        self.figure.multi_line(xs="xs", ys="ys", line_color="colour", line_width="width", line_alpha=0.85,
                               source=self.source)
        dots = self.figure.scatter(x="step", y="value", color="colour", size=5, source=self.points)  # epoch 1 shows
        self.figure.scatter(x="step", y="value", marker="x", size=12, line_width=2, color="#444444", source=self.ends)
        self.figure.xaxis.formatter = NumeralTickFormatter(format="0")
        self.figure.xaxis.ticker.min_interval = 1
        self.figure.add_tools(TapTool(renderers=[dots]),
                              HoverTool(renderers=[dots], tooltips=[("trial", "@trial_id (@state)"), ("epoch", "@step"),
                                                                    ("value", "@value{0.0000[0]}")]))

    def update(self, curves: dict[int, pd.DataFrame], metric: str, states: dict[int, str] | None = None,
               best: int | None = None, selected: int | None = None) -> None:
        states = states or {}
        ids = sorted(curves)
        colours = ["#000000" if t == selected else "#d62728" if t == best else Category10_10[t % 10] for t in ids]
        widths = [4.0 if t in (best, selected) else 2.5 if states.get(t) == "running" else 1.5 for t in ids]
        self.figure.title.text = f"{metric} per epoch" + (" (red: best trial)" if best in curves else "")
        set_data(self.source, {
            "xs": [curves[t]["step"].to_numpy(float) for t in ids],
            "ys": [curves[t]["value"].to_numpy(float) for t in ids],
            "trial_id": ids, "colour": colours, "width": widths, "state": [states.get(t, "") for t in ids],
        })
        sizes = [len(curves[t]) for t in ids]
        set_data(self.points, {
            "step": np.concatenate([curves[t]["step"].to_numpy(float) for t in ids]) if ids else [],
            "value": np.concatenate([curves[t]["value"].to_numpy(float) for t in ids]) if ids else [],
            "trial_id": np.repeat(ids, sizes),
            "colour": np.repeat(np.asarray(colours, dtype=object), sizes),
            "state": np.repeat(np.asarray([states.get(t, "") for t in ids], dtype=object), sizes),
        })
        ended = [t for t in ids if states.get(t) in ("stopped", "failed") and len(curves[t])]
        set_data(self.ends, {
            "step": [float(curves[t]["step"].iloc[-1]) for t in ended],
            "value": [float(curves[t]["value"].iloc[-1]) for t in ended],
            "trial_id": ended, "state": [states[t] for t in ended],
        })


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
        set_data(self.jumps, {k: jumps[k].to_numpy() for k in ("step", "value", "member", "donor")})


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
        set_data(self.edges, {
            "x0": (moved["interval"] - 1).to_numpy(float), "y0": moved["source"].to_numpy(float),
            "x1": moved["interval"].to_numpy(float), "y1": moved["member"].to_numpy(float),
            "colour": ["#d62728" if e else "#9e9e9e" for e in moved["exploit"]],
        })
        set_data(self.nodes, {k: line[k].to_numpy() for k in ("interval", "member", "objective", "trial_id")})


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
        set_data(self.points, {
            "ended": curve["ended"].to_numpy(float), "objective": curve["objective"].to_numpy(float),
            "trial_id": curve["trial_id"].to_numpy(), "round": rounds, "colour": round_colours(rounds),
        })
        set_data(self.best, {"ended": curve["ended"].to_numpy(float), "best": curve["best"].to_numpy(float)})


class CompareChart:
    """The best so far of several experiments on one chart, one coloured step line each."""

    def __init__(self) -> None:
        self.figure = _figure("Best so far, compared", x_axis_label="seconds since the first trial was queued")
        self.figure.add_tools(HoverTool(tooltips=[("experiment", "@experiment"), ("best", "@best{0.0000[0]}")]))
        self.count = 0

    def add(self, label: str, curve: pd.DataFrame) -> None:
        source = ColumnDataSource({"ended": curve["ended"].to_numpy(float), "best": curve["best"].to_numpy(float),
                                   "experiment": [label] * len(curve)}, name=f"compare-{self.count}")
        self.figure.step(x="ended", y="best", mode="after", source=source, line_width=2, legend_label=label,
                         color=Category10_10[self.count % 10])
        self.figure.legend.location = "top_right"
        self.count += 1


def round_colours(rounds: np.ndarray) -> list[str]:
    """Viridis from the first round (dark) to the latest (light); one blue without rounds."""
    known = rounds[np.isfinite(rounds)]
    if known.size == 0:
        return ["#1f77b4"] * len(rounds)
    top = max(float(known.max()), 1.0)
    return [Viridis256[int(255 * r / top)] if np.isfinite(r) else "#7f7f7f" for r in rounds]
