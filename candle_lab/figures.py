"""Plotly figures of an experiment, shared by the HTML report and the notebook dashboard,
and the trial-state colours that every front end (the Bokeh app too) draws with.

Each builder takes what :mod:`candle_lab.monitor` computes from the store and returns a
``plotly.graph_objects.Figure``; plotly is imported only when a figure is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from candle_lab import monitor

if TYPE_CHECKING:
    import pandas as pd

STATE_COLOURS: dict[str, tuple[str, str]] = {  # state -> two shades, alternating along a worker lane
    "completed": ("#1f77b4", "#ff7f0e"),  # neighbours contrast
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


def curves_figure(curves: dict[int, pd.DataFrame], metric: str) -> Any:
    """One line per trial of a metric per epoch (``step`` and ``value`` columns)."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=c["step"], y=c["value"], mode="lines", name=f"trial {t}") for t, c in curves.items()])
    fig.update_layout(title=f"{metric or 'metric'} per epoch", xaxis_title="epoch", height=320)
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
