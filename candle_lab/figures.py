"""Plotly figures of an experiment, shared by the HTML report and the notebook dashboard,
and the trial-state colours that every front end (the Bokeh app too) draws with.

Each builder takes what :mod:`candle_lab.monitor` computes from the store and returns a
``plotly.graph_objects.Figure``; plotly is imported only when a figure is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from candle_lab import analysis, formatting, monitor, pareto

if TYPE_CHECKING:
    import pandas as pd

    from candle_lab.spec import ConstraintSpec, ObjectiveSpec

STATE_COLOURS: dict[str, tuple[str, str]] = {  # state -> two shades, alternating along a worker lane
    "completed": ("#1f77b4", "#ff7f0e"),  # neighbours contrast
    "failed": ("#d62728", "#8c1a1b"),
    "stopped": ("#7f7f7f", "#4d4d4d"),
    "cancelled": ("#c7c7c7", "#a0a0a0"),
    "running": ("#2ca02c", "#98df8a"),
    "queued": ("#e0e0e0", "#e0e0e0"),
    "interrupted": ("#bcbd22", "#8c8d16"),  # an earlier attempt, cut off; its trial resumed elsewhere
}


GANTT_BARS = 5000  # past this, consecutive finished trials of a worker share a bar


def gantt_figure(trials: pd.DataFrame, earlier: pd.DataFrame | None = None, direction: str = "minimize") -> Any:
    """Trials as bars per worker lane, coloured by state with alternating shades (and the
    attempts that were cut off, :func:`monitor.earlier_attempts`)."""
    import plotly.graph_objects as go

    rows = monitor.gantt_rows(trials, limit=GANTT_BARS, earlier=earlier, direction=direction)
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
                customdata=part[["trial_id", "objective", "trials"]].to_numpy(),
                hovertemplate="trial %{customdata[0]} (%{customdata[2]} in this bar)<br>objective "
                "%{customdata[1]:.5g}<br>%{base:.1f}s + %{x:.1f}s<extra>" + state + "</extra>",
            )
        )
    fig.update_layout(
        title="Trials per worker", barmode="overlay", xaxis_title="seconds since the first trial was queued",
        yaxis_title="worker", bargap=0.15, height=min(900, max(300, 40 * rows["lane"].nunique() + 120)),
    )
    return fig


def utilization_figure(running: pd.DataFrame, workers: int) -> Any:
    """Running trials over time (:func:`monitor.running_over_time`) against the workers."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=running["time"], y=running["running"], line_shape="hv", name="running"))
    fig.add_hline(y=workers, line_dash="dot", annotation_text="workers")
    fig.update_layout(title="Running trials", xaxis_title="seconds", yaxis_title="trials", height=300)
    return fig


def best_so_far_figure(progress: pd.DataFrame, metric: str, direction: str) -> Any:
    """Each finished trial's objective and the best so far (:func:`monitor.best_so_far`),
    coloured by round (batch round, GA generation) when the search has rounds."""
    import plotly.graph_objects as go

    fig = go.Figure()
    rounds = progress.get("round")
    marker = (
        {"color": rounds, "colorscale": "Viridis", "colorbar": {"title": "round"}, "showscale": True}
        if rounds is not None and rounds.notna().any()
        else {}
    )
    fig.add_trace(go.Scatter(x=progress["ended"], y=progress["objective"], mode="markers", name="trial", marker=marker))
    fig.add_trace(go.Scatter(x=progress["ended"], y=progress["best"], line_shape="hv", name="best so far"))
    fig.update_layout(title=f"{metric} ({direction})", xaxis_title="seconds", height=350)
    return fig


