"""The Panel app: experiment form, live dashboard, experiment browser.

Views only render the state classes of :mod:`candle_lab.ui.forms` and
:mod:`candle_lab.ui.state`. ``candle-lab dashboard`` serves :func:`create_app`; so does
``panel serve candle_lab/ui/app.py``.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import StringEditor, StringFormatter

from candle_lab import figures, formatting, planner
from candle_lab.efficiency import Efficiency, describe
from candle_lab.errors import CandleLabError
from candle_lab.ui.charts import (
    BestChart,
    CompareChart,
    CurvesChart,
    GanttChart,
    LineageChart,
    PopulationChart,
    UtilizationChart,
    state_legend_html,
)
from candle_lab.ui.forms import EXPORT_FORMATS, PARAM_TYPES, SPACE_COLUMNS, TEXT_COLUMNS, SpecForm, space_table
from candle_lab.ui.state import ExperimentBrowser, ExperimentMonitor

log = logging.getLogger(__name__)

POLL_MS = 500
POLL_BACKOFF = 3.0  # a poll that took t seconds skips polls for 3t: the server is busy at most 1/4 of the time
MAX_POLL_GAP = 1.5  # ... but never longer: a change still reaches the page within about 2 s
ANALYSIS_SECONDS = 5.0  # analysis charts are drawn again at most this often while a search runs
BROWSER_POLL_MS = 5000
EXPERIMENTS_TAB = 2  # the tabs: New experiment, Dashboard, Experiments
W = pn.widgets


INVALID_CSS = (  # a widget whose value has a problem: red border (its class is set by FormView)
    ":host(.invalid) .bk-input, :host(.invalid) .bk-btn-group {"
    " border: 2px solid #d32f2f; box-shadow: 0 0 0 1px #d32f2f; }"
)
BAD_CELL = "background-color: #fde0e0; color: #b00020; font-weight: bold; outline: 2px solid #d32f2f"
BAD_ROW = "background-color: #fdecec"
SECTIONS = {  # FormView section -> the spec fields whose problems it shows
    "model": ("model",),
    "space": ("space",),
    "search": ("search", "budget", "objective", "constraints", "trial", "name", "description"),
    "compute": ("compute",),
}


def _problems_pane(form: SpecForm, *prefixes: str, outside: bool = False) -> pn.pane.Alert:
    """Messages of the form's problems under some sections, shown next to those fields
    (``outside``: the problems under none of them)."""
    alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width",
                          css_classes=["form-problems"])

    def show(*_: Any) -> None:
        lines = form.problems_outside(*prefixes) if outside else form.problems_for(*prefixes)
        alert.object = "\n".join(f"- {html.escape(line)}" for line in lines)
        alert.visible = bool(lines)

    form.param.watch(show, "problems")
    show()
    return alert


# ----------------------------------------------------------------------------- form
class FormView:
    """Model, search space, search and compute job; submit starts a detached driver.

    Each problem shows once, under its section; its widget gets a red border, its space
    table cell a red background; Submit stays disabled while there is any."""

    def __init__(self, form: SpecForm, on_submit: Any = None) -> None:
        self.form = form
        self.on_submit = on_submit
        self.fields: dict[str, Any] = {}  # form parameter -> its widget
        self._styled: list[Any] = []  # the bad cells the space table was last coloured for
        f = form.param
        field = self._field
        text = StringFormatter()  # plain text cells, whatever the dtype when a table was first drawn
        gallery = W.Select.from_param(f.gallery, name="Gallery model")
        load_gallery = W.Button(name="Load model", button_type="primary")
        load_gallery.on_click(lambda _: self._act(lambda: form.load_gallery(form.gallery)) if form.gallery else None)
        self.spec_path = W.TextInput(name="Spec file (on the server)", placeholder="experiments/my-spec.yaml")
        load_file = W.Button(name="Load spec")
        save_file = W.Button(name="Save spec")
        load_file.on_click(lambda _: self._act(lambda: form.load_file(self.spec_path.value or "")))
        save_file.on_click(lambda _: self._act(lambda: form.save(self.spec_path.value or "")))

        self.defaults = W.Tabulator(
            form.defaults, show_index=False, height=220, sizing_mode="stretch_width",
            formatters={"parameter": text, "value": text}, editors={"parameter": None, "value": StringEditor()},
            name="Default model values", css_classes=["default-model-values"],
        )
        self.defaults.on_edit(lambda _: setattr(form, "defaults", self.defaults.value.copy()))
        form.param.watch(lambda e: setattr(self.defaults, "value", e.new), "defaults")
        model = pn.Card(
            pn.Row(gallery, load_gallery),
            field(W.RadioButtonGroup, "model_kind", "Model kind"),
            field(W.TextInput, "model_ref", "Reference (module:function or benchmark module)"),
            field(W.TextInput, "model_path", "Folder of the model"),
            field(W.TextInput, "default_model", "Default model file (CANDLE)"),
            field(W.TextInput, "model_command", "Command (script models)"),
            field(W.TextInput, "result_file", "Result file (script models)"),
            pn.pane.Markdown("**Default model values** (edit a value to fix it for every trial)"),
            self.defaults,
            _problems_pane(form, *SECTIONS["model"]),
            title="1 · Model", sizing_mode="stretch_width",
        )

        typed = [c for c in TEXT_COLUMNS if c != "type"]
        tick = {"type": "tickCross"}
        self.space = W.Tabulator(
            self._numbered(form.space), show_index=True, height=260, sizing_mode="stretch_width",
            selectable="checkbox",
            formatters={**{c: text for c in TEXT_COLUMNS}, "log": tick, "mutable": tick},
            editors={**{c: StringEditor() for c in typed},
                     "type": {"type": "list", "values": PARAM_TYPES}, "log": tick, "mutable": tick},
            name="Parameters", css_classes=["space-table"],
        )
        self.space.style.apply(self._cell_styles, axis=None)
        self.space.on_edit(lambda _: setattr(form, "space", self.space.value.reset_index(drop=True)))
        form.param.watch(lambda e: setattr(self.space, "value", self._numbered(e.new)), "space")
        add = W.Button(name="Add parameter")
        remove = W.Button(name="Remove selected")
        add.on_click(lambda _: self._add_row())
        remove.on_click(lambda _: self._remove_rows())
        self.space_path = W.TextInput(name="Space file (on the server)", placeholder="space.json")
        self.space_format = W.Select(name="Format", options=["auto", "ga", "grid", "upf"], value="auto")
        import_space = W.Button(name="Import")
        import_space.on_click(
            lambda _: self._act(lambda: form.import_space(self.space_path.value or "", self.space_format.value))
        )
        self.export_format = W.Select(name="Export as", options={v: k for k, v in EXPORT_FORMATS.items()}, value="ga")
        download = W.FileDownload(callback=self._export, filename="space.json", button_type="light", label="Download")
        self.export_format.param.watch(lambda e: setattr(download, "filename", _export_name(e.new)), "value")
        space = pn.Card(
            self.space,
            pn.Row(add, remove),
            pn.Row(self.space_path, self.space_format, import_space),
            pn.Row(self.export_format, download),
            _problems_pane(form, *SECTIONS["space"]),
            title="2 · Search space", sizing_mode="stretch_width",
        )

        search = pn.Card(
            pn.Row(field(W.TextInput, "exp_name", "Experiment name"),
                   field(W.Select, "algorithm", "Algorithm")),
            pn.Row(field(W.Select, "surrogate", "Surrogate"),
                   field(W.Select, "acquisition", "Acquisition")),
            pn.Row(field(W.IntInput, "initial_points", "Initial points"),
                   field(W.IntInput, "batch_size", "Batch size (batch-bo; 0 = workers)")),
            pn.Row(field(W.IntInput, "population", "Population (GA, PBT)"),
                   field(W.IntInput, "generations", "Generations (GA, optional)"),
                   field(W.IntInput, "tournament_size", "Tournament size (GA)")),
            pn.Row(field(W.FloatInput, "mutation_rate", "Mutation rate (GA)"),
                   field(W.FloatInput, "crossover_rate", "Crossover rate (GA)"),
                   field(W.Checkbox, "generational", "Generational (GA: CANDLE's barrier)")),
            pn.Row(field(W.IntInput, "interval_epochs", "Interval epochs (PBT)"),
                   field(W.IntInput, "intervals", "Intervals per member (PBT, optional)"),
                   field(W.FloatInput, "truncation", "Truncation (PBT)"),
                   field(W.FloatInput, "resample_probability", "Resample probability (PBT)")),
            pn.Row(field(W.IntInput, "max_trials", "Max trials"),
                   field(W.TextInput, "max_time", "Max time (e.g. 2h)")),
            pn.Row(field(W.TextInput, "metric", "Metric"),
                   field(W.Select, "direction", "Direction"),
                   field(W.TextInput, "more_objectives", "More objectives"),
                   field(W.TextInput, "constraints", "Constraints"),
                   field(W.FloatInput, "target", "Target (optional)")),
            pn.Row(field(W.IntInput, "retries", "Retries per trial"),
                   field(W.TextInput, "timeout", "Trial timeout (e.g. 30m)"),
                   field(W.IntInput, "seed", "Seed (optional)")),
            _problems_pane(form, *SECTIONS["search"]),
            title="3 · Search and budget", sizing_mode="stretch_width",
        )

        compute = pn.Card(
            pn.Row(field(W.Select, "profile", "Site profile"),
                   field(W.Select, "partition", "Partition (blank: profile default)")),
            pn.Row(field(W.IntInput, "gpus", "GPUs per worker"),
                   field(W.Select, "gpu_type", "GPU type (blank: any)")),
            pn.Row(field(W.IntInput, "workers", "Workers"),
                   field(W.IntInput, "cores", "Cores per worker")),
            pn.Row(field(W.TextInput, "memory", "Memory per worker (e.g. 8GB)"),
                   field(W.TextInput, "walltime", "Walltime (HH:MM:SS)")),
            _problems_pane(form, *SECTIONS["compute"]),
            title="4 · Compute job", sizing_mode="stretch_width",
        )

        self.submit = W.Button(name="Submit experiment", button_type="success")
        self.submit.on_click(lambda _: self._submit())
        self.status = pn.pane.Markdown("", css_classes=["form-message"])
        form.param.watch(lambda e: setattr(self.status, "object", html.escape(e.new)), "message")
        self.summary = pn.pane.Markdown("", css_classes=["form-summary"])
        # Problems under no section (a spec-level one); the others show only with their section.
        self.all_problems = _problems_pane(form, *(p for ps in SECTIONS.values() for p in ps), outside=True)
        form.param.watch(self._show_problems, "problems")
        watched = [p for p in form.param if p not in ("problems", "message", "name", "root")]
        form.param.watch(lambda *_: form.check(), watched)
        self.view = pn.Column(
            pn.Row(self.spec_path, load_file, save_file),
            model, space, search, compute, self.all_problems,
            pn.Row(self.submit, self.summary, self.status),
            sizing_mode="stretch_width", name="New experiment",
        )
        form.check()
        self._show_problems()

    def _field(self, kind: Any, name: str, label: str) -> Any:
        """A widget of one form parameter; its border turns red while its value has a problem."""
        widget = kind.from_param(self.form.param[name], name=label, stylesheets=[INVALID_CSS])
        self.fields[name] = widget
        return widget

    @staticmethod
    def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
        """The space table as shown: its rows numbered from 1, as messages number them."""
        table = space_table(frame)
        table.index = pd.RangeIndex(1, len(table) + 1, name="row")
        return table

    def _cell_styles(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Red cells where the last check found a problem (a whole row when no one cell is to blame)."""
        styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for row, column in self.form.bad_cells:
            if row >= len(frame):
                continue
            if column is None:
                styles.iloc[row] = [s or BAD_ROW for s in styles.iloc[row]]
            elif column in styles.columns:
                styles.iloc[row, styles.columns.get_loc(column)] = BAD_CELL
        return styles

    def _show_problems(self, *_: Any) -> None:
        problems = self.form.problems
        bad = self.form.bad_params()
        for name, widget in self.fields.items():
            widget.css_classes = ["invalid"] if name in bad else []
        self.submit.disabled = bool(problems)
        count = len(problems)
        self.summary.object = (
            f"**{count} problem{'s' if count != 1 else ''} to fix before submitting** (shown with their sections)"
            if count else ""
        )
        if self.form.bad_cells != self._styled:
            self._styled = list(self.form.bad_cells)
            self.space.param.trigger("value")  # redraw the cell colours

    def _act(self, action: Any) -> None:
        try:
            action()
        except (CandleLabError, OSError) as exc:
            self.form.message = str(exc)

    def _add_row(self) -> None:
        frame = self.space.value.reset_index(drop=True)
        frame.loc[len(frame)] = {c: "" for c in SPACE_COLUMNS} | {"name": f"param{len(frame)}", "type": "real",
                                                                    "low": "0.0", "high": "1.0", "log": False,
                                                                    "mutable": False}
        self.form.space = space_table(frame)

    def _remove_rows(self) -> None:
        frame = self.space.value.reset_index(drop=True)
        self.form.space = space_table(frame.drop(index=self.space.selection))

    def _export(self) -> Any:
        import io

        try:
            text = self.form.export(self.export_format.value)
        except (CandleLabError, OSError) as exc:
            self.form.message = str(exc)
            text = ""
        return io.StringIO(text)

    def _submit(self) -> None:
        try:
            exp = self.form.submit()
        except (CandleLabError, OSError) as exc:
            self.form.message = str(exc)
            return
        if exp is not None and self.on_submit is not None:
            self.on_submit(exp.path)


