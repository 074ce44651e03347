"""A self-contained HTML report of one experiment (plotly, no network needed to view).

    from candle_lab.html_report import write_report
    write_report(exp)                  # an Experiment, or an experiment id or folder
    write_report("EXP003", "out.html", root="experiments")

``candle-lab report EXP003`` writes the same file. The figures are those of the notebook
dashboard (:mod:`candle_lab.figures`).
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

from candle_lab import monitor
from candle_lab.api import Experiment, open_experiment
from candle_lab.figures import (
    best_so_far_figure,
    gantt_figure,
    lineage_figure,
    population_figure,
    uncertainty_figure,
    utilization_figure,
)
from candle_lab.store.layout import REPORT_NAME

log = logging.getLogger(__name__)



def write_report(
    exp: Experiment | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the report of ``exp`` (an :class:`Experiment`, or an experiment id or folder
    looked up under ``root``) to ``path``, by default ``report.html`` in the experiment's
    folder; returns the path written."""
    if not isinstance(exp, Experiment):
        exp = open_experiment(exp, root)
    out = Path(path) if path is not None else exp.path / REPORT_NAME
    spec = exp.spec
    trials = exp.trials
    usage = monitor.utilization(trials, spec.compute.workers, spec.compute.gpus)
    best = exp.best
    progress = monitor.best_so_far(trials, spec.objective.direction)
    running = monitor.running_over_time(trials)

    figures = [
        gantt_figure(trials),
        utilization_figure(running, spec.compute.workers),
        best_so_far_figure(progress, spec.objective.metric, spec.objective.direction),
    ]
    if spec.search.algorithm == "pbt":
        curves, jumps = monitor.population_curves(trials, exp.metrics, spec.objective.metric)
        figures += [population_figure(curves, jumps, spec.objective.metric), lineage_figure(monitor.lineage(trials))]
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    if spec.ensemble is not None:
        parts += _uncertainty_parts(exp)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    log.info("report written to %s", out)
    return out


def _uncertainty_parts(exp: Experiment) -> list[str]:
    """An ensemble's per-configuration UQ plots and calibration tables."""
    parts = []
    for config in exp.uncertainty():
        title = f"Uncertainty of trial {config.trial_id}'s configuration ({config.members} members)"
        parts.append(uncertainty_figure(config.summary, title).to_html(full_html=False, include_plotlyjs=False))
        coverage = ", ".join(f"{p:.0%} interval: {v:.1%}" for p, v in config.calibration.coverage.items())
        parts.append(
            f"<p>Coverage of nominal Gaussian intervals: {html.escape(coverage)}; rank correlation of |error| "
            f"with std: {config.calibration.spearman:.2f}</p>"
            + config.calibration.bins.to_html(index=False, float_format=lambda v: f"{v:.4g}", classes="calibration")
        )
    return parts