def curves_figure(
    curves: dict[int, pd.DataFrame], metric: str, states: dict[int, str] | None = None, best: int | None = None
) -> Any:
    """One line per trial of a metric per epoch (``step`` and ``value`` columns), named by
    trial and state: the best trial drawn thick, running trials dashed, a cross where a
    stopped or early-stopped trial ended."""
    import plotly.graph_objects as go

    states = states or {}
    fig = go.Figure()
    for t, c in curves.items():
        state = states.get(t, "")
        width = 4 if t == best else 1.5
        fig.add_trace(go.Scatter(
            x=c["step"], y=c["value"], mode="lines+markers" if len(c) < 3 else "lines",
            name=f"trial {t}" + (" (best)" if t == best else f" · {state}" if state else ""),
            line={"width": width, "dash": "dash" if state == "running" else "solid",
                  **({"color": "#d62728"} if t == best else {})},
            hovertemplate=f"trial {t}<br>epoch %{{x}}<br>{metric} %{{y:.5g}}<extra>{state}</extra>",
        ))
        if state in ("stopped", "failed") and len(c):
            fig.add_trace(go.Scatter(
                x=c["step"].iloc[-1:], y=c["value"].iloc[-1:], mode="markers", showlegend=False,
                marker={"symbol": "x", "size": 10, "color": "#7f7f7f"},
                hovertemplate=f"trial {t} {state} here<extra></extra>",
            ))
    fig.update_layout(title=f"{metric or 'metric'} per epoch", xaxis_title="epoch", yaxis_title=metric, height=320)
    fig.update_xaxes(tickformat="d", rangemode="tozero")
    return fig


def population_figure(curves: dict[int, pd.DataFrame], jumps: pd.DataFrame, metric: str) -> Any:
    """PBT: each member's metric over its whole life, with a star where it copied another
    member (:func:`monitor.population_curves`)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        [go.Scatter(x=c["step"], y=c["value"], mode="lines", name=f"member {m}") for m, c in sorted(curves.items())]
    )
    if not jumps.empty:
        fig.add_trace(
            go.Scatter(
                x=jumps["step"], y=jumps["value"], mode="markers", name="exploit",
                marker={"symbol": "star", "size": 11, "color": "#d62728"},
                customdata=jumps[["member", "donor"]].to_numpy(),
                hovertemplate="member %{customdata[0]} copied member %{customdata[1]}<extra></extra>",
            )
        )
    fig.update_layout(title=f"Population: {metric or 'metric'} per epoch", xaxis_title="epoch", height=360)
    return fig


def lineage_figure(line: pd.DataFrame) -> Any:
    """PBT lineage (:func:`monitor.lineage`): one row per member, one column per interval;
    an edge from the member whose checkpoint each interval started from (red: an exploit)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for exploit, colour in ((False, "#9e9e9e"), (True, "#d62728")):
        part = line[(line["exploit"] == exploit) & (line["interval"] > 0)]
        xs: list[Any] = []
        ys: list[Any] = []
        for row in part.itertuples(index=False):
            xs += [row.interval - 1, row.interval, None]
            ys += [row.source, row.member, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour},
                                 name="exploit" if exploit else "own checkpoint"))
    fig.add_trace(
        go.Scatter(
            x=line["interval"], y=line["member"], mode="markers", name="interval",
            marker={"color": line["objective"], "colorscale": "Viridis", "size": 9, "showscale": True,
                    "colorbar": {"title": "objective"}},
            customdata=line[["trial_id", "objective"]].to_numpy(),
            hovertemplate="trial %{customdata[0]}<br>objective %{customdata[1]:.4g}<extra></extra>",
        )
    )
    fig.update_layout(title="Lineage", xaxis_title="interval", yaxis_title="member", height=360)
    return fig


def uncertainty_figure(summary: pd.DataFrame, title: str = "Uncertainty") -> Any:
    """CANDLE's UQ plots of one ensemble (:func:`candle_lab.uq.summarize`): the samples'
    density in (predicted std, |error|) space, and the error's distribution given the std
    (quintiles of std)."""
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("density of (std, |error|)", "|error| given std"))
    error = summary["error"].abs()
    fig.add_trace(go.Histogram2d(x=summary["std"], y=error, nbinsx=30, nbinsy=30, colorscale="Viridis",
                                 showscale=False), row=1, col=1)
    groups = pd.qcut(summary["std"].rank(method="first"), q=min(5, max(1, len(summary))), labels=False)
    for q in sorted(groups.unique()):
        part = summary[groups == q]
        label = f"std {part['std'].min():.3g}–{part['std'].max():.3g}"
        fig.add_trace(go.Box(y=error[groups == q], name=label, boxmean=True), row=1, col=2)
    fig.update_xaxes(title_text="predicted std", row=1, col=1)
    fig.update_yaxes(title_text="|error|", row=1, col=1)
    fig.update_layout(title=title, height=380, showlegend=False)
    return fig


