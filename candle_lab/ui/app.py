"""The Panel app: experiment form, live dashboard, experiment browser.

Views only render the state classes of :mod:`candle_lab.ui.forms` and
:mod:`candle_lab.ui.state`. ``candle-lab dashboard`` serves :func:`create_app`; so does
``panel serve candle_lab/ui/app.py``.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import panel as pn
import param

from candle_lab.errors import CandleLabError
from candle_lab.ui.charts import (
    BestChart,
    CurvesChart,
    GanttChart,
    LineageChart,
    ParallelChart,
    PopulationChart,
    UtilizationChart,
)
from candle_lab.ui.forms import EXPORT_FORMATS, SPACE_COLUMNS, SpecForm
from candle_lab.ui.state import ExperimentBrowser, ExperimentMonitor

log = logging.getLogger(__name__)

POLL_MS = 500
BROWSER_POLL_MS = 5000
W = pn.widgets


def _problems_pane(form: SpecForm, *prefixes: str) -> pn.pane.Alert:
    """Messages of the form's problems under some sections, shown next to those fields."""
    alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")

    def show(*_: Any) -> None:
        lines = form.problems_for(*prefixes)
        alert.object = "\n".join(f"- {html.escape(line)}" for line in lines)
        alert.visible = bool(lines)

    form.param.watch(show, "problems")
    show()
    return alert