def _export_name(fmt: str) -> str:
    return {"ga": "space.json", "grid": "grid.json", "upf": "runs.upf", "yaml": "experiment.yaml"}[fmt]


# ----------------------------------------------------------------------------- dashboard
ANALYSIS_TABS = {"importance": "Importance and EDF", "slices": "Slices", "contour": "Contour",
                 "parallel": "Parallel coordinates"}


class AnalysisView:
    """What the trials say about the space (importance, slices, contour, EDF, parallel
    coordinates): plotly figures of :mod:`candle_lab.figures`, the report's own, one tab
    each. Only the open tab is drawn (on the server and in the browser: parallel
    coordinates of 4,000 trials take seconds of WebGL on a machine without a GPU), by the
    app's poll once the page is open (the tabs are not part of the page before: plotly's
    empty charts would slow its opening), and again when new trials complete, at most
    every :data:`ANALYSIS_SECONDS` while the search runs."""

    def __init__(self, monitor: ExperimentMonitor) -> None:
        self.monitor = monitor
        self._drawn: dict[str, tuple[Any, ...]] = {}  # tab → what it was drawn from
        self._at: dict[str, float] = {}
        self.panes = {
            name: pn.pane.Plotly(None, sizing_mode="stretch_width", name=name, css_classes=[f"analysis-{name}"])
            for name in ("importance", "edf", "slices", "contour", "parallel")
        }
        self.x = W.Select(name="Contour x", options=[], width=180)
        self.y = W.Select(name="Contour y", options=[], width=180)
        for axis in (self.x, self.y):
            axis.param.watch(lambda _: self._contour(), "value")
        p = self.panes
        self.tabs = pn.Tabs(
            (ANALYSIS_TABS["importance"], pn.Row(p["importance"], p["edf"], sizing_mode="stretch_width")),
            (ANALYSIS_TABS["slices"], p["slices"]),
            (ANALYSIS_TABS["contour"], pn.Column(pn.Row(self.x, self.y), p["contour"], sizing_mode="stretch_width")),
            (ANALYSIS_TABS["parallel"], p["parallel"]),
            dynamic=True, sizing_mode="stretch_width",
        )
        self.tabs.param.watch(lambda _: self.update(), "active")
        self.view = pn.Column(sizing_mode="stretch_width")  # the tabs join it when first drawn: not on page open

    @property
    def shown(self) -> str:
        return list(ANALYSIS_TABS)[self.tabs.active]

    def update(self, force: bool = False) -> None:
        m = self.monitor
        if m.spec is None or m.status is None:
            return
        tab, key, now = self.shown, (m.path, m.completed_count(), m.metric), time.monotonic()
        running = m.status.driver_alive
        if not force and (key == self._drawn.get(tab) or (running and now - self._at.get(tab, 0.0) < ANALYSIS_SECONDS)):
            return
        self._drawn[tab], self._at[tab] = key, now
        if not self.view.objects:
            self.view.objects = [self.tabs]
        metric = m.spec.objective.metric
        if tab == "importance":
            self.panes["importance"].object = figures.importance_figure(m.importance())
            self.panes["edf"].object = figures.edf_figure(m.edf(), metric)
        elif tab == "slices":
            self.panes["slices"].object = figures.slice_figure(m.slices(), metric)
        elif tab == "parallel":
            self.panes["parallel"].object = figures.parallel_figure(*m.parallel(), metric, m.direction)
        else:
            names = m.varying()
            if list(self.x.options) != names:  # the two that matter most, until the user picks
                top = [*m.importance()["parameter"].tolist(), *names]
                self.x.param.update(options=names, value=top[0] if top else None)
                self.y.param.update(options=names, value=next((n for n in top if n != top[0]), None))
            self._contour()

    def _contour(self) -> None:
        m = self.monitor
        if m.spec is None:
            return
        found = m.contour(self.x.value, self.y.value) if self.x.value and self.y.value else None
        self.panes["contour"].object = figures.contour_figure(found, m.spec.objective.metric)