# ------------------------------------------------------------------ analysis (candle_lab.analysis)
def _axis_layout(axis: analysis.Axis) -> dict[str, Any]:
    """Plotly axis settings that print categories and log values as the user gave them."""
    ticks, texts = axis.ticks()
    title = axis.name + (" (log scale)" if axis.log else "")
    return {"title": {"text": title}, **({"tickvals": ticks, "ticktext": texts} if ticks else {})}


def importance_figure(found: pd.DataFrame) -> Any:
    """Parameter importance (:func:`analysis.importance`), most important on top."""
    import plotly.graph_objects as go

    rows = found.iloc[::-1]
    fig = go.Figure(go.Bar(
        x=rows["importance"], y=rows["parameter"], orientation="h", error_x={"array": rows["std"]},
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    fig.update_layout(title="Parameter importance (permutation, random forest)", xaxis_title="share of importance",
                      xaxis_tickformat=".0%", height=max(260, 40 * len(rows) + 120))
    return fig


def slice_figure(slices: dict[str, tuple[analysis.Axis, pd.DataFrame]], metric: str) -> Any:
    """The objective against each parameter (:func:`analysis.slices`), one panel per
    parameter, points coloured by trial number (dark: early)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(slices)
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, horizontal_spacing=0.05, vertical_spacing=0.18)
    for i, name in enumerate(names):
        axis, points = slices[name]
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Scattergl(
            x=axis.values, y=points["objective"], mode="markers", name=name, showlegend=False,
            marker={"color": points["trial_id"], "colorscale": "Viridis", "size": 6, "showscale": i == 0,
                    "colorbar": {"title": "trial"}},
            customdata=points["trial_id"],
            hovertemplate=f"trial %{{customdata}}<br>{name} %{{x}}<br>{metric} %{{y:.5g}}<extra></extra>",
        ), row=r, col=c)
        fig.update_xaxes(row=r, col=c, **_axis_layout(axis))
    fig.update_yaxes(title_text=metric, col=1)
    fig.update_layout(title=f"Slices: {metric} against each parameter", height=300 * rows + 80)
    return fig


def contour_figure(found: analysis.Contour | None, metric: str) -> Any:
    """The objective over two parameters (:func:`analysis.contour`) with the trials."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if found is None:
        fig.update_layout(title="Contour: needs 3 completed trials and two varying parameters", height=380)
        return fig
    fig.add_trace(go.Contour(
        x=found.x.values, y=found.y.values, z=found.z, colorscale="Viridis", colorbar={"title": metric},
        hovertemplate=f"{found.x.name} %{{x}}<br>{found.y.name} %{{y}}<br>{metric} ≈ %{{z:.5g}}<extra></extra>",
    ))
    fig.add_trace(go.Scattergl(
        x=found.points_x, y=found.points_y, mode="markers", name="trials", showlegend=False,
        marker={"color": "white", "size": 6, "line": {"width": 1, "color": "black"}},
        customdata=found.objective, hovertemplate=f"{metric} %{{customdata:.5g}}<extra>trial</extra>",
    ))
    fig.update_layout(title=f"Contour of {metric}: {found.x.name} × {found.y.name}", height=420,
                      xaxis=_axis_layout(found.x), yaxis=_axis_layout(found.y))
    return fig


def edf_figure(distribution: pd.DataFrame, metric: str) -> Any:
    """The empirical distribution of the objective (:func:`analysis.edf`)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(
        x=distribution["objective"], y=distribution["fraction"], line_shape="hv", name="trials",
        hovertemplate=f"%{{y:.0%}} of trials have {metric} ≤ %{{x:.5g}}<extra></extra>",
    ))
    fig.update_layout(title=f"Distribution of {metric} (EDF)", xaxis_title=metric,
                      yaxis_title="fraction of completed trials", yaxis_tickformat=".0%", height=320)
    return fig


def parallel_figure(axes: list[analysis.Axis], objective: np.ndarray, metric: str, direction: str) -> Any:
    """Parallel coordinates (:func:`analysis.parallel`): an axis per varying parameter with
    its ticks (category names, powers of ten on log axes), the objective last, lines
    coloured by objective with a colour bar (dark: better)."""
    import plotly.graph_objects as go

    dimensions = []
    for a in axes:
        ticks, texts = a.ticks()
        dimensions.append({"label": a.name + (" (log)" if a.log else ""), "values": a.values,
                           **({"tickvals": ticks, "ticktext": texts} if ticks else {})})
    dimensions.append({"label": metric, "values": objective})
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line={"color": objective, "colorscale": "Viridis" if direction == "minimize" else "Viridis_r",
              "showscale": True, "colorbar": {"title": metric}},
    ))
    fig.update_layout(title=f"Parameters and {metric}", height=380, margin={"l": 60, "r": 60})
    return fig


# ------------------------------------------------------------------ several objectives (candle_lab.pareto)
FRONT_COLOUR = "#d62728"
DOMINATED_COLOUR = "#1f77b4"
INFEASIBLE_COLOUR = "#7f7f7f"
DOMINATED_OPACITY = 0.25  # dominated trials are faded: the front stands out
SVG_POINTS = 1000  # a 2-D trace of more points is drawn with WebGL


def goal_title(goal: ObjectiveSpec) -> str:
    """An objective's axis title: "val_loss (↓ minimize)", "accuracy (↑ maximize)"."""
    return f"{goal.metric} ({'↓ minimize' if goal.direction == 'minimize' else '↑ maximize'})"


def pareto_figure(
    trials: pd.DataFrame,
    goals: Sequence[ObjectiveSpec],
    constraints: Sequence[ConstraintSpec] = (),
    front: pd.DataFrame | None = None,
) -> Any:
    """The completed trials in the space of the objectives, the Pareto front
    (:func:`pareto.front`, or ``front`` when already computed) highlighted: 2 objectives a
    scatter with the front joined by a step line, 3 a 3-D scatter, 4 a scatter matrix.
    Dominated trials are faded, infeasible ones (``feasible`` 0: they broke one of
    ``constraints``) grey crosses; at most :data:`analysis.MAX_POINTS` of each (the front
    whole). Hovering a point shows its trial and parameters."""
    import plotly.graph_objects as go

    if len(goals) < 2:
        raise ValueError(f"pareto_figure: expected 2 or more objectives, got {len(goals)}")
    columns = pareto.objective_columns(goals)
    if front is None:
        front = pareto.front(trials, goals)
    done = _reported(trials, columns)
    bad = done["feasible"].to_numpy(dtype=float) == 0 if "feasible" in done else np.zeros(len(done), dtype=bool)
    dominated = done[~bad & ~done["trial_id"].isin(front["trial_id"]).to_numpy()]
    broke = ", ".join(str(c) for c in constraints)
    groups: list[tuple[str, pd.DataFrame, dict[str, Any]]] = [  # drawn in this order: the front on top
        ("dominated", _sample(dominated, analysis.MAX_POINTS),
         {"color": DOMINATED_COLOUR, "opacity": DOMINATED_OPACITY, "size": 6}),
        (f"infeasible ({broke})" if broke else "infeasible", _sample(done[bad], analysis.MAX_POINTS),
         {"color": INFEASIBLE_COLOUR, "opacity": 0.6, "symbol": "x", "size": 7}),
        ("Pareto front", front, {"color": FRONT_COLOUR, "size": 10, "line": {"width": 1, "color": "white"}}),
    ]
    titles = [goal_title(g) for g in goals]
    fig = go.Figure()
    for name, rows, marker in groups:
        if rows.empty and name != "Pareto front":
            continue
        custom = np.column_stack([rows["trial_id"].to_numpy(dtype=object), _params_text(rows)]) \
            if len(rows) else np.empty((0, 2), dtype=object)
        values = [rows[c].to_numpy(dtype=float) for c in columns]
        hover = "".join(f"<br>{g.metric} %{{{axis}:.5g}}" for g, axis in zip(goals, "xyz", strict=False))
        template = f"trial %{{customdata[0]}}{hover}<br>%{{customdata[1]}}<extra>{name}</extra>"
        if len(goals) == 2:
            front_line = name == "Pareto front"
            fig.add_trace((go.Scattergl if len(rows) > SVG_POINTS else go.Scatter)(
                x=values[0], y=values[1], name=name, mode="lines+markers" if front_line else "markers",
                line={"shape": "hv", "color": FRONT_COLOUR, "width": 2} if front_line else None,
                marker=marker, customdata=custom, hovertemplate=template,
            ))
        elif len(goals) == 3:
            fig.add_trace(go.Scatter3d(
                x=values[0], y=values[1], z=values[2], name=name, mode="markers",
                marker={**marker, "size": marker["size"] * 0.6}, customdata=custom, hovertemplate=template,
            ))
        else:
            fig.add_trace(go.Splom(
                dimensions=[{"label": t, "values": v} for t, v in zip(titles, values, strict=True)], name=name,
                marker=marker, customdata=custom, showupperhalf=False, diagonal={"visible": False},
                hovertemplate=f"trial %{{customdata[0]}}<br>%{{customdata[1]}}<extra>{name}</extra>",
            ))
    title = f"Pareto front: {len(front)} of {len(done)} trials"
    if len(goals) == 2:
        fig.update_layout(xaxis_title=titles[0], yaxis_title=titles[1], height=420)
    elif len(goals) == 3:
        fig.update_layout(scene={"xaxis_title": titles[0], "yaxis_title": titles[1], "zaxis_title": titles[2]},
                          height=520, margin={"l": 0, "r": 0, "b": 0})
    else:
        fig.update_layout(height=640)
    fig.update_layout(title=title, uirevision="pareto", legend={"orientation": "h", "y": -0.15})
    return fig


def hypervolume_figure(curve: pd.DataFrame, origin: float | None = None) -> Any:
    """The hypervolume of the front over time (:func:`pareto.hypervolume_over_time`) as a
    step line: against seconds since ``origin`` (:func:`monitor.origin`, as the other time
    charts), or against completed trials when ``origin`` is None."""
    import plotly.graph_objects as go

    x = curve["trials"] if origin is None else curve["ended"].astype(float) - origin
    fig = go.Figure(go.Scatter(
        x=x, y=curve["hypervolume"], line_shape="hv", mode="lines+markers" if len(curve) < 30 else "lines",
        name="hypervolume", customdata=curve["trials"],
        hovertemplate="%{customdata} completed trials<br>hypervolume %{y:.5g}<extra></extra>",
    ))
    fig.update_layout(
        title="Hypervolume of the front", yaxis_title="hypervolume", height=350, uirevision="hypervolume",
        xaxis_title="completed trials" if origin is None else "seconds since the first trial was queued",
    )
    fig.update_xaxes(rangemode="tozero")
    return fig


def _reported(trials: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Completed trials that reported every objective (a finite value)."""
    if trials.empty or any(c not in trials for c in columns):
        return trials.iloc[0:0].reindex(columns=[*trials.columns, *(c for c in columns if c not in trials)])
    done = trials[trials["state"] == "completed"]
    values = done[columns].to_numpy(dtype=float)
    return done[np.isfinite(values).all(axis=1)]


def _sample(rows: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` rows, evenly spread over ``rows`` (all when fewer)."""
    if len(rows) <= limit:
        return rows
    return rows.iloc[np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))]


def _params_text(rows: pd.DataFrame) -> list[str]:
    """Each row's parameters for a hover: "x=0.5, act=relu" (inactive ones left out)."""
    params = [c for c in rows.columns if c.startswith("param.")]
    if not params:
        return [""] * len(rows)
    return [
        formatting.params({name[6:]: v for name, v in zip(params, values, strict=True) if not _missing(v)})
        for values in rows[params].itertuples(index=False)
    ]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
