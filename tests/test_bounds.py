"""Best trials at a bound of the space: a ``boundary`` event with a wider bound to try."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import model_spec

import candle_lab
from candle_lab.bounds import at_bounds
from candle_lab.space import IntegerParam, RealParam, SearchSpace

SPACE = SearchSpace([
    RealParam(name="lr", low=1e-4, high=1e-1, log=True),
    RealParam(name="dropout", low=0.0, high=0.5),
    IntegerParam(name="units", low=16, high=64),
])


def _best(**values: list[float]) -> list[dict[str, Any]]:
    return [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]


def test_bounds_the_best_trials_gather_at_with_a_wider_one() -> None:
    best = _best(lr=[0.1, 0.099, 0.098, 0.01, 0.1], dropout=[0.0, 0.001, 0.3, 0.0, 0.005], units=[64, 64, 63, 20, 64])
    found = {(b.parameter, b.side): b for b in at_bounds(SPACE, best, completed=20)}
    assert set(found) == {("lr", "high"), ("units", "high")}  # dropout's 0 has no room below: no warning
    assert found["lr", "high"].suggested == 0.2 and found["lr", "high"].count == 4  # log scale: twice as far
    assert found["units", "high"].suggested == 88  # linear: half the range further
    assert str(found["lr", "high"]) == "lr: 4 of the 5 best trials at its high bound 0.1; try up to 0.2"
    assert at_bounds(SPACE, best, completed=9) == []  # too early to say
    assert at_bounds(SPACE, best[:4], completed=20) == []


def test_a_search_whose_optimum_lies_beyond_a_bound_says_so(client: Any, root: Path) -> None:
    from candle_lab.ui.app import _summary_html
    from candle_lab.ui.state import ExperimentMonitor

    space = [{"name": "lr", "type": "real", "low": 1e-4, "high": 1e-2, "log": True},
             {"name": "x", "type": "real", "low": 0.0, "high": 1.0}]
    spec = model_spec("edge", space, search={"algorithm": "async-bo", "initial_points": 6, "seed": 1},
                      budget={"max_trials": 18})
    exp = candle_lab.run(spec, client=client, root=root)
    events = [e[3] for e in exp.events(["boundary"])]
    assert [(e["parameter"], e["side"], e["suggested"]) for e in events] == [("lr", "high", 0.02)]  # once
    board = ExperimentMonitor(path=str(exp.path))
    summary = _summary_html(board, board.usage())
    assert "best trials at its high bound 0.01; try up to 0.02" in summary
    board.close()
