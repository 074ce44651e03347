"""Notebook front end: an ipywidgets experiment form and a live experiment dashboard.

    form = candle_lab.widgets.ExperimentForm()    # model, space, search, compute
    form                                          # shows it; errors appear inline
    exp = candle_lab.run(form.spec, wait=False)   # or the form's Run button
    candle_lab.widgets.dashboard(exp)             # live Gantt and loss curves (plotly)

The form edits the same state object as the Panel app's form (:class:`SpecForm`), so
both give the same spec and the same messages; this module only binds widgets to it.
"""

from __future__ import annotations

import html
import logging
import math
import pprint
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from candle_lab import figures, formatting
from candle_lab.errors import CandleLabError, MissingDependency, expected_got

if TYPE_CHECKING:
    from candle_lab.api import Experiment
    from candle_lab.spec import ExperimentSpec

try:
    import ipywidgets as W
except ImportError:  # pragma: no cover - depends on the installation
    raise MissingDependency("ipywidgets", "notebook", "candle_lab.widgets") from None

from candle_lab.ui.forms import PARAM_TYPES, SPACE_COLUMNS, SpecForm

log = logging.getLogger(__name__)

SECTIONS = {  # form section -> the spec fields whose problems it shows
    "Model": ("name", "model", "description"),
    "Search space": ("space",),
    "Search": ("search", "budget", "objective", "constraints"),
    "Compute job": ("compute", "trial"),
}
WIDE = W.Layout(width="420px")
OPTIONAL_NUMBERS = {  # form field -> spec field
    "target": "budget.target",
    "seed": "search.seed",
    "generations": "search.generations",
    "mutation_rate": "search.mutation_rate",
    "crossover_rate": "search.crossover_rate",
    "intervals": "search.intervals",
    "truncation": "search.truncation",
    "resample_probability": "search.resample_probability",
}