# ----------------------------------------------------------------------------- form
class FormView:
    """Model, search space, search and compute job; submit starts a detached driver."""

    def __init__(self, form: SpecForm, on_submit: Any = None) -> None:
        self.form = form
        self.on_submit = on_submit
        f = form.param
        gallery = W.Select.from_param(f.gallery, name="Gallery model")
        load_gallery = W.Button(name="Load model", button_type="primary")
        load_gallery.on_click(lambda _: self._act(lambda: form.load_gallery(form.gallery)) if form.gallery else None)
        self.spec_path = W.TextInput(name="Spec file (on the server)", placeholder="experiments/my-spec.yaml")
        load_file = W.Button(name="Load spec")
        save_file = W.Button(name="Save spec")
        load_file.on_click(lambda _: self._act(lambda: form.load_file(self.spec_path.value or "")))
        save_file.on_click(lambda _: self._act(lambda: form.save(self.spec_path.value or "")))

        self.defaults = W.Tabulator(
            form.defaults, show_index=False, height=220, sizing_mode="stretch_width", editors={"parameter": None},
            name="Default model values",
        )
        self.defaults.on_edit(lambda _: setattr(form, "defaults", self.defaults.value.copy()))
        form.param.watch(lambda e: setattr(self.defaults, "value", e.new), "defaults")
        model = pn.Card(
            pn.Row(gallery, load_gallery),
            W.RadioButtonGroup.from_param(f.model_kind, name="Model kind"),
            W.TextInput.from_param(f.model_ref, name="Reference (module:function or benchmark module)"),
            W.TextInput.from_param(f.model_path, name="Folder of the model"),
            W.TextInput.from_param(f.default_model, name="Default model file (CANDLE)"),
            W.TextInput.from_param(f.model_command, name="Command (script models)"),
            W.TextInput.from_param(f.result_file, name="Result file (script models)"),
            pn.pane.Markdown("**Default model values** (edit a value to fix it for every trial)"),
            self.defaults,
            _problems_pane(form, "model"),
            title="1 · Model", sizing_mode="stretch_width",
        )

        self.space = W.Tabulator(
            form.space, show_index=False, height=260, sizing_mode="stretch_width", selectable="checkbox",
            editors={"type": {"type": "list", "values": ["real", "integer", "categorical", "ordered", "constant"]},
                     "log": {"type": "tickCross"}, "mutable": {"type": "tickCross"}},
            name="Parameters",
        )
        self.space.on_edit(lambda _: setattr(form, "space", self.space.value.copy()))
        form.param.watch(lambda e: setattr(self.space, "value", e.new), "space")
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
            _problems_pane(form, "space"),
            title="2 · Search space", sizing_mode="stretch_width",
        )

        search = pn.Card(
            pn.Row(W.TextInput.from_param(f.exp_name, name="Experiment name"),
                   W.Select.from_param(f.algorithm, name="Algorithm")),
            pn.Row(W.Select.from_param(f.surrogate, name="Surrogate"),
                   W.Select.from_param(f.acquisition, name="Acquisition")),
            pn.Row(W.IntInput.from_param(f.initial_points, name="Initial points"),
                   W.IntInput.from_param(f.batch_size, name="Batch size (batch-bo; 0 = workers)")),
            pn.Row(W.IntInput.from_param(f.population, name="Population (GA, PBT)"),
                   W.IntInput.from_param(f.generations, name="Generations (GA, optional)"),
                   W.IntInput.from_param(f.tournament_size, name="Tournament size (GA)")),
            pn.Row(W.FloatInput.from_param(f.mutation_rate, name="Mutation rate (GA)"),
                   W.FloatInput.from_param(f.crossover_rate, name="Crossover rate (GA)"),
                   W.Checkbox.from_param(f.generational, name="Generational (GA: CANDLE's barrier)")),
            pn.Row(W.IntInput.from_param(f.interval_epochs, name="Interval epochs (PBT)"),
                   W.IntInput.from_param(f.intervals, name="Intervals per member (PBT, optional)"),
                   W.FloatInput.from_param(f.truncation, name="Truncation (PBT)"),
                   W.FloatInput.from_param(f.resample_probability, name="Resample probability (PBT)")),
            pn.Row(W.IntInput.from_param(f.max_trials, name="Max trials"),
                   W.TextInput.from_param(f.max_time, name="Max time (e.g. 2h)")),
            pn.Row(W.TextInput.from_param(f.metric, name="Metric"),
                   W.Select.from_param(f.direction, name="Direction"),
                   W.FloatInput.from_param(f.target, name="Target (optional)")),
            pn.Row(W.IntInput.from_param(f.retries, name="Retries per trial"),
                   W.TextInput.from_param(f.timeout, name="Trial timeout (e.g. 30m)"),
                   W.IntInput.from_param(f.seed, name="Seed (optional)")),
            _problems_pane(form, "search", "budget", "objective", "trial", "name"),
            title="3 · Search and budget", sizing_mode="stretch_width",
        )

        compute = pn.Card(
            pn.Row(W.Select.from_param(f.profile, name="Site profile"),
                   W.Select.from_param(f.partition, name="Partition (blank: profile default)")),
            pn.Row(W.IntInput.from_param(f.gpus, name="GPUs per worker"),
                   W.Select.from_param(f.gpu_type, name="GPU type (blank: any)")),
            pn.Row(W.IntInput.from_param(f.workers, name="Workers"),
                   W.IntInput.from_param(f.cores, name="Cores per worker")),
            pn.Row(W.TextInput.from_param(f.memory, name="Memory per worker (e.g. 8GB)"),
                   W.TextInput.from_param(f.walltime, name="Walltime (HH:MM:SS)")),
            _problems_pane(form, "compute"),
            title="4 · Compute job", sizing_mode="stretch_width",
        )

        self.submit = W.Button(name="Submit experiment", button_type="success")
        self.submit.on_click(lambda _: self._submit())
        self.status = pn.pane.Markdown("", css_classes=["form-message"])
        form.param.watch(lambda e: setattr(self.status, "object", html.escape(e.new)), "message")
        self.all_problems = _problems_pane(form)
        watched = [p for p in form.param if p not in ("problems", "message", "name", "root")]
        form.param.watch(lambda *_: form.check(), watched)
        self.view = pn.Column(
            pn.Row(self.spec_path, load_file, save_file),
            model, space, search, compute, self.all_problems,
            pn.Row(self.submit, self.status),
            sizing_mode="stretch_width", name="New experiment",
        )

    def _act(self, action: Any) -> None:
        try:
            action()
        except (CandleLabError, OSError) as exc:
            self.form.message = str(exc)

    def _add_row(self) -> None:
        frame = self.space.value.copy()
        frame.loc[len(frame)] = {c: None for c in SPACE_COLUMNS} | {"name": f"param{len(frame)}", "type": "real",
                                                                      "low": 0.0, "high": 1.0, "log": False,
                                                                      "mutable": False}
        self.form.space = frame.reset_index(drop=True)

    def _remove_rows(self) -> None:
        self.form.space = self.space.value.drop(index=self.space.selection).reset_index(drop=True)

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
class DashboardView:
    """Live charts and controls of one experiment; ``poll()`` reads the store."""

    def __init__(self, monitor: ExperimentMonitor) -> None:
        self.monitor = monitor
        self.gantt = GanttChart()
        self.util = UtilizationChart()
        self.curves = CurvesChart()
        self.best = BestChart()
        self.parallel = ParallelChart()
        self.population = PopulationChart()
        self.lineage = LineageChart()
        self.pbt = pn.Row(pn.pane.Bokeh(self.population.figure, sizing_mode="stretch_width"),
                          pn.pane.Bokeh(self.lineage.figure, sizing_mode="stretch_width"),
                          sizing_mode="stretch_width", visible=False)
        self.summary = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["experiment-summary"])
        self.table = W.Tabulator(
            show_index=False, height=320, sizing_mode="stretch_width", pagination="local", page_size=15,
            disabled=True, name="Trials",
        )
        m = monitor.param
        top_k = W.IntInput.from_param(m.top_k, name="Top K (0 = all)", width=140)
        self.metric = W.Select(name="Curve metric", options=monitor.metric_names(), value=monitor.metric or None,
                               width=180)
        self.metric.param.watch(lambda e: setattr(monitor, "metric", e.new or ""), "value")
        self.trial = W.Select(name="Trial", options=[], width=140)
        stop_trial = W.Button(name="Stop trial", button_type="warning")
        stop_trial.on_click(lambda _: monitor.stop_trial(int(self.trial.value)) if self.trial.value else None)
        self.stop = W.Button(name="Stop experiment", button_type="danger")
        self.stop.on_click(lambda _: monitor.stop())
        self.resume = W.Button(name="Resume", button_type="primary")
        self.resume.on_click(lambda _: monitor.resume())
        self.uq_top = W.IntInput(name="Ensemble: best K", value=1, start=1, width=120)
        self.uq_method = W.Select(name="method", options=["bootstrap", "dropout"], value="bootstrap", width=120)
        self.uq_members = W.IntInput(name="members", value=10, start=2, width=100)
        ensemble = W.Button(name="Run ensemble (UQ)")
        ensemble.on_click(lambda _: self._ensemble())
        self.message = pn.pane.Markdown("", css_classes=["dashboard-message"])
        monitor.param.watch(lambda e: setattr(self.message, "object", html.escape(e.new)), "message")
        monitor.param.watch(self._render, ["version", "top_k", "metric"])
        self.view = pn.Column(
            self.summary,
            pn.Row(self.trial, stop_trial, self.stop, self.resume, self.message),
            pn.pane.Bokeh(self.gantt.figure, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(self.util.figure, sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self.best.figure, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            pn.Row(top_k, self.metric, self.uq_top, self.uq_method, self.uq_members, ensemble),
            pn.Row(pn.pane.Bokeh(self.curves.figure, sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self.parallel.figure, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            self.pbt,
            self.table,
            sizing_mode="stretch_width", name="Dashboard",
        )
        self._render()

    def _ensemble(self) -> None:
        self.monitor.ensemble(int(self.uq_top.value or 1), str(self.uq_method.value), int(self.uq_members.value or 0))

    def _render(self, *_: Any) -> None:
        m = self.monitor
        if m.spec is None or m.status is None:
            self.summary.object = "<p>No experiment open: submit one, or open one from the Experiments tab.</p>"
            return
        usage = m.usage()
        self.summary.object = _summary_html(m, usage)
        self.gantt.update(m.gantt())
        self.util.update(m.running_series(), m.spec.compute.workers)
        self.best.update(m.best_curve(), f"{m.spec.objective.metric} ({m.direction})")
        self.curves.update(m.curves(), m.metric)
        self.parallel.update(m.trials, m.direction)
        self.pbt.visible = m.population_based
        if m.population_based:
            self.population.update_population(*m.population(), m.metric)
            self.lineage.update(m.lineage())
        self.table.value = m.table()
        names = m.metric_names()
        if list(self.metric.options) != names:
            self.metric.options = names
        self.trial.options = [str(t) for t in m.running_trials()]
        status = m.status
        self.stop.disabled = status is None or not status.driver_alive
        self.resume.disabled = not m.can_resume()


def _summary_html(m: ExperimentMonitor, usage: Any) -> str:
    s = m.status
    spec = m.spec
    assert spec is not None and s is not None
    best = m.best_row()
    best_text = "none yet"
    if best is not None:
        params = ", ".join(f"{k[6:]}={best[k]}" for k in best.index if k.startswith("param."))
        best_text = f"<b class='best-objective'>{best['objective']:.6g}</b> (trial {int(best['trial_id'])}: {params})"
    cells = [
        ("experiment", f"<span class='experiment-id'>{html.escape(s.id)}</span> · {html.escape(spec.name)}"),
        ("state", f"<span class='experiment-state'>{html.escape(s.state)}</span>"
                  + (f" ({html.escape(s.ended_because)})" if s.ended_because else "")),
        ("trials", f"<span class='trial-count'>{s.trials}</span> · {s.completed} completed · {s.running} running"
                   f" · {s.failed} failed"),
        ("workers", f"{spec.compute.workers} · utilization {usage.utilization:.1%} · "
                    f"<span class='idle'>idle {usage.idle_fraction:.1%}</span>"),
        ("best", best_text),
    ]
    if spec.compute.gpus:
        cells.append(("GPU-hours", f"{usage.gpu_hours_used:.2f} used · {usage.gpu_hours_idle:.2f} idle"))
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>" for k, v in cells)
    return f"<table class='summary'>{rows}</table>"


# ----------------------------------------------------------------------------- browser
class BrowserView:
    """Past and running experiments: open one, compare two side by side."""

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
        self.comparison = pn.Row(sizing_mode="stretch_width")
        self.view = pn.Column(self.table, pn.Row(open_button, compare, refresh), self.comparison,
                              sizing_mode="stretch_width", name="Experiments")

    def _compare(self) -> None:
        columns = []
        for exp_id, monitor in self.browser.compare(self.browser.selected[:2]).items():
            chart = BestChart()
            chart.figure.title.text = f"{exp_id}: best so far"
            chart.update(monitor.best_curve(), monitor.spec.objective.metric if monitor.spec else "")
            gantt = GanttChart()
            gantt.update(monitor.gantt())
            columns.append(pn.Column(pn.pane.HTML(_summary_html(monitor, monitor.usage())),
                                     pn.pane.Bokeh(chart.figure), pn.pane.Bokeh(gantt.figure),
                                     sizing_mode="stretch_width"))
            monitor.close()
        self.comparison.objects = columns


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
        self.browser_view = BrowserView(self.browser, on_open=self.open)
        self.tabs = pn.Tabs(self.form_view.view, self.dashboard.view, self.browser_view.view, dynamic=False,
                            sizing_mode="stretch_width")
        self.browser.refresh()
        if "digits_sklearn" in self.form.param.gallery.objects:  # start from a runnable example
            self.form.load_gallery("digits_sklearn")

    def open(self, path: Any) -> None:
        self.monitor.open(path)
        self.tabs.active = 1

    def poll(self) -> None:
        try:
            self.monitor.refresh()
        except Exception:  # a store being replaced or removed: keep the session alive
            log.warning("dashboard refresh failed", exc_info=True)

    def panel(self) -> pn.viewable.Viewable:
        header = pn.pane.HTML("<h2 style='margin:0'>candle_lab</h2>", sizing_mode="stretch_width")
        layout = pn.Column(header, self.tabs, sizing_mode="stretch_width", styles={"padding": "0 1em"})
        if pn.state.curdoc is not None:
            pn.state.add_periodic_callback(self.poll, period=POLL_MS)
            pn.state.add_periodic_callback(self.browser.refresh, period=BROWSER_POLL_MS)
            pn.state.on_session_destroyed(lambda _: self.monitor.close())
        return layout


def create_app(root: str = "", experiment: str | None = None) -> pn.viewable.Viewable:
    """A new app session (``experiment``: a folder to open on the dashboard)."""
    pn.extension("tabulator", notifications=False)
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
