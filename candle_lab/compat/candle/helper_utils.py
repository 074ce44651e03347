"""CANDLE's helper functions: ``str2bool``, ``set_seed``, ``verify_path``,
``keras_default_config``, ``fetch_file``, ``set_up_logger``."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from typing import Any

_TRUE = ("yes", "true", "t", "y", "1")
_FALSE = ("no", "false", "f", "n", "0")


def str2bool(v: Any) -> bool:
    """CANDLE's boolean parameter type: ``yes/true/t/y/1`` and ``no/false/f/n/0`` (any
    case); a bool stays as it is. Anything else raises ``argparse.ArgumentTypeError``."""
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"Boolean value expected (one of {', '.join(_TRUE + _FALSE)}), got {v!r}")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and (when loaded) Keras', TensorFlow's and PyTorch's random
    generators; ``PYTHONHASHSEED=0`` for processes started later."""
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = "0"
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
    elif "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def verify_path(path: str | os.PathLike[str]) -> None:
    """Create the folder of ``path`` (a file's path) if it does not exist."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)


def keras_default_config() -> dict[str, Any]:
    """CANDLE's defaults of optimizer and initializer settings (Keras' own defaults)."""
    return {
        "decay_lr": 0.0,
        "epsilon": 1e-8,
        "rho": 0.9,
        "momentum_sgd": 0.0,
        "nesterov_sgd": False,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "decay_schedule_lr": 0.004,
        "minval_uniform": -0.05,
        "maxval_uniform": 0.05,
        "mean_normal": 0.0,
        "stddev_normal": 0.05,
    }


def fetch_file(
    link: str,
    subdir: str,
    untar: bool = False,
    md5_hash: str | None = None,
    unpack: bool | None = None,
) -> str:
    """Download ``link`` into the cache folder ``subdir`` unless it is there already
    (see :func:`~candle_lab.compat.candle.file_utils.get_file`); returns its local path."""
    from candle_lab.compat.candle.file_utils import get_file

    fname = os.path.basename(link)
    return get_file(fname, origin=link, untar=untar, md5_hash=md5_hash, cache_subdir=subdir, unpack=unpack)


def set_up_logger(logfile: str, logger: logging.Logger, verbose: bool) -> None:
    """CANDLE's logging set-up: everything to ``logfile``, INFO (DEBUG if ``verbose``) to
    stderr."""
    verify_path(logfile)
    fh = logging.FileHandler(logfile)
    fh.setFormatter(logging.Formatter("[%(asctime)s %(process)d] %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    fh.setLevel(logging.DEBUG)
    sh = logging.StreamHandler()
    sh.setFormatter(logging.Formatter(""))
    sh.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(fh)
    logger.addHandler(sh)