class PlannerView:
    """What-if: this experiment's measured trials replayed on other numbers of workers and
    in the other search mode (:mod:`candle_lab.planner`), on request."""

    def __init__(self, monitor: ExperimentMonitor) -> None:
        self.monitor = monitor
        self.workers = W.TextInput(name="Workers", placeholder="e.g. 8,32,128 (empty: ½× to 8× this run's)",
                                   width=260)
        self.modes = W.CheckButtonGroup(name="Modes", options=["async", "batch"], value=["async", "batch"])
        self.button = W.Button(name="Plan", button_type="primary", width=100)
        self.button.on_click(lambda _: self.run())
        self.headline = pn.pane.Markdown("")
        self.table = W.Tabulator(show_index=False, disabled=True, sizing_mode="stretch_width", name="Plan",
                                 visible=False)
        legend = pn.pane.Markdown(f"<small>{html.escape(planner.LEGEND)}</small>")
        self.view = pn.Card(
            pn.Row(self.workers, self.modes, self.button), self.headline, self.table, legend,
            title="What-if: other allocations and modes", collapsed=True, sizing_mode="stretch_width",
        )

    def run(self) -> None:
        typed = self.workers.value_input if self.workers.value_input is not None else self.workers.value
        found = self.monitor.plan(str(typed or ""), list(self.modes.value))
        if found is None:
            return
        self.headline.object, self.table.value = html.escape(found[0]), found[1]
        self.table.visible = True


