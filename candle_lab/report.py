"""A self-contained HTML report of one experiment (plotly, no network needed to view)."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle_lab import monitor

if TYPE_CHECKING:
    import pandas as pd

    from candle_lab.api import Experiment

log = logging.getLogger(__name__)

STATE_COLOURS = {
    "completed": ("#1f77b4", "#ff7f0e"),  # alternating along a lane: neighbours contrast
    "failed": ("#d62728", "#8c1a1b"),
    "stopped": ("#7f7f7f", "#4d4d4d"),
    "cancelled": ("#c7c7c7", "#a0a0a0"),
    "running": ("#2ca02c", "#98df8a"),
    "queued": ("#e0e0e0", "#e0e0e0"),
}


def gantt_figure(trials: pd.DataFrame) -> Any:
    """Trials as bars per worker lane, coloured by state with alternating shades."""
    import plotly.graph_objects as go

    rows = monitor.gantt_rows(trials)
    fig = go.Figure()
    for state, colours in STATE_COLOURS.items():
        part = rows[rows["state"] == state]
        if part.empty:
            continue
        fig.add_trace(
            go.Bar(
                x=(part["end"] - part["start"]).to_numpy(),
                base=part["start"].to_numpy(),
                y=part["lane"].to_numpy(),
                orientation="h",
                name=state,
                marker={"color": [colours[int(s)] for s in part["shade"]], "line": {"width": 0}},
                customdata=part[["trial_id", "objective"]].to_numpy(),
                hovertemplate="trial %{customdata[0]}<br>objective %{customdata[1]}<br>"
                "%{base:.1f}s + %{x:.1f}s<extra>" + state + "</extra>",
            )
        )
    fig.update_layout(
        title="Trials per worker", barmode="overlay", xaxis_title="seconds since first trial started",
        yaxis_title="worker", bargap=0.15, height=max(300, 40 * rows["lane"].nunique() + 120),
    )
    return fig


def write_report(exp: Experiment, path: Path) -> Path:
    import plotly.graph_objects as go

    spec = exp.spec
    trials = exp.trials
    usage = monitor.utilization(trials, spec.compute.workers, spec.compute.gpus)
    best = exp.best
    progress = monitor.best_so_far(trials, spec.objective.direction)
    running = monitor.running_over_time(trials)

    figures = [gantt_figure(trials)]
    util = go.Figure(go.Scatter(x=running["time"], y=running["running"], line_shape="hv", name="running"))
    util.add_hline(y=spec.compute.workers, line_dash="dot", annotation_text="workers")
    util.update_layout(title="Running trials", xaxis_title="seconds", yaxis_title="trials", height=300)
    figures.append(util)
    curve = go.Figure()
    curve.add_trace(go.Scatter(x=progress["ended"], y=progress["objective"], mode="markers", name="trial"))
    curve.add_trace(go.Scatter(x=progress["ended"], y=progress["best"], line_shape="hv", name="best so far"))
    curve.update_layout(
        title=f"{spec.objective.metric} ({spec.objective.direction})", xaxis_title="seconds", height=350
    )
    figures.append(curve)

    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    counts = monitor.state_counts(trials)
    summary = [
        ("experiment", f"{exp.id} · {spec.name}"),
        ("search", f"{spec.search.algorithm} (surrogate {spec.search.surrogate})"),
        ("trials", ", ".join(f"{n} {s}" for s, n in counts.items() if n)),
        ("workers", str(spec.compute.workers)),
        ("utilization", f"{usage.utilization:.1%} (idle {usage.idle_fraction:.1%})"),
        ("best", f"{best.objective:.6g} (trial {best.trial_id}, {best.run_id}) {best.params}" if best else "none yet"),
    ]
    if spec.compute.gpus:
        summary.append(("GPU-hours", f"{usage.gpu_hours_used:.2f} used, {usage.gpu_hours_idle:.2f} idle"))
    table_cols = [c for c in trials.columns if c.startswith("param.")] + ["objective", "state", "attempt", "worker"]
    table = trials.sort_values("objective", ascending=spec.objective.direction == "minimize", na_position="last")
    table = table[["trial_id", "run_id", *[c for c in table_cols if c in table.columns]]] if not trials.empty else table
    body = "\n".join(
        [
            f"<h1>candle_lab report: {html.escape(exp.id)}</h1>",
            "<table class='summary'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary)
            + "</table>",
            *parts,
            "<h2>Trials (best first)</h2>",
            table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.6g}", classes="trials"),
        ]
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;}table{border-collapse:collapse;}"
        "td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px;}"
    )
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(exp.id)}</title>" \
        f"<style>{style}</style></head><body>{body}</body></html>"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.info("report written to %s", path)
    return path
