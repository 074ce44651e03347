"""candle_lab's compatible subset of the CANDLE library, imported as ``candle``.

Used only when no real CANDLE library is installed (see :func:`candle_lab.compat.install_candle`):
unchanged CANDLE benchmark modules (``import candle``, a ``candle.Benchmark`` subclass,
``candle.finalize_parameters(bmk)``) then run in candle_lab trials and standalone.

Provided:

* ``Benchmark`` (``required``, ``additional_definitions``, ``set_locals``, the default
  model file) and ``finalize_parameters(bmk)``: library defaults < default model file <
  ``--config_file`` < command line < the trial's search values; the output folder
  (``output_dir/experiment_id/run_id``) with ``final_params.txt``;
* ``ArgumentStruct``, ``check_flag_conflicts``, ``str2bool``, ``verify_path``,
  ``set_up_logger``, ``set_seed``, ``keras_default_config``;
* ``get_file``, ``fetch_file``, ``validate_file`` (download once into a cache, md5 check,
  unpack archives), ``directory_from_parameters``;
* with Keras (imported on first use): ``TerminateOnTimeOut``, ``CandleRemoteMonitor``
  (does nothing: candle_lab reports every epoch itself), ``build_optimizer``,
  ``build_initializer``, ``compute_trainable_params``, ``set_parallelism_threads``.

Not provided (using one raises :class:`~candle_lab.compat.names.CandleNotProvided`,
saying so): the data loaders (``load_csv_data``, ...), plots, uncertainty
quantification, cyclic learning rates, checkpointing (``CandleCkptKeras``, ...),
``Progbar``, PyTorch utilities and the rest listed in
:data:`candle_lab.compat.names.NOT_PROVIDED`.
"""

from __future__ import annotations

import importlib
from typing import Any

from candle_lab.compat.candle.benchmark_def import Benchmark
from candle_lab.compat.candle.file_utils import directory_from_parameters, get_file, validate_file
from candle_lab.compat.candle.helper_utils import (
    fetch_file,
    keras_default_config,
    set_seed,
    set_up_logger,
    str2bool,
    verify_path,
)
from candle_lab.compat.candle.parsing_utils import ArgumentStruct, check_flag_conflicts, finalize_parameters
from candle_lab.compat.names import NOT_PROVIDED, PROVIDED, PROVIDED_KERAS, CandleNotProvided
from candle_lab.errors import did_you_mean

name = "candle"
__version__ = "0.0.1+candle_lab.compat"

# Every provided name (the Keras ones load on first use), for ``from candle import *``.
__all__ = [
    "ArgumentStruct",
    "Benchmark",
    "CandleCheckpointCallback",
    "CandleCkptKeras",
    "CandleRemoteMonitor",
    "TerminateOnTimeOut",
    "build_initializer",
    "build_optimizer",
    "check_flag_conflicts",
    "compute_trainable_params",
    "directory_from_parameters",
    "fetch_file",
    "finalize_parameters",
    "get_file",
    "keras_default_config",
    "restart",
    "set_parallelism_threads",
    "set_seed",
    "set_up_logger",
    "str2bool",
    "validate_file",
    "verify_path",
]

_KERAS_MODULE = "candle_lab.compat.candle.keras_utils"


def __getattr__(attr: str) -> Any:
    if attr in PROVIDED_KERAS:
        value = getattr(importlib.import_module(_KERAS_MODULE), attr)
        globals()[attr] = value
        return value
    if attr in NOT_PROVIDED:
        raise CandleNotProvided(attr)
    hint = "" if attr.startswith("_") else did_you_mean(attr, PROVIDED)
    raise AttributeError(f"module 'candle' (candle_lab's CANDLE compatibility subset) has no attribute {attr!r}{hint}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PROVIDED))