def _problems_html(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<ul class='candle-lab-problems' style='color:#b00020;margin:0.3em 0'>{items}</ul>"


class ExperimentForm:
    """Model, search space, search and compute job; ``spec`` is the validated spec.

    Every edit re-checks the form; problems show under their section with the core's
    messages (field, what was expected, what was given)."""

    def __init__(self, root: str = "", gallery: str | None = "digits_sklearn") -> None:
        self.form = SpecForm(root=root)
        self.experiment: Experiment | None = None
        self._syncing = False
        self._editing = False
        self._widgets: dict[str, W.Widget] = {}
        self._problem_boxes = {name: W.HTML() for name in SECTIONS}
        self.message = W.HTML()
        self.output = W.Output()
        self._space_rows = W.VBox()
        self._defaults = W.VBox()
        if gallery and gallery in self.form.param.gallery.objects:
            self.form.load_gallery(gallery)
        self.widget = self._build()
        self.form.param.watch(self._from_form, list(self._widgets))
        self.form.param.watch(lambda _: self._show_space(), ["space"])
        self.form.param.watch(lambda _: self._show_defaults(), ["defaults"])
        self.form.param.watch(lambda e: setattr(self.message, "value", html.escape(e.new)), ["message"])
        self.form.param.watch(lambda _: self._show_problems(), ["problems"])
        self._show_space()
        self._show_defaults()
        self.form.check()

    # ------------------------------------------------------------------ public
    @property
    def spec(self) -> ExperimentSpec:
        """The spec the form describes; raises :class:`SpecError` naming each problem."""
        self._read_space()
        return self.form.build()

    def to_yaml(self) -> str:
        return self.spec.to_yaml()

    def to_python(self) -> str:
        """Code that builds and starts the same experiment."""
        data = pprint.pformat(self.spec.to_dict(), sort_dicts=False, width=100)
        return (
            f"import candle_lab\n\nspec = candle_lab.spec_from_dict({data})\n"
            "exp = candle_lab.run(spec, wait=False)\n"
        )

    def run(self) -> Experiment | None:
        """Submit (as its own process, like the dashboard's Submit); None when invalid."""
        self._read_space()
        self.experiment = self.form.submit()
        return self.experiment

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ building
    def _field(self, name: str, label: str, kind: str = "text", **kwargs: Any) -> W.Widget:
        p = self.form.param[name]
        value = getattr(self.form, name)
        widget: W.Widget
        if kind == "select":
            widget = W.Dropdown(options=list(p.objects), value=value, description=label, **kwargs)
        elif kind == "int":
            widget = W.IntText(value=value if value is not None else 0, description=label, **kwargs)
        elif kind == "bool":
            widget = W.Checkbox(value=bool(value), description=label, **kwargs)
        elif kind in ("float", "optint"):  # optional numbers: blank = none
            widget = W.Text(value="" if value is None else str(value), description=label, **kwargs)
        else:
            widget = W.Text(value=value or "", description=label, **kwargs)
        widget.style.description_width = "150px"
        widget.observe(lambda change: self._to_form(name, kind, change["new"]), names="value")
        self._widgets[name] = widget
        return widget

    def _to_form(self, name: str, kind: str, value: Any) -> None:
        if self._syncing or (kind == "int" and value is None):
            return
        if kind in ("float", "optint"):  # optional numbers typed as text: blank = none
            try:
                value = None if str(value).strip() == "" else (float if kind == "float" else int)(value)
            except ValueError:
                expected = "a number" if kind == "float" else "a whole number"
                self._check()
                problem = (OPTIONAL_NUMBERS[name], expected_got(f"{expected} or nothing", value))
                self.form.problems = [*self.form.problems, problem]
                return
        setattr(self.form, name, value)
        self._check()

    def _from_form(self, *events: Any) -> None:
        """Show what the form state holds now (after a load, an import, a profile change)."""
        self._syncing = True
        try:
            for event in events:
                widget = self._widgets[event.name]
                if isinstance(widget, W.Dropdown):
                    widget.options = list(self.form.param[event.name].objects)
                if isinstance(widget, W.Text):
                    widget.value = "" if event.new is None else str(event.new)
                else:
                    widget.value = event.new
            for name in ("partition", "gpu_type"):  # their choices follow the profile
                self._widgets[name].options = list(self.form.param[name].objects)
        finally:
            self._syncing = False

    def _build(self) -> W.Widget:
        f = self._field
        gallery = f("gallery", "Gallery model", "select")
        load = W.Button(description="Load model", button_style="primary")
        load.on_click(lambda _: self._act(lambda: self.form.load_gallery(self.form.gallery)))
        spec_path = W.Text(description="Spec file", placeholder="my-spec.yaml", layout=WIDE)
        load_spec = W.Button(description="Load spec")
        save_spec = W.Button(description="Save spec")
        load_spec.on_click(lambda _: self._act(lambda: self.form.load_file(spec_path.value)))
        save_spec.on_click(lambda _: self._act(lambda: self.form.save(spec_path.value)))
        model = W.VBox([
            W.HBox([gallery, load]), W.HBox([spec_path, load_spec, save_spec]),
            f("exp_name", "Experiment name"), f("model_kind", "Kind", "select"),
            f("model_ref", "Reference", layout=WIDE), f("model_path", "Folder of the model", layout=WIDE),
            f("model_command", "Command", layout=WIDE), f("default_model", "Default model file", layout=WIDE),
            W.HTML("<b>Default parameters</b> (an edited value is fixed for every trial)"), self._defaults,
            self._problem_boxes["Model"],
        ])
        space_path = W.Text(description="Space file", placeholder="space.json", layout=WIDE)
        space_format = W.Dropdown(options=["auto", "ga", "grid", "upf"], value="auto", description="Format")
        do_import = W.Button(description="Import")
        do_import.on_click(lambda _: self._act(lambda: self.form.import_space(space_path.value, space_format.value)))
        add = W.Button(description="Add parameter", icon="plus")
        add.on_click(lambda _: self._add_row())
        space = W.VBox([W.HBox([space_path, space_format, do_import]), self._space_rows, add,
                        self._problem_boxes["Search space"]])
        search = W.VBox([
            f("algorithm", "Algorithm", "select"), f("surrogate", "Surrogate", "select"),
            f("acquisition", "Acquisition", "select"), f("initial_points", "Initial points", "int"),
            f("batch_size", "Batch size", "int"), f("seed", "Seed", "optint"),
            f("population", "Population (GA, PBT)", "int"), f("generations", "Generations (GA)", "optint"),
            f("mutation_rate", "Mutation rate (GA)", "float"), f("crossover_rate", "Crossover rate (GA)", "float"),
            f("tournament_size", "Tournament (GA)", "int"), f("generational", "Generational (GA)", "bool"),
            f("interval_epochs", "Interval epochs (PBT)", "int"), f("intervals", "Intervals (PBT)", "optint"),
            f("truncation", "Truncation (PBT)", "float"),
            f("resample_probability", "Resample prob. (PBT)", "float"),
            f("max_trials", "Max trials", "int"), f("max_time", "Max time"), f("target", "Target", "float"),
            f("metric", "Metric"), f("direction", "Direction", "select"),
            f("more_objectives", "More objectives"), f("constraints", "Constraints"), self._problem_boxes["Search"],
        ])
        compute = W.VBox([
            f("profile", "Site profile", "select"), f("partition", "Partition", "select"),
            f("gpu_type", "GPU type", "select"), f("gpus", "GPUs per worker", "int"),
            f("workers", "Workers", "int"), f("cores", "Cores per worker", "int"), f("memory", "Memory"),
            f("walltime", "Walltime"), f("retries", "Retries", "int"), f("timeout", "Trial timeout"),
            self._problem_boxes["Compute job"],
        ])
        tabs = W.Tab(children=[model, space, search, compute])
        for i, title in enumerate(SECTIONS):
            tabs.set_title(i, title)
        buttons = []
        for label, action in (("Show YAML", self.to_yaml), ("Show Python", self.to_python)):
            button = W.Button(description=label)
            button.on_click(lambda _, action=action: self._show_code(action))
            buttons.append(button)
        run = W.Button(description="Run experiment", button_style="success")
        run.on_click(lambda _: self._act(self.run))
        return W.VBox([tabs, W.HBox([run, *buttons]), self.message, self.output])

    # ------------------------------------------------------------------ the space table
    def _show_space(self) -> None:
        if self._editing:
            return
        rows = []
        for _, row in self.form.space.iterrows():
            rows.append(self._space_row({k: ("" if _blank(v) else v) for k, v in row.items()}))
        self._space_rows.children = rows

    def _space_row(self, row: dict[str, Any]) -> W.HBox:
        cells = [
            W.Text(value=str(row.get("name", "")), placeholder="name", layout=W.Layout(width="140px")),
            W.Dropdown(options=list(PARAM_TYPES), value=row.get("type") or "real", layout=W.Layout(width="120px")),
            W.Text(value=str(row.get("low", "")), placeholder="low", layout=W.Layout(width="90px")),
            W.Text(value=str(row.get("high", "")), placeholder="high", layout=W.Layout(width="90px")),
            W.Checkbox(value=bool(row.get("log") or False), description="log", indent=False,
                       layout=W.Layout(width="60px")),
            W.Text(value=str(row.get("choices", "")), placeholder="choices: a, b, c", layout=W.Layout(width="200px")),
            W.Text(value=str(row.get("value", "")), placeholder="value", layout=W.Layout(width="90px")),
            W.Text(value=str(row.get("when", "")), placeholder="when: e.g. layers >= 3",
                   layout=W.Layout(width="170px")),
            W.Checkbox(value=bool(row.get("mutable") or False), description="mutable", indent=False,
                       layout=W.Layout(width="80px"), tooltip="PBT perturbs it"),
        ]
        remove = W.Button(icon="trash", layout=W.Layout(width="40px"), tooltip="remove")
        box = W.HBox([*cells, remove])
        remove.on_click(lambda _: self._remove_row(box))
        for cell in cells:
            cell.observe(lambda _: self._read_space(check=True), names="value")
        return box

    def _add_row(self) -> None:
        n = len(self._space_rows.children)
        self._space_rows.children = (*self._space_rows.children,
                                     self._space_row({"name": f"param{n}", "type": "real", "low": 0, "high": 1}))
        self._read_space(check=True)

    def _remove_row(self, box: W.HBox) -> None:
        self._space_rows.children = tuple(r for r in self._space_rows.children if r is not box)
        self._read_space(check=True)

    def _read_space(self, check: bool = False) -> None:
        """The space rows on screen -> the form's space table."""
        import pandas as pd

        rows = [
            dict(zip(SPACE_COLUMNS, [c.value for c in box.children[:-1]], strict=True))
            for box in self._space_rows.children
        ]
        self._editing = True  # the rows on screen are the source: do not redraw them
        try:
            self.form.space = pd.DataFrame(rows, columns=SPACE_COLUMNS).replace("", None)
        finally:
            self._editing = False
        if check:
            self._check()

    # ------------------------------------------------------------------ defaults
    def _show_defaults(self) -> None:
        if self._editing:
            return
        boxes = []
        for _, row in self.form.defaults.iterrows():
            text = W.Text(value=str(row["value"]), description=str(row["parameter"]), layout=WIDE)
            text.style.description_width = "150px"
            text.observe(lambda _: self._read_defaults(), names="value")
            boxes.append(text)
        self._defaults.children = boxes

    def _read_defaults(self) -> None:
        import pandas as pd

        rows = [{"parameter": t.description, "value": t.value} for t in self._defaults.children]
        self._editing = True
        try:
            self.form.defaults = pd.DataFrame(rows, columns=["parameter", "value"])
        finally:
            self._editing = False
        self._check()

    # ------------------------------------------------------------------ feedback
    def _check(self) -> None:
        self.form.check()

    def _show_problems(self) -> None:
        for name, prefixes in SECTIONS.items():
            self._problem_boxes[name].value = _problems_html(self.form.problems_for(*prefixes))
        other = self.form.problems_outside(*(p for prefixes in SECTIONS.values() for p in prefixes))
        self.message.value = _problems_html(other) if other else ""

    def _act(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (CandleLabError, OSError) as exc:
            self.form.message = str(exc)

    def _show_code(self, make: Callable[[], str]) -> None:
        self.output.clear_output()
        with self.output:
            try:
                code = make()
            except CandleLabError as exc:
                self.form.message = str(exc)
                return
            from IPython.display import Markdown, display

            display(Markdown(f"```\n{code}\n```"))


class ExperimentDashboard:
    """A live view of one experiment in a notebook: summary, Gantt chart of trials per
    worker and loss curves per epoch (plotly FigureWidgets), refreshed from the store by
    a background thread until the search ends, plus Stop buttons. :func:`dashboard`
    makes one; a notebook cell shows it."""

    def __init__(self, exp: Experiment, interval: float = 1.0) -> None:
        try:
            import plotly.graph_objects as go

            self.gantt = go.FigureWidget()
            self.best = go.FigureWidget()
            self.front = go.FigureWidget()  # several objectives: the Pareto front
            self.curves = go.FigureWidget()
            self.analysis = {name: go.FigureWidget() for name in ANALYSIS}
        except (ImportError, ValueError) as exc:  # plotly 7's FigureWidget is an anywidget
            raise MissingDependency("anywidget", "notebook", f"the notebook dashboard ({exc})") from None
        from candle_lab.ui.state import ExperimentMonitor

        self.exp = exp
        self.interval = interval
        self.monitor = ExperimentMonitor()
        self.monitor.open(exp.path)
        self.summary = W.HTML()
        stop = W.Button(description="Stop experiment", button_style="danger")
        stop.on_click(lambda _: exp.stop())
        self.trial = W.Dropdown(description="Trial", options=[])
        stop_trial = W.Button(description="Stop trial", button_style="warning")
        stop_trial.on_click(lambda _: exp.stop_trial(int(self.trial.value)) if self.trial.value else None)
        analysis = W.Accordion(children=[W.VBox(list(self.analysis.values()))], titles=("Analysis",))
        fronts = [self.front] if exp.spec.multi_objective else []
        self.widget = W.VBox([self.summary, W.HBox([self.trial, stop_trial, stop]), self.gantt, self.best,
                              *fronts, self.curves, analysis])
        self._front_drawn: Any = None  # the monitor's ParetoView the front shows
        self._analysed: tuple[int, float] = (-1, 0.0)  # (completed trials, when) of the last analysis drawn
        self._stopped = threading.Event()
        self.update()
        self._thread = threading.Thread(target=self._poll, name=f"candle-lab-dashboard-{exp.id}", daemon=True)
        self._thread.start()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def close(self) -> None:
        self._stopped.set()
        self.monitor.close()

    def _poll(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                before = self.monitor.version
                self.monitor.refresh()
                if self.monitor.version != before:  # new data, or running bars to extend
                    self.update()
                status = self.monitor.status
                if status is not None and not status.driver_alive and status.state not in ("created", "running"):
                    self.update()
                    return
            except Exception:  # keep the notebook usable whatever the store does
                log.warning("notebook dashboard refresh failed", exc_info=True)

    def update(self) -> None:
        m = self.monitor
        status = m.status
        if status is None or m.spec is None:
            return
        usage = m.usage()
        metric = m.spec.objective.metric
        arrow = "↓" if m.direction == "minimize" else "↑"
        phase = m.phase()
        self.summary.value = (
            f"<b>{html.escape(status.id)}</b> · {html.escape(status.state)}"
            f"{' (' + html.escape(phase) + ')' if phase else ''} · {formatting.duration(status.duration)} · "
            f"{status.trials} trials ({status.completed} completed, {status.failed} failed, {status.running} running)"
            f" · idle {usage.idle_fraction:.1%} · best {html.escape(metric)} {arrow} "
            f"<span class='best-objective'>{formatting.number(status.best)}</span>"
        )
        front = m.pareto()
        if front is not None:
            self.summary.value += f" · <b class='pareto-count'>Pareto front: {len(front.front)} trials</b>"
        notes = [*m.history(), *m.boundaries()]  # imported trials, changes, best trials at a bound
        if notes:
            self.summary.value += "<br>" + "<br>".join(html.escape(n) for n in notes)
        self.trial.options = [str(t) for t in m.running_trials()]
        _replace(self.gantt, figures.gantt_figure(m.trials, direction=m.direction))
        _replace(self.best, figures.best_so_far_figure(m.best_curve(), metric, m.direction))
        if front is not None and front is not self._front_drawn:  # drawn again only when computed again
            self._front_drawn = front
            _replace(self.front, figures.pareto_figure(front.trials, m.spec.goals, m.spec.constraints, front.front))
        if m.population_based:  # PBT: each member's whole life, with its exploit jumps
            _replace(self.curves, figures.population_figure(*m.population(), m.metric))
        else:
            shown = m.shown_trials()
            best = m.best_row()
            _replace(self.curves, figures.curves_figure(m.curves(shown), m.metric, m.states_of(shown),
                                                        None if best is None else int(best["trial_id"])))
        done, last = self._analysed
        if status.completed != done and (not status.driver_alive or time.monotonic() - last > ANALYSIS_SECONDS):
            self._analysed = (status.completed, time.monotonic())
            importance = m.importance()
            pair = importance["parameter"].tolist()[:2]
            drawn = {
                "parallel": figures.parallel_figure(*m.parallel(), metric, m.direction),
                "importance": figures.importance_figure(importance),
                "edf": figures.edf_figure(m.edf(), metric),
                "slices": figures.slice_figure(m.slices(), metric),
                "contour": figures.contour_figure(m.contour(*pair) if len(pair) == 2 else None, metric),
            }
            for name, fig in drawn.items():
                _replace(self.analysis[name], fig)


def dashboard(exp: Experiment, interval: float = 1.0) -> ExperimentDashboard:
    """A live view of ``exp`` for a notebook cell: Gantt chart of trials per worker, loss
    curves and Stop buttons, refreshed every ``interval`` seconds until the search ends.

        board = candle_lab.widgets.dashboard(exp)
        board            # shows it; board.close() stops the refreshing
    """
    return ExperimentDashboard(exp, interval=interval)


ANALYSIS = ("parallel", "importance", "edf", "slices", "contour")
ANALYSIS_SECONDS = 5.0  # the analysis figures are drawn again at most this often while a search runs


def _replace(widget: Any, figure: Any) -> None:
    """Show ``figure``'s traces and layout in a FigureWidget (one message per update)."""
    with widget.batch_update():
        widget.layout = figure.layout
    widget.data = ()
    widget.add_traces(list(figure.data))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