class DashboardView:
    """Live charts and controls of one experiment; ``poll()`` reads the store. Click a
    trial anywhere (a Gantt bar, a curve's point, a table row) to select it everywhere."""

    def __init__(self, monitor: ExperimentMonitor) -> None:
        self.monitor = monitor
        self.gantt = GanttChart()
        self.util = UtilizationChart()
        self.curves = CurvesChart()
        self.best = BestChart()
        for chart in (self.util, self.best):  # one time axis: zoom one, all follow
            chart.figure.x_range = self.gantt.figure.x_range
        self.population = PopulationChart()
        self.lineage = LineageChart()
        self.analysis = AnalysisView(monitor)
        self.planner = PlannerView(monitor)
        # PBT's population and lineage, several objectives' front and hypervolume: in the page
        # only of experiments that have them (charts not shown still cost the page's opening)
        self.pbt = pn.Row(sizing_mode="stretch_width")
        self._pbt_charts = [pn.pane.Bokeh(c.figure, sizing_mode="stretch_width")
                            for c in (self.population, self.lineage)]
        # plotly, drawn only when the monitor computed them again
        self.front = pn.pane.Plotly(None, sizing_mode="stretch_width", css_classes=["pareto-front"])
        self.hypervolume = pn.pane.Plotly(None, sizing_mode="stretch_width", css_classes=["pareto-hypervolume"])
        self.objectives = pn.Row(sizing_mode="stretch_width")
        self._front_drawn: Any = None  # the monitor's ParetoView the panes show
        self.summary = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["experiment-summary"])
        self.below = pn.Column(sizing_mode="stretch_width")
        self.efficiency = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["experiment-efficiency"])
        self.table = W.Tabulator(
            show_index=False, height=320, sizing_mode="stretch_width", pagination="local", page_size=15,
            disabled=True, name="Trials", selectable=1,
        )
        m = monitor.param
        top_k = W.IntInput.from_param(m.top_k, name="Top K (0 = all)", width=140)
        self.metric = W.Select(name="Curve metric", options=monitor.metric_names(), value=monitor.metric or None,
                               width=180)
        self.metric.param.watch(lambda e: setattr(monitor, "metric", e.new) if e.new else None, "value")
        self.trial = W.Select(name="Trial", options=[], width=140)
        stop_trial = W.Button(name="Stop trial", button_type="warning")
        stop_trial.on_click(lambda _: monitor.stop_trial(int(self.trial.value)) if self.trial.value else None)
        self.stop = W.Button(name="Stop experiment", button_type="danger")
        self.stop.on_click(lambda _: monitor.stop())
        self.resume = W.Button(name="Resume", button_type="primary")
        self.resume.on_click(lambda _: monitor.resume())
        self.budget = W.TextInput(name="Budget (trials)", placeholder="unchanged", width=120)
        self.workers = W.TextInput(name="Workers", placeholder="unchanged", width=100)
        change = W.Button(name="Change", width=80)
        change.on_click(lambda _: monitor.change(self.budget.value or "", self.workers.value or ""))
        self.uq_top = W.IntInput(name="Ensemble: best K", value=1, start=1, width=120)
        self.uq_method = W.Select(name="method", options=["bootstrap", "dropout"], value="bootstrap", width=120)
        self.uq_members = W.IntInput(name="members", value=10, start=2, width=100)
        ensemble = W.Button(name="Run ensemble (UQ)")
        ensemble.on_click(lambda _: self._ensemble())
        self.message = pn.pane.Markdown("", css_classes=["dashboard-message"])
        monitor.param.watch(lambda e: setattr(self.message, "object", html.escape(e.new)), "message")
        monitor.param.watch(self._render, ["version", "top_k", "metric", "selected"])
        self.gantt.source.selected.on_change("indices", lambda _a, _o, new: self._pick(self.gantt.source, new))
        self.curves.points.selected.on_change("indices", lambda _a, _o, new: self._pick(self.curves.points, new))
        self.table.param.watch(self._pick_row, "selection")
        self.view = pn.Column(
            self.summary,
            self.efficiency,
            pn.Row(self.trial, stop_trial, self.stop, self.resume, self.budget, self.workers, change, self.message),
            pn.pane.HTML(state_legend_html(), sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.gantt.figure, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(self.util.figure, sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self.best.figure, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            self.objectives,
            self.below,
            sizing_mode="stretch_width", name="Dashboard",
        )
        self._below = [
            pn.Row(top_k, self.metric, self.uq_top, self.uq_method, self.uq_members, ensemble),
            pn.pane.Bokeh(self.curves.figure, sizing_mode="stretch_width"),
            self.pbt,
            self.table,
            pn.Card(self.analysis.view, title="Analysis: what matters in the search space",
                    sizing_mode="stretch_width"),
            self.planner.view,
        ]
        if pn.state.curdoc is None:
            self.show_below()
        self._render()

    def show_below(self) -> None:
        """Add what lies below the first screen (curves, trials table, analysis, what-if):
        sent once the browser drew the summary and the Gantt, so that a page opens in the
        time its first screen takes."""
        if not self.below.objects:
            self.below.objects = self._below

    def _ensemble(self) -> None:
        self.monitor.ensemble(int(self.uq_top.value or 1), str(self.uq_method.value), int(self.uq_members.value or 0))

    def _pick(self, source: Any, indices: list[int]) -> None:
        if indices:
            self.monitor.selected = int(source.data["trial_id"][indices[0]])

    def _pick_row(self, event: Any) -> None:
        if event.new and not self.table.value.empty:
            self.monitor.selected = int(self.table.value.iloc[event.new[0]]["trial_id"])

    def _render(self, *_: Any) -> None:
        m = self.monitor
        if m.spec is None or m.status is None:
            self.summary.object = "<p>No experiment open: submit one, or open one from the Experiments tab.</p>"
            return
        usage = m.usage()
        self.summary.object = _summary_html(m, usage)
        self.efficiency.object = _efficiency_html(m.efficiency())
        self.gantt.update(m.gantt(), m.selected)
        self.util.update(m.running_series(), m.slots())
        self.best.update(m.best_curve(), f"{m.spec.objective.metric} ({m.direction})")
        shown = m.shown_trials()
        if m.selected is not None and m.selected not in shown:
            shown.append(m.selected)
        best = m.best_row()
        self.curves.update(m.curves(shown), m.metric, m.states_of(shown),
                           None if best is None else int(best["trial_id"]), m.selected)
        _show(self.pbt, self._pbt_charts if m.population_based else [])
        _show(self.objectives, [self.front, self.hypervolume] if m.multi_objective else [])
        front = m.pareto()
        if front is not None and front is not self._front_drawn:
            self._front_drawn = front
            self.front.object = figures.pareto_figure(front.trials, m.spec.goals, m.spec.constraints, front.front)
            self.hypervolume.object = figures.hypervolume_figure(front.hypervolume, front.origin)
        if m.population_based:
            self.population.update_population(*m.population(), m.metric)
            self.lineage.update(m.lineage())
        table = m.table()
        self.table.value = table
        if m.selected is not None and not table.empty:
            rows = np.flatnonzero(table["trial_id"].to_numpy() == m.selected).tolist()
            if rows != self.table.selection:
                self.table.selection = rows
        names = m.metric_names()
        if list(self.metric.options) != names or self.metric.value != m.metric:
            # options and value together: a Select given new options alone jumps to the
            # first one ("accuracy"), and the dashboard would leave the objective's metric
            self.metric.param.update(options=names, value=m.metric if m.metric in names else None)
        self.trial.options = [str(t) for t in m.running_trials()]
        status = m.status
        self.stop.disabled = status is None or not status.driver_alive
        self.resume.disabled = not m.can_resume()


def _show(row: pn.Row, charts: list[Any]) -> None:
    """``row`` holds ``charts`` (none: it holds nothing), changed only when that changes."""
    if bool(row.objects) != bool(charts):
        row.objects = charts


def _summary_html(m: ExperimentMonitor, usage: Any) -> str:
    s = m.status
    spec = m.spec
    assert spec is not None and s is not None
    best = m.best_row()
    arrow = "↓" if m.direction == "minimize" else "↑"
    best_text = "none yet"
    if best is not None:
        params = formatting.params({k[6:]: best[k] for k in best.index if k.startswith("param.")})
        best_text = (f"{html.escape(spec.objective.metric)} {arrow} <b class='best-objective'>"
                     f"{formatting.number(best['objective'])}</b> (trial {int(best['trial_id'])}: "
                     f"{html.escape(params)})")
    phase = m.phase()
    front = m.pareto()  # several objectives: the summary gives the front, not one best
    cells = [
        ("experiment", f"<span class='experiment-id'>{html.escape(s.id)}</span> · {html.escape(spec.name)}"
                       f" · {html.escape(spec.search.algorithm)}"),
        ("state", f"<span class='experiment-state'>{html.escape(s.state)}</span>"
                  + (f" ({html.escape(s.ended_because)})" if s.ended_because else "")
                  + (f" · <span class='experiment-phase'>{html.escape(phase)}</span>" if phase else "")
                  + f" · {formatting.duration(s.duration)}"),
        ("trials", f"<span class='trial-count'>{s.trials}</span> · {s.completed} completed · {s.running} running"
                   f" · {s.failed} failed"),
        ("workers", f"{spec.compute.workers} · utilization {usage.utilization:.1%} · "
                    f"<span class='idle'>idle {usage.idle_fraction:.1%}</span> (waiting for workers counts as idle)"),
        ("front", _front_html(spec, front.front, front.infeasible)) if front is not None else ("best", best_text),
    ]
    history = m.history()
    if history:  # trials imported from other experiments, budget and worker changes
        cells.append(("history", "<span class='history'>" + "<br>".join(html.escape(n) for n in history) + "</span>"))
    notices = m.boundaries()
    if notices:  # the best trials at a bound: the optimum may lie beyond it
        cells.append(("bounds", "<span class='boundary'>" + "<br>".join(html.escape(n) for n in notices) + "</span>"))
    if spec.compute.gpus:
        cells.append(("GPU-hours", f"{usage.gpu_hours_used:.2f} used · {usage.gpu_hours_idle:.2f} idle"))
    else:
        cells.append(("core-hours", f"{usage.core_hours_used:.2f} used · {usage.core_hours_idle:.2f} idle"))
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>" for k, v in cells)
    return f"<table class='summary'>{rows}</table>"


def _front_html(spec: Any, front: pd.DataFrame, infeasible: int) -> str:
    """The summary's line of a multi-objective experiment: "Pareto front: 5 trials (error ↓,
    size ↓) · 3 infeasible (memory <= 30)"."""
    arrows = ", ".join(f"{g.metric} {'↓' if g.direction == 'minimize' else '↑'}" for g in spec.goals)
    text = f"<b class='pareto-count'>Pareto front: {len(front)} trials</b> ({html.escape(arrows)})"
    if spec.constraints:
        limits = ", ".join(str(c) for c in spec.constraints)
        text += f" · <span class='infeasible'>{infeasible} infeasible</span> ({html.escape(limits)})"
    return text


def _efficiency_html(found: Efficiency | None) -> str:
    """The efficiency figures as a small table (always open: a folded one would fold again
    at each redraw while trials run)."""
    if found is None:
        return ""
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                   f"<td>{html.escape(v)}</td></tr>" for k, v in describe(found))
    return (f"<table class='efficiency' style='font-size:90%'><caption style='text-align:left'><b>Efficiency</b> "
            f"({html.escape(found.allocation_source)})</caption>{rows}</table>")


# ----------------------------------------------------------------------------- browser
class BrowserView:
    """Past and running experiments: open one, download its report, compare any number on
    one best-so-far chart (with each one's summary)."""

    def __init__(self, browser: ExperimentBrowser, on_open: Any) -> None:
        self.browser = browser
        self.table = W.Tabulator(
            show_index=False, selectable="checkbox", disabled=True, height=300, sizing_mode="stretch_width",
            name="Experiments",
        )
        browser.param.watch(lambda e: setattr(self.table, "value", e.new), "table")
        self.table.param.watch(
            lambda e: setattr(browser, "selected", [str(self.table.value.iloc[i]["id"]) for i in e.new]), "selection"
        )
        open_button = W.Button(name="Open", button_type="primary")
        open_button.on_click(lambda _: on_open(browser.path_of(browser.selected[0])) if browser.selected else None)
        compare = W.Button(name="Compare selected")
        compare.on_click(lambda _: self._compare())
        refresh = W.Button(name="Refresh")
        refresh.on_click(lambda _: browser.refresh())
        self.report = W.FileDownload(callback=self._report, filename="report.html", label="Report of the selected",
                                     button_type="default", embed=False)
        self.message = pn.pane.Markdown("", css_classes=["browser-message"])
        self.comparison = pn.Column(sizing_mode="stretch_width")
        self.view = pn.Column(self.table, pn.Row(open_button, compare, self.report, refresh, self.message),
                              self.comparison, sizing_mode="stretch_width", name="Experiments")

    def _report(self) -> Any:
        """The HTML report of the first selected experiment, written afresh."""
        import io

        from candle_lab.html_report import write_report

        if not self.browser.selected:
            self.message.object = "select an experiment first"
            return io.BytesIO(b"")
        exp_id = self.browser.selected[0]
        try:
            path = write_report(self.browser.path_of(exp_id))
        except (CandleLabError, OSError) as exc:
            self.message.object = html.escape(str(exc))
            return io.BytesIO(b"")
        self.report.filename = f"{exp_id}-report.html"
        return io.BytesIO(path.read_bytes())

    def _compare(self) -> None:
        chart = CompareChart()
        summaries = []
        for exp_id, monitor in self.browser.compare(self.browser.selected).items():
            label = f"{exp_id} ({monitor.spec.search.algorithm})" if monitor.spec else exp_id
            chart.add(label, monitor.best_curve())
            summaries.append(pn.pane.HTML(_summary_html(monitor, monitor.usage()), sizing_mode="stretch_width"))
            monitor.close()
        self.comparison.objects = [pn.pane.Bokeh(chart.figure, sizing_mode="stretch_width"),
                                   pn.FlexBox(*summaries, sizing_mode="stretch_width")]


# ----------------------------------------------------------------------------- the app
class App(param.Parameterized):
    """One browser session: the three tabs over their state objects."""

    root = param.String(default="")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.form = SpecForm(root=self.root)
        self.monitor = ExperimentMonitor()
        self.browser = ExperimentBrowser(root=self.root)
        self.form_view = FormView(self.form, on_submit=self.open)
        self.dashboard = DashboardView(self.monitor)
        self._next_poll = 0.0  # monotonic time before which a poll does nothing
        self._page_shown = pn.state.curdoc is None  # in a browser: polls start once the page is drawn
        self.browser_view = BrowserView(self.browser, on_open=self.open)
        self.tabs = pn.Tabs(self.form_view.view, self.dashboard.view, self.browser_view.view, dynamic=True,
                            sizing_mode="stretch_width")
        self.tabs.param.watch(lambda _: self._list_experiments(), "active")
        if pn.state.curdoc is not None:
            pn.state.onload(self._shown)
        else:
            self.browser.refresh()
        if "digits_sklearn" in self.form.param.gallery.objects:  # start from a runnable example
            self.form.load_gallery("digits_sklearn")

    def open(self, path: Any) -> None:
        """Show an experiment; its first read counts as a poll (the next waits as after one),
        so that a big experiment's page is sent before the dashboard draws it again."""
        start = time.monotonic()
        self.monitor.open(path)
        self.tabs.active = 1
        end = time.monotonic()
        self._next_poll = end + min(MAX_POLL_GAP, POLL_BACKOFF * (end - start))

    def _shown(self) -> None:
        """The browser drew the page: polls start (a running experiment's first redraw must
        not reach the browser while it still draws the page), and the experiments list is read."""
        self._page_shown = True
        self.dashboard.show_below()
        self._list_experiments()

    def _list_experiments(self) -> None:
        """Read the experiments list while its tab shows (each experiment's status is a
        query: 50 ms for one of 100,000 trials)."""
        if self.tabs.active == EXPERIMENTS_TAB and self._page_shown and _connected():
            self.browser.refresh()

    def poll(self) -> None:
        """Read the store and draw what changed. A read that took ``t`` seconds (a 100,000
        trial experiment) waits ``POLL_BACKOFF × t`` (at most :data:`MAX_POLL_GAP`) before the
        next, so the server stays free to answer pages and clicks. The analysis charts keep
        their own pace (:data:`ANALYSIS_SECONDS`): their cost does not delay the next read."""
        start = time.monotonic()
        if start < self._next_poll or not self._page_shown or not _connected():
            return
        try:
            self.monitor.refresh()
        except Exception:  # a store being replaced or removed: keep the session alive
            log.warning("dashboard refresh failed", exc_info=True)
            return
        finally:
            end = time.monotonic()
            self._next_poll = end + min(MAX_POLL_GAP, POLL_BACKOFF * (end - start))
        try:
            self.dashboard.analysis.update()  # here, not on opening: the page shows first
        except Exception:
            log.warning("analysis update failed", exc_info=True)

    def panel(self) -> pn.viewable.Viewable:
        header = pn.pane.HTML("<h2 style='margin:0'>candle_lab</h2>", sizing_mode="stretch_width")
        layout = pn.Column(header, self.tabs, sizing_mode="stretch_width", styles={"padding": "0 1em"})
        if pn.state.curdoc is not None:
            pn.state.add_periodic_callback(self.poll, period=POLL_MS)
            pn.state.add_periodic_callback(self._list_experiments, period=BROWSER_POLL_MS)
            pn.state.on_session_destroyed(lambda _: self.monitor.close())
        return layout


def _connected() -> bool:
    """Whether a browser still shows this session's page: Bokeh keeps a closed page's
    session (and runs its polls) for 15 s or more, time a busy server spends on the pages
    being opened."""
    context = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
    session = getattr(context, "session", None)
    return session is None or session.connection_count > 0


def create_app(root: str = "", experiment: str | None = None) -> pn.viewable.Viewable:
    """A new app session (``experiment``: a folder to open on the dashboard)."""
    pn.extension("tabulator", "plotly", notifications=False)
    app = App(root=root)
    query = pn.state.session_args.get("experiment") if pn.state.curdoc is not None else None
    try:
        if experiment:  # the server's option: an id or a folder
            app.open(app.browser.path_of(experiment) if "/" not in experiment else experiment)
        elif query:  # the URL's ?experiment=: an id in the experiments folder, never a path
            exp_id = query[0].decode()
            if not exp_id.replace("-", "").replace("_", "").isalnum():
                raise CandleLabError(f"experiment: expected an experiment id like EXP003, got {exp_id!r}")
            app.open(app.browser.path_of(exp_id))
    except CandleLabError as exc:
        app.monitor.message = str(exc)
    return app.panel()


if __name__.startswith("bokeh"):  # `panel serve candle_lab/ui/app.py`
    from candle_lab import settings

    create_app(str(settings.home() or "")).servable(title="candle_lab")
