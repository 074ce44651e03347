"""Population based training (``search.algorithm: pbt``): exploit/explore decisions, real
Keras checkpoints handed from member to member on a local dask cluster, a member whose
worker dies resuming from its checkpoint, and bad settings named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import assert_pbt_progress_continues, model_spec, pbt_progress_spec

import candle_lab
from candle_lab.errors import SpecError
from candle_lab.optimizers import Observation
from candle_lab.optimizers.pbt import PopulationBasedTraining
from candle_lab.space import CategoricalParam, ConstantParam, IntegerParam, RealParam, SearchSpace
from candle_lab.spec import spec_from_dict
from candle_lab.store import DB_NAME, Store

SPACE = SearchSpace(
    (
        RealParam(name="learning_rate", low=1e-4, high=0.1, log=True, mutable=True),
        IntegerParam(name="batch_size", low=8, high=256, mutable=True),
        CategoricalParam(name="optimizer", choices=("adam", "sgd"), mutable=True),
        CategoricalParam(name="units", choices=(16, 32, 64), ordered=True),
        ConstantParam(name="epochs", value=10),
    )
)


def test_the_bottom_copies_the_top_and_perturbs_only_mutable_parameters() -> None:
    pbt = PopulationBasedTraining(SPACE, population=4, intervals=3, truncation=0.25, seed=0)
    first = pbt.ask(10)
    assert [p.run_id for p in first] == ["M000_I0000", "M001_I0000", "M002_I0000", "M003_I0000"]
    assert pbt.ask(1) == []  # every member is training
    pbt.tell([Observation(p.params, float(i), p.run_id) for i, p in enumerate(first)])  # member 0 best, 3 worst
    second = {p.origin["member"]: p for p in pbt.ask(4)}  # type: ignore[index]
    worst = second[3]
    assert worst.origin == {"member": 3, "interval": 1, "from": "M000_I0000", "exploit": 0}
    donor = first[0].params
    assert worst.params["units"] == donor["units"] and worst.params["epochs"] == 10  # not mutable: copied
    changed = [k for k in ("learning_rate", "batch_size", "optimizer") if worst.params[k] != donor[k]]
    assert changed  # explored
    lr = worst.params["learning_rate"]
    assert 1e-4 <= lr <= 0.1 and 8 <= worst.params["batch_size"] <= 256
    for member in (0, 1, 2):  # the others go on from their own checkpoint, unchanged
        assert second[member].origin == {"member": member, "interval": 1, "from": f"M00{member}_I0000"}
        assert second[member].params == first[member].params


def test_a_failed_interval_is_tried_again_and_the_search_ends_after_its_intervals() -> None:
    pbt = PopulationBasedTraining(SPACE, population=2, intervals=2, seed=1)
    a, b = pbt.ask(2)
    pbt.tell([Observation(a.params, 0.5, a.run_id), Observation(b.params, None, b.run_id)])
    on, again = pbt.ask(2)  # member 1 failed its first interval: it copies member 0 ...
    assert on.run_id == "M000_I0001" and again.origin["from"] == "M000_I0000"
    assert again.run_id == "M001_I0001" and again.origin["interval"] == 1  # ... and goes on where it is
    assert pbt.exhausted and pbt.ask(1) == []  # both train their last interval
    pbt.tell([Observation(p.params, 0.4, p.run_id) for p in (on, again)])
    assert [m.intervals for m in pbt.members] == [2, 2]


def test_a_member_never_copies_one_that_has_finished_training() -> None:
    """Copying a member that trained its last interval would leave nothing to train: the
    member goes on from its own checkpoint instead."""
    pbt = PopulationBasedTraining(SPACE, population=2, intervals=2, truncation=0.5, seed=0)
    a, b = pbt.ask(2)
    pbt.tell([Observation(a.params, 0.1, a.run_id)])
    (a1,) = pbt.ask(2)  # member 0 goes on alone while member 1 still trains
    pbt.tell([Observation(a1.params, 0.05, a1.run_id), Observation(b.params, 0.9, b.run_id)])
    (b1,) = pbt.ask(2)  # member 1 ranks last, but member 0 is done
    assert b1.origin == {"member": 1, "from": "M001_I0000", "interval": 1}
    assert b1.params == b.params


def test_perturbation_moves_small_integers_and_ordered_choices_one_step() -> None:
    space = SearchSpace(
        (
            IntegerParam(name="layers", low=1, high=4, mutable=True),
            CategoricalParam(name="batch", choices=(16, 32, 64), ordered=True, mutable=True),
        )
    )
    pbt = PopulationBasedTraining(space, population=2, resample_probability=0.0, seed=3)
    for _ in range(20):
        out = pbt.explore({"layers": 2, "batch": 32})
        assert out["layers"] in (1, 3) and out["batch"] in (16, 64)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"search": {"truncation": 0.6}}, "search.truncation", "less than or equal to 0.5"),
        ({"search": {"population": 0}}, "search.population", "greater than or equal to 2"),
        ({"search": {"perturb": [0.8, -1]}}, "search.perturb", "two positive factors"),
        ({"space": [{"name": "lr", "type": "real", "low": 0.1, "high": 1}]}, "space", "marked mutable: true"),
        ({"space": [{"name": "lr", "type": "constant", "value": 0.1, "mutable": True}]}, "space.parameters[0]",
         "got a constant"),
        ({"space": [{"name": "a", "type": "categorical", "choices": ["x"], "mutable": True}]}, "space.parameters[0]",
         "at least two choices"),
        ({"model": {"kind": "command", "command": ["python", "train.py"]}}, "model.kind", "got command"),
        ({"budget": {}}, "budget", "(or search.intervals)"),
    ],
)
def test_bad_pbt_settings_are_named(change: dict[str, Any], field: str, words: str) -> None:
    data: dict[str, Any] = {
        "model": {"ref": "m:f"},
        "space": [{"name": "lr", "type": "real", "low": 0.001, "high": 0.1, "mutable": True}],
        "search": {"algorithm": "pbt", "population": 4},
        "budget": {"max_trials": 8},
    }
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key == "search" else value
    with pytest.raises(SpecError) as err:
        spec_from_dict(data)
    assert any(f.startswith(field) and words in m for f, m in err.value.problems), err.value.problems


# ------------------------------------------------------------------ on the local cluster
def _steps(store: Store, name: str = "val_loss") -> dict[int, dict[int, float]]:
    """trial -> {epoch: value} of its latest attempt."""
    frame = store.metrics_frame()
    frame = frame[frame["name"] == name]
    latest = frame.groupby("trial_id")["attempt"].transform("max")
    frame = frame[frame["attempt"] == latest]
    return {int(t): dict(zip(g["step"], g["value"], strict=True)) for t, g in frame.groupby("trial_id")}


def test_keras_members_hand_on_real_weights(client: Any, root: Path) -> None:
    """An unchanged Keras model: each interval starts from the weights its member's last
    interval (or, after an exploit, the donor's) ended with — its loss before training is
    the donor's last validation loss, not a new start's."""
    spec = model_spec(
        "pbt_keras",
        space=[{"name": "learning_rate", "type": "real", "low": 3e-3, "high": 3e-2, "log": True, "mutable": True}],
        objective={"metric": "val_loss"},
        search={"algorithm": "pbt", "population": 4, "interval_epochs": 2, "intervals": 3, "seed": 2},
        budget={},
    )
    spec["budget"] = {}
    exp = candle_lab.run(spec, client=client, root=root)
    records = exp.records()
    assert all(t.state == "completed" for t in records)
    _every_member_trained_to_the_end(records, members=4, intervals=3)
    by_run = {t.run_id: t for t in records}
    with Store(exp.path / DB_NAME, readonly=True) as store:
        steps, starts = _steps(store), _steps(store, "val_loss_at_start")
    for t in records:  # each interval trains its own two epochs: 1-2, 3-4, 5-6
        k = t.origin["interval"]  # type: ignore[index]
        assert sorted(steps[t.trial_id]) == [2 * k + 1, 2 * k + 2] and t.round == k
        assert (exp.path / t.run_id / "pbt" / "model.weights.h5").is_file()
    exploits = [t for t in records if "exploit" in (t.origin or {})]
    assert exploits, "the worst member never copied a better one"
    later = [t for t in records if t.origin and t.origin.get("from")]
    assert len(later) == len(records) - 4
    for t in later:  # its own checkpoint or a donor's
        donor = by_run[t.origin["from"]]  # type: ignore[index]
        k = t.origin["interval"]  # type: ignore[index]
        assert starts[t.trial_id][2 * k] == pytest.approx(steps[donor.trial_id][2 * k], rel=1e-3)
        root = donor  # the lineage's first interval: its loss before any training
        while root.origin.get("from"):  # type: ignore[union-attr]
            root = by_run[root.origin["from"]]  # type: ignore[index]
        # trained weights, not a new start's (how far below varies with the learning rate
        # and the machine: 0.51 to 0.015 of the untrained loss seen)
        assert starts[t.trial_id][2 * k] < 0.8 * starts[root.trial_id][0]
    _views_show_the_population(exp, exploits)


def _every_member_trained_to_the_end(records: list[Any], members: int, intervals: int) -> None:
    """Each member's intervals go up to the last one and no further; a member that copied
    one further along skips the intervals between (it takes the donor's place), so the
    trials number between members × intervals and fewer."""
    by_member: dict[int, list[int]] = {}
    for t in records:
        by_member.setdefault(t.origin["member"], []).append(t.origin["interval"])
    assert sorted(by_member) == list(range(members))
    for seen in by_member.values():
        assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == intervals - 1, by_member
    assert len(records) <= members * intervals


def _views_show_the_population(exp: candle_lab.Experiment, exploits: list[Any]) -> None:
    """The lineage, the members' whole-life curves with their jumps, in the report and on
    the Panel dashboard."""
    from candle_lab import monitor
    from candle_lab.html_report import write_report
    from candle_lab.ui.app import DashboardView
    from candle_lab.ui.state import ExperimentMonitor

    line = monitor.lineage(exp.trials)
    assert len(line) == len(exp.records()) and set(line["member"]) == {0, 1, 2, 3}
    copied = line[line["exploit"]]
    assert sorted(copied["trial_id"]) == sorted(t.trial_id for t in exploits)
    assert all(copied["source"] != copied["member"])
    curves, jumps = monitor.population_curves(exp.trials, exp.metrics, "val_loss")
    lengths = {m: 2 * len(part) for m, part in line.groupby("member")}  # 2 epochs per interval
    assert sorted(curves) == [0, 1, 2, 3] and all(len(c) == lengths[m] for m, c in curves.items())
    assert len(jumps) == len(exploits) and set(jumps["donor"]) <= {0, 1, 2, 3}
    html = write_report(exp).read_text()
    assert "Lineage" in html and "Population" in html
    board = ExperimentMonitor(path=str(exp.path))
    view = DashboardView(board)
    assert view.pbt.visible and len(view.population.source.data["xs"]) == 4
    assert len(view.lineage.edges.data["x0"]) == len(line) - 4
    assert len(view.population.jumps.data["step"]) == len(exploits)
    board.close()


def test_a_member_whose_worker_dies_resumes_from_its_checkpoint(client: Any, root: Path) -> None:
    """Member 1's later intervals each kill their worker once: they run again from the
    checkpoint they started from, training their own epochs, not from epoch 1."""
    exp = candle_lab.run(pbt_progress_spec(1), client=client, root=root)
    records = {t.run_id: t for t in exp.records()}
    assert all(t.state == "completed" for t in records.values())
    _every_member_trained_to_the_end(list(records.values()), members=2, intervals=3)
    assert_pbt_progress_continues(records, exp.metrics)


def test_an_unchanged_candle_benchmark_with_candle_checkpoints(client: Any, root: Path) -> None:
    """A CANDLE module using CandleCkptKeras/restart as CANDLE's benchmarks do: restart
    hands it the interval's checkpoint, and the interval's end is saved for the next."""
    bench = Path(__file__).parent / "candle_benchmark"
    spec = {
        "name": "pbt-candle",
        "model": {"kind": "candle", "ref": "ckpt_baseline", "path": str(bench),
                  "default_model": str(bench / "mlp_default_model.txt")},
        "space": [{"name": "learning_rate", "type": "real", "low": 1e-3, "high": 5e-2, "log": True, "mutable": True}],
        "objective": {"metric": "val_loss"},
        "search": {"algorithm": "pbt", "population": 2, "interval_epochs": 1, "intervals": 3, "truncation": 0.5,
                   "seed": 3},
        "compute": {"workers": 2},
    }
    exp = candle_lab.run(spec, client=client, root=root)
    records = exp.records()
    assert all(t.state == "completed" for t in records), [t.error for t in records]
    _every_member_trained_to_the_end(records, members=2, intervals=3)
    by_run = {t.run_id: t for t in records}
    with Store(exp.path / DB_NAME, readonly=True) as store:
        steps, starts = _steps(store), _steps(store, "val_loss_at_start")
    for t in records:  # from its own checkpoint or, after an exploit (timing decides), another member's
        k = t.origin["interval"]  # type: ignore[index]
        assert sorted(steps[t.trial_id]) == [k + 1]
        if k:
            donor = by_run[t.origin["from"]]  # type: ignore[index]
            assert starts[t.trial_id][k] == pytest.approx(steps[donor.trial_id][k], rel=1e-3)


def test_pbt_resumes_after_its_driver_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the driver (and its local cluster) mid-search, then resume: completed
    intervals are kept as they were, the members go on from their checkpoints, and every
    interval starts where the run it names as its source ended."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    spec = pbt_progress_spec(2, retries=3)  # a lost worker and a killed driver may both cost an attempt
    spec["space"].append({"name": "epoch_seconds", "type": "constant", "value": 0.4})
    path = tmp_path / "pbt.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "experiments"
    cli = [sys.executable, "-m", "candle_lab.cli", "--root", str(root)]
    driver = subprocess.Popen([*cli, "run", str(path), "-q"], start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    db = root / "EXP000" / DB_NAME

    def completed() -> dict[str, float | None]:
        try:
            with Store(db, readonly=True) as store:
                return {t.run_id: t.ended for t in store.trials(["completed"])}
        except Exception:  # the driver may still be creating the tables
            return {}

    deadline = time.monotonic() + 120
    while len(completed()) < 3:
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = completed()
    assert len(before) >= 3
    resumed = subprocess.run([*cli, "resume", "EXP000", "-q"], capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = completed()
    assert all(after[run] == ended for run, ended in before.items())  # kept, never re-run
    with Store(db, readonly=True) as store:
        records = {t.run_id: t for t in store.trials()}
        metrics = store.metrics_frame()
    assert all(t.state == "completed" for t in records.values()), [(t.run_id, t.error) for t in records.values()]
    _every_member_trained_to_the_end(list(records.values()), members=2, intervals=3)
    assert_pbt_progress_continues(records, metrics)
