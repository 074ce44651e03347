"""Experiment folders and their SQLite store."""

from candle_lab.store.db import FINAL_STATES, Store, TrialRecord, TrialState
from candle_lab.store.layout import (
    DB_NAME,
    REQUESTS,
    SPEC_NAME,
    default_run_id,
    experiments_root,
    find_experiment,
    list_experiments,
    new_experiment_dir,
    run_dir_name,
)

__all__ = [
    "DB_NAME",
    "FINAL_STATES",
    "REQUESTS",
    "SPEC_NAME",
    "Store",
    "TrialRecord",
    "TrialState",
    "default_run_id",
    "experiments_root",
    "find_experiment",
    "list_experiments",
    "new_experiment_dir",
    "run_dir_name",
]
