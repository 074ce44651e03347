"""The runs of an uncertainty-quantification ensemble: every member of every configuration.

``bootstrap``: ``members`` runs per configuration, run id ``C<trial>_M<member>``, each with
its own resampling seed; ``dropout``: one run per configuration (``C<trial>_MC``) that
predicts ``members`` times with dropout on. The seed, the method and the number of passes
travel in each proposal's ``origin`` (the store keeps them; the worker reads them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.spec import EnsembleSpec


def ensemble_runs(ensemble: EnsembleSpec) -> list[Proposal]:
    out = []
    for config in ensemble.configs:
        count = ensemble.members if ensemble.method == "bootstrap" else 1
        seeds = np.random.default_rng([ensemble.seed, config.trial_id]).integers(0, 2**31 - 1, count)
        for member, seed in enumerate(seeds):
            run = f"C{config.trial_id:04d}_" + (f"M{member:02d}" if ensemble.method == "bootstrap" else "MC")
            origin = {
                "config": config.trial_id,
                "member": member,
                "method": ensemble.method,
                "seed": int(seed),
                "passes": ensemble.members if ensemble.method == "dropout" else 1,
            }
            out.append(Proposal(dict(config.params), run, origin))
    return out


class EnsembleRuns:
    adaptive = False

    def __init__(self, ensemble: EnsembleSpec) -> None:
        self._todo = ensemble_runs(ensemble)

    @property
    def exhausted(self) -> bool:
        return not self._todo

    def ask(self, n: int = 1) -> list[Proposal]:
        taken, self._todo = self._todo[:n], self._todo[n:]
        return taken

    def tell(self, observations: Sequence[Observation]) -> None:
        """Each run is fixed in advance."""

    def register(self, proposals: Sequence[Proposal]) -> None:
        done = {p.run_id for p in proposals}
        self._todo = [p for p in self._todo if p.run_id not in done]
