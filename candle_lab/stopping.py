"""Early stopping of unpromising trials, decided by the driver from live metrics.

Both rules see a trial's metric (as a loss: lower is better) at epoch boundaries and
answer whether to stop it there:

* median: stop a trial whose best value so far is worse than the median of the other
  trials' best values at the same epoch (Vizier's median stopping rule);
* ASHA: rungs at ``grace * eta**k`` epochs; a trial reaching a rung continues only if it
  is in the best ``1/eta`` of the trials that reached that rung (asynchronous successive
  halving, stopping form).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Protocol


class StoppingRule(Protocol):
    def should_stop(self, trial_id: int, step: int, loss: float) -> bool: ...


class MedianRule:
    def __init__(self, grace_steps: int = 2, min_trials: int = 3) -> None:
        self.grace_steps = grace_steps
        self.min_trials = min_trials
        self._best: dict[int, dict[int, float]] = defaultdict(dict)  # step -> trial -> best so far
        self._running_best: dict[int, float] = {}

    def should_stop(self, trial_id: int, step: int, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        best = min(loss, self._running_best.get(trial_id, math.inf))
        self._running_best[trial_id] = best
        self._best[step][trial_id] = best
        others = [v for t, v in self._best[step].items() if t != trial_id]
        if step < self.grace_steps or len(others) < self.min_trials:
            return False
        others.sort()
        mid = len(others) // 2
        median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
        return best > median


class AshaRule:
    def __init__(self, grace_steps: int = 1, eta: int = 3) -> None:
        self.grace_steps = max(1, grace_steps)
        self.eta = max(2, eta)
        self._rungs: dict[int, list[float]] = defaultdict(list)

    def rung_steps(self, up_to: int) -> list[int]:
        steps, s = [], self.grace_steps
        while s <= up_to:
            steps.append(s)
            s *= self.eta
        return steps

    def should_stop(self, trial_id: int, step: int, loss: float) -> bool:
        if step not in self.rung_steps(step) or not math.isfinite(loss):
            return False
        values = self._rungs[step]
        values.append(loss)
        if len(values) < self.eta:
            return False  # too few trials at this rung to judge
        keep = max(1, len(values) // self.eta)
        cutoff = sorted(values)[keep - 1]
        return loss > cutoff


def make_rule(kind: str, grace_steps: int, min_trials: int, eta: int) -> StoppingRule | None:
    if kind == "median":
        return MedianRule(grace_steps, min_trials)
    if kind == "asha":
        return AshaRule(grace_steps, eta)
    return None
