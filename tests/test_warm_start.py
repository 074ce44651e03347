"""Warm start, enqueued configurations, and changing a search's budget and workers
(``search.warm_start``, ``search.enqueue``, ``Experiment.change``, ``candle-lab extend``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import model_spec

import candle_lab
from candle_lab import warm
from candle_lab.cli import main
from candle_lab.errors import SpecError
from candle_lab.optimizers import Enqueued, make_optimizer
from candle_lab.spec import spec_from_dict
from candle_lab.store.db import TrialRecord
from candle_lab.ui.state import ExperimentMonitor

X = {"name": "x", "type": "real", "low": 0.0, "high": 1.0}
OPT = {"name": "optimizer", "type": "categorical", "choices": ["sgd", "adam"]}


def _spec(space: list[dict[str, Any]], **sections: Any) -> Any:
    return spec_from_dict(model_spec("sleepy", space=space, **sections))


def _trial(i: int, params: dict[str, Any], loss: float | None = 1.0, **metrics: float) -> TrialRecord:
    return TrialRecord(i, f"RUN{i:03d}", params, "completed" if loss is not None else "failed", loss,
                       {"loss": loss, **metrics} if loss is not None else None)


# ------------------------------------------------------------------ mapping (pure)
def test_trials_are_mapped_onto_a_narrower_space_and_the_note_says_how() -> None:
    source = _spec([X, OPT, {"name": "units", "type": "integer", "low": 8, "high": 64},
                    {"name": "epochs", "type": "constant", "value": 5}])
    new = _spec([{**X, "low": 0.2, "high": 0.6}, {**OPT, "choices": ["sgd", "adam"]},
                 {"name": "epochs", "type": "constant", "value": 5}])
    records = [
        _trial(0, {"x": 0.3, "optimizer": "sgd", "units": 8, "epochs": 5}, 0.1),
        _trial(1, {"x": 0.9, "optimizer": "adam", "units": 16, "epochs": 5}, 0.2),  # outside the new bounds
        _trial(2, {"x": 0.5, "optimizer": "adam", "units": 32, "epochs": 5}, 0.3),
        _trial(3, {"x": 0.4, "optimizer": "sgd", "units": 8, "epochs": 5}, None),  # failed: nothing to learn
    ]
    trials, note = warm.map_trials(new, "search.warm_start[0]", "EXP001", source, records)
    assert [t.params for t in trials] == [{"x": 0.3, "optimizer": "sgd", "epochs": 5},
                                          {"x": 0.5, "optimizer": "adam", "epochs": 5}]
    assert (note.completed, note.imported, note.dropped, note.added) == (3, 2, ("units",), ())
    assert note.skipped == {"x: expected a number from 0.2 to 0.6": 1}
    assert note.text().startswith("2 of 3 completed trials of EXP001 imported; dropped units; 1 left out")
    (first, _) = warm.observations(new, trials)
    assert (first.loss, first.run_id) == (0.1, "EXP001/RUN000")


def test_a_source_that_cannot_inform_the_search_is_refused_by_field() -> None:
    source = _spec([X])
    new = _spec([X, OPT], objective={"metric": "val_auc", "direction": "maximize"})
    with pytest.raises(SpecError, match=r"search.warm_start\[0\]: the trials of EXP001 do not report 'val_auc' "
                                        r"\(they report loss\)"):
        warm.map_trials(new, "search.warm_start[0]", "EXP001", source, [_trial(0, {"x": 0.5})])
    narrow = _spec([{**X, "low": 0.8, "high": 0.9}])
    with pytest.raises(SpecError, match=r"none of the 2 completed trials of EXP001 is a point of the new space "
                                        r"\(2× x: expected a number from 0.8 to 0.9\)"):
        warm.map_trials(narrow, "w", "EXP001", source, [_trial(0, {"x": 0.5}), _trial(1, {"x": 0.1})])
    with pytest.raises(SpecError, match=r"\(1× optimizer: expected a value: the space searches it\)"):
        warm.map_trials(_spec([X, OPT]), "w", "EXP001", source, [_trial(0, {"x": 0.5})])  # never had one


def test_bayesian_optimization_skips_its_design_once_warm_started() -> None:
    spec = _spec([X], search={"algorithm": "async-bo", "initial_points": 4})
    bo = make_optimizer(spec, seed=1)
    bo.tell(warm.observations(spec, [warm.WarmTrial("EXP001", f"RUN{i}", {"x": i / 6}, {"loss": (i / 6 - 0.3) ** 2})
                                     for i in range(6)]))
    assert bo.told == 6 and not bo._design  # type: ignore[attr-defined]
    assert len(bo.ask(2)) == 2 and bo.fits  # type: ignore[attr-defined]  # proposals from a surrogate at once


# ------------------------------------------------------------------ enqueue
def test_enqueued_configurations_are_checked_by_field() -> None:
    with pytest.raises(SpecError) as caught:
        _spec([X, OPT], search={"algorithm": "random", "enqueue": [{"x": 0.5, "optimizer": "sgd"},
                                                                  {"x": 1.5, "optimizer": "sgd"},
                                                                  {"x": 0.5, "optimzer": "sgd"}]})
    assert caught.value.problems == [
        ("search.enqueue[1].x", "expected a number from 0 to 1, got 1.5"),
        ("search.enqueue[2].optimzer", "not a parameter of this space (did you mean 'optimizer'?)"),
        ("search.enqueue[2].optimizer", "expected a value: the space searches it"),
    ]


def test_enqueued_configurations_come_first_and_once() -> None:
    spec = _spec([X, {"name": "epochs", "type": "constant", "value": 3}],
                 search={"algorithm": "async-bo", "initial_points": 3, "enqueue": [{"x": 0.25}, {"x": 0.75}]})
    optimizer = make_optimizer(spec, seed=0)
    assert isinstance(optimizer, Enqueued)
    first = optimizer.ask(3)
    assert [p.params for p in first[:2]] == [{"x": 0.25, "epochs": 3}, {"x": 0.75, "epochs": 3}]
    assert first[0].origin == {"enqueued": True} and len(optimizer._inner._design) == 0  # type: ignore[attr-defined]
    again = make_optimizer(spec, seed=0)  # a resumed run: what was proposed is not proposed again
    again.register(first[:1])
    assert [p.params["x"] for p in again.ask(1)] == [0.75]


# ------------------------------------------------------------------ end to end
def test_an_experiment_learns_from_another_and_changes_its_budget(client: Any, root: Path) -> None:
    source = candle_lab.run(model_spec("sleepy", space=[X, {"name": "sleep", "type": "constant", "value": 0.05}],
                                       objective={"metric": "loss"}, budget={"max_trials": 8}),
                            client=client, root=root)
    inside = sum(1 for t in source.records() if 0.1 <= t.params["x"] <= 0.7)
    spec = model_spec("sleepy", space=[{**X, "low": 0.1, "high": 0.7}, {"name": "sleep", "type": "constant",
                                                                       "value": 0.05}],
                      objective={"metric": "loss"}, budget={"max_trials": 3},
                      search={"algorithm": "async-bo", "initial_points": 2, "warm_start": [source.id],
                              "enqueue": [{"x": 0.3}]})
    exp = candle_lab.run(spec, client=client, root=root)
    assert len(exp.imported()) == inside and {t.source for t in exp.imported()} == {source.id}
    ((_, _, _, note),) = exp.events(["warm-start"])
    assert note["imported"] == inside and note["text"].startswith(f"{inside} of 8 completed trials of {source.id}")
    records = exp.records()
    assert len(records) == 3 and records[0].params["x"] == 0.3 and records[0].origin == {"enqueued": True}

    with pytest.raises(SpecError, match=r"compute\.workers"):
        exp.change(workers=0)
    exp.change(max_trials=5, workers=1)  # stopped: for when it resumes
    assert exp.spec.budget.max_trials == 5 and exp.spec.compute.workers == 1
    ((_, _, _, changed),) = exp.events(["changed"])
    assert changed == {"budget.max_trials": {"from": 3, "to": 5}, "compute.workers": {"from": 2, "to": 1}}
    candle_lab.resume(exp.path, client=client)
    assert len(exp.records()) == 5 and len({t.params["x"] for t in exp.records()}) == 5  # the enqueued ran once

    board = ExperimentMonitor(path=str(exp.path))  # the dashboard: its history, and the same change
    board.refresh()
    assert board.history()[0].startswith(f"warm start: {inside} of 8 completed trials of {source.id} imported")
    assert board.history()[1].endswith("changed: budget.max_trials 3 → 5, compute.workers 2 → 1")
    board.change("ten", "")
    assert board.message == "invalid input: budget: expected a whole number ≥ 1 (or nothing: unchanged), got 'ten'"
    board.change("9", "")
    assert board.message == f"{exp.id}: budget 9 trials, 1 workers (when it resumes)"
    assert exp.spec.budget.max_trials == 9

    from candle_lab import widgets

    notebook = widgets.dashboard(exp, interval=60)  # the notebook dashboard says the same
    try:
        assert f"warm start: {inside} of 8 completed trials of {source.id} imported" in notebook.summary.value
    finally:
        notebook.close()


def test_a_running_search_takes_a_new_budget(client: Any, root: Path) -> None:
    spec = model_spec("sleepy", space=[X, {"name": "sleep", "type": "constant", "value": 0.4}],
                      objective={"metric": "loss"}, budget={"max_trials": 4})
    exp = candle_lab.run(spec, client=client, root=root, wait=False)
    deadline = time.monotonic() + 60
    while not exp.driver_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    exp.change(max_trials=7)
    while exp.driver_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(exp.records()) == 7
    ((_, _, _, changed),) = exp.events(["changed"])  # recorded by the driver that applied it
    assert changed == {"budget.max_trials": {"from": 4, "to": 7}}
    assert yaml.safe_load((exp.path / "spec.yaml").read_text())["budget"]["max_trials"] == 7


def test_extend_starts_a_warm_started_experiment_over_a_new_space(client: Any, root: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = candle_lab.run(model_spec("sleepy", space=[X, {"name": "sleep", "type": "constant", "value": 0.05}],
                                       objective={"metric": "loss"}, budget={"max_trials": 4}),
                            client=client, root=root)
    space = root / "narrow.yaml"
    space.write_text(yaml.safe_dump([{**X, "high": 0.5}, {"name": "sleep", "type": "constant", "value": 0.05}]))
    assert main(["--root", str(root), "extend", source.id, "--space", str(root / "nowhere.yaml")]) == 2
    assert "space.file" in capsys.readouterr().err
    spec = candle_lab.api.as_spec(candle_lab.api.extend_spec(source, space, max_trials=2))
    assert spec.search.warm_start == (str(source.path),) and spec.space.parameters[0].high == 0.5
    exp = candle_lab.api.extend(source, space, max_trials=2, client=client)
    assert exp.spec.name.endswith("-extended") and len(exp.records()) == 2
    assert exp.events(["warm-start"])
