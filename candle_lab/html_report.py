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
from typing import Any

from candle_lab import analysis, efficiency, formatting, monitor, pareto
from candle_lab.api import Experiment, open_experiment
from candle_lab.figures import (
    best_so_far_figure,
    contour_figure,
    curves_figure,
    edf_figure,
    gantt_figure,
    hypervolume_figure,
    importance_figure,
    lineage_figure,
    parallel_figure,
    pareto_figure,
    population_figure,
    slice_figure,
    uncertainty_figure,
    utilization_figure,
)
from candle_lab.store.layout import REPORT_NAME

log = logging.getLogger(__name__)

CURVES_IN_REPORT = 10  # loss curves of the best trials
TABLE_ROWS = 1000  # trials listed (a 100,000-trial table would make a page no browser opens)



def write_report(
    exp: Experiment | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    plotly: str = "inline",
) -> Path:
    """Write the report of ``exp`` (an :class:`Experiment`, or an experiment id or folder
    looked up under ``root``) to ``path``, by default ``report.html`` in the experiment's
    folder; returns the path written. ``plotly``: "inline" embeds plotly.js (works offline),
    "cdn" loads it from plotly's CDN, "shared" from one ``plotly.min.js`` beside the report's folder."""
    if not isinstance(exp, Experiment):
        exp = open_experiment(exp, root)
    out = Path(path) if path is not None else exp.path / REPORT_NAME
    spec = exp.spec
    trials = exp.trials
    usage = monitor.compute_utilization(trials, spec.compute)
    progress = monitor.thinned(monitor.best_so_far(trials, spec.objective.direction), analysis.MAX_POINTS)
    running = monitor.running_over_time(trials, points=analysis.MAX_POINTS)

    metric, direction = spec.objective.metric, spec.objective.direction
    timeline = [
        gantt_figure(trials, monitor.earlier_attempts(exp.events(["retry"])), direction),
        utilization_figure(running, monitor.slots(spec.compute)),
        best_so_far_figure(progress, metric, direction),
    ]
    front = pareto.front(trials, spec.goals) if spec.multi_objective else None
    if front is not None:  # several objectives: progress is the front's hypervolume
        curve = pareto.hypervolume_over_time(trials, spec.goals)
        timeline.append(hypervolume_figure(curve, monitor.origin(trials)))
    span = monitor.elapsed(trials)
    for fig in timeline:  # one time axis: seconds from the first trial queued
        fig.update_xaxes(range=[0, span or 1])
    top = monitor.top_trials(trials, CURVES_IN_REPORT, direction)
    shown = [int(t) for t in top["trial_id"]]
    states = dict(zip(shown, top["state"].astype(str), strict=True))
    importance = analysis.importance(trials, direction)
    pair = importance["parameter"].tolist()[:2]
    figures = [
        *timeline,
        curves_figure(monitor.loss_curves(exp.metrics, metric, shown), metric, states, shown[0] if shown else None),
        parallel_figure(*analysis.parallel(trials, direction), metric, direction),
        importance_figure(importance),
        edf_figure(analysis.edf(trials), metric),
        slice_figure(analysis.slices(trials, direction), metric),
        contour_figure(analysis.contour(trials, pair[0], pair[1], direction) if len(pair) == 2 else None, metric),
    ]
    if front is not None:  # the front after the timeline, then its table
        figures.insert(len(timeline), pareto_figure(trials, spec.goals, spec.constraints, front))
    if spec.search.algorithm == "pbt":
        curves, jumps = monitor.population_curves(trials, exp.metrics, spec.objective.metric)
        figures += [population_figure(curves, jumps, spec.objective.metric), lineage_figure(monitor.lineage(trials))]
    parts = [fig.to_html(full_html=False, include_plotlyjs=_plotly_js(plotly, i == 0, out))
             for i, fig in enumerate(figures)]
    if front is not None:
        parts.insert(len(timeline) + 1, _front_table(front, spec))
    if spec.ensemble is not None:
        parts += _uncertainty_parts(exp)
    counts = monitor.state_counts(trials)
    summary = [
        ("experiment", f"{exp.id} · {spec.name}"),
        ("search", f"{spec.search.algorithm} (surrogate {spec.search.surrogate})"),
        ("objective", f"{metric} ({direction})") if front is None else ("objectives", ", ".join(
            f"{g.metric} {'↓' if g.direction == 'minimize' else '↑'}" for g in spec.goals)),
        ("trials", ", ".join(f"{n} {s}" for s, n in counts.items() if n)),
        ("workers", str(spec.compute.workers)),
        ("utilization", f"{usage.utilization:.1%} (idle {usage.idle_fraction:.1%}: waiting for workers counts)"),
        ("duration", formatting.duration(span)),
        ("best", _best_text(top, metric, direction)),
    ]
    if front is not None:
        summary.append(("Pareto front", f"{len(front)} trials"))
    if spec.constraints:
        infeasible = int((trials["feasible"] == 0).sum()) if "feasible" in trials else 0
        summary.append(("constraints", f"{', '.join(str(c) for c in spec.constraints)}: {infeasible} of "
                                       f"{len(trials)} trials infeasible"))
    if spec.compute.gpus:
        summary.append(("GPU-hours", f"{usage.gpu_hours_used:.2f} used, {usage.gpu_hours_idle:.2f} idle"))
    else:
        summary.append(("core-hours", f"{usage.core_hours_used:.2f} used, {usage.core_hours_idle:.2f} idle"))
    efficiency_rows = efficiency.describe(exp.efficiency())
    table_cols = [c for c in trials.columns if c.startswith("param.")] + ["objective", "state", "attempt", "worker"]
    table = trials.sort_values("objective", ascending=spec.objective.direction == "minimize", na_position="last")
    table = table[["trial_id", "run_id", *[c for c in table_cols if c in table.columns]]] if not trials.empty else table
    body = "\n".join(
        [
            f"<h1>candle_lab report: {html.escape(exp.id)}</h1>",
            "<table class='summary'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary)
            + "</table>",
            "<h2>Efficiency</h2>",
            "<table class='summary efficiency'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in efficiency_rows)
            + "</table>",
            *parts,
            f"<h2>Trials (best first{f'; the best {TABLE_ROWS} of {len(trials)}' if len(trials) > TABLE_ROWS else ''})"
            "</h2>",
            table.head(TABLE_ROWS).to_html(index=False, na_rep="", float_format=formatting.number, classes="trials"),
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


PLOTLY_MODES = ("inline", "cdn", "shared")


def _plotly_js(mode: str, first: bool, out: Path) -> bool | str:
    """``include_plotlyjs`` of a figure of the report at ``out``: plotly.js goes with the
    first figure only. "shared" writes ``plotly.min.js`` into the folder above ``out``'s
    (the experiments folder for ``EXP/report.html``) unless it is there, and links it."""
    if mode not in PLOTLY_MODES:
        from candle_lab.errors import SpecError, did_you_mean, expected_got

        hint = did_you_mean(mode, PLOTLY_MODES) if isinstance(mode, str) else ""
        raise SpecError.one("plotly", expected_got("one of 'inline', 'cdn', 'shared'", mode) + hint, "report option")
    if not first:
        return False
    if mode == "shared":
        shared = out.resolve().parent.parent / "plotly.min.js"
        if not shared.is_file():
            from plotly.offline import get_plotlyjs

            shared.parent.mkdir(parents=True, exist_ok=True)
            partial = shared.with_name(f".{shared.name}.{os.getpid()}")
            partial.write_text(get_plotlyjs(), encoding="utf-8")
            partial.replace(shared)  # whole or absent, even with reports written side by side
        return Path(os.path.relpath(shared, out.resolve().parent)).as_posix()
    return "cdn" if mode == "cdn" else True


def _front_table(front: Any, spec: Any) -> str:
    """The trials on the Pareto front: trial, objectives, parameters."""
    objectives = {f"metric.{g.metric}": f"{g.metric} {'↓' if g.direction == 'minimize' else '↑'}" for g in spec.goals}
    params = [c for c in front.columns if c.startswith("param.")]
    table = front[["trial_id", *(c for c in ("run_id",) if c in front), *objectives, *params]]
    table = table.rename(columns={**objectives, **{c: c[6:] for c in params}})
    more = f"; the first {TABLE_ROWS}" if len(table) > TABLE_ROWS else ""
    return (f"<h2>Pareto front ({len(front)} trials{more})</h2>"
            + table.head(TABLE_ROWS).to_html(index=False, na_rep="", float_format=formatting.number,
                                             classes="trials pareto"))


def _best_text(top: Any, metric: str, direction: str) -> str:
    """The best trial (the first row of :func:`monitor.top_trials`) as the summary says it."""
    done = top[top["state"] == "completed"] if not top.empty else top
    if done.empty:
        return "none yet"
    row = done.iloc[0]
    params = {k[6:]: row[k] for k in row.index if k.startswith("param.")}
    return (f"{metric} {'↓' if direction == 'minimize' else '↑'} {formatting.number(row['objective'])} "
            f"(trial {int(row['trial_id'])}, {row['run_id']}: {formatting.params(params)})")

