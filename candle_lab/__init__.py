"""candle_lab: hyperparameter optimization for health and cancer research on HPC clusters.

Quick use::

    import candle_lab
    exp = candle_lab.run("gallery/digits_sklearn/experiment.yaml")
    exp.best, exp.trials
"""

from __future__ import annotations

from candle_lab.api import Experiment, ensemble, open_experiment, resume, run
from candle_lab.errors import CandleLabError, SpecError
from candle_lab.spec import ExperimentSpec, load_spec, spec_from_dict
from candle_lab.trial.context import current_trial, report
from candle_lab.trial.predictions import report_predictions

__version__ = "0.1.0"

__all__ = [
    "CandleLabError",
    "Experiment",
    "ExperimentSpec",
    "SpecError",
    "current_trial",
    "ensemble",
    "load_spec",
    "open_experiment",
    "report",
    "report_predictions",
    "resume",
    "run",
    "spec_from_dict",
]
