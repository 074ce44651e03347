"""CANDLE benchmark modules, run unchanged.

A benchmark module has ``initialize_parameters(default_model=...)`` and ``run(params)``
and ships a ``default_model.txt`` INI file. Parameter precedence is CANDLE's: library
defaults < default model file < ``--config_file`` < the search's per-trial values.

A module that does ``import candle`` gets the real CANDLE library when it is installed,
else candle_lab's compatible subset (:mod:`candle_lab.compat.candle`); its
``candle.finalize_parameters(bmk)`` merges the trial's search values and run information
itself (command line < search values < run information).
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib
import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from candle_lab.errors import CandleLabError, SpecError
from candle_lab.store.layout import FINAL_PARAMS_FILE

log = logging.getLogger(__name__)


# CANDLE's library defaults (the keywords every benchmark can rely on).
LIBRARY_DEFAULTS: dict[str, Any] = {
    "experiment_id": "EXP000",
    "run_id": "RUN000",
    "output_dir": ".",
    "rng_seed": 7102,
    "timeout": -1,
    "shuffle": False,
    "train_bool": True,
    "verbose": None,
    "logfile": None,
    "gpus": [],
}


def parse_value(text: str) -> Any:
    """A default-model value: a Python literal (``ast.literal_eval``), else the raw text."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def read_default_model(path: str | Path) -> dict[str, Any]:
    """All sections of a CANDLE default model (INI) file merged into one dict (as in CANDLE,
    the first occurrence of a keyword wins)."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise SpecError.one("model.default_model", f"file not found: {path}") from None
    except configparser.Error as exc:
        raise SpecError.one("model.default_model", f"{path} is not a valid INI file: {exc}") from None
    values: dict[str, Any] = {}
    for section in parser.sections():
        for key, raw in parser.items(section):
            values.setdefault(key, parse_value(raw))
    return values


def _model_file(path: str | Path | None) -> dict[str, Any]:
    """A config file's values; none without a file."""
    return read_default_model(path) if path else {}


Layer = Literal["command line", "search"]
# (layer, name, value, the value it overrides) -> the value to keep
Convert = Callable[[Layer, str, Any, Any], Any]


def merge_parameters(
    default_model: Mapping[str, Any],
    config_file: Mapping[str, Any] | None = None,
    *,
    command_line: Mapping[str, Any] | None = None,
    search: Mapping[str, Any] | None = None,
    run_info: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] = LIBRARY_DEFAULTS,
    convert: Convert | None = None,
) -> dict[str, Any]:
    """CANDLE's parameter precedence, the one place it is applied. Lowest first: ``defaults``
    (CANDLE's library defaults) < the default model file < ``--config_file`` < the command
    line (``--name value``) < the trial's values from the search < the trial's run
    information (``output_dir``, ``run_id``, ``experiment_id``, ``timeout``).

    A pure function of values already read. ``convert`` gives command-line and search
    values the keyword's type (files are converted as they are read)."""
    params = {**defaults, **default_model, **(config_file or {})}
    layers: tuple[tuple[Layer, Mapping[str, Any] | None], ...] = (("command line", command_line), ("search", search))
    for layer, values in layers:
        for name, value in (values or {}).items():
            params[name] = value if convert is None else convert(layer, name, value, params.get(name))
    params.update(run_info or {})
    return params


def finalize_parameters(
    default_model: str | Path,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """CANDLE's precedence (:func:`merge_parameters`), for benchmark modules'
    ``initialize_parameters``: ``overrides`` (the command line's or a trial's values) win."""
    return merge_parameters(read_default_model(default_model), _model_file(config_file), command_line=overrides)


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    """Benchmarks parse ``sys.argv``; give them their own, not the dask worker's."""
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def run_candle_module(
    model: Mapping[str, Any],
    params: Mapping[str, Any],
    run_dir: Path,
    run_info: Mapping[str, Any],
    before_run: Callable[[], None] | None = None,
) -> Any:
    """Import the benchmark, build its parameters, write them to the run folder, run it."""
    from candle_lab.compat import install_candle, trial_parameters
    from candle_lab.models.callable import ensure_path

    install_candle()  # ``import candle`` without a CANDLE installation: the compatible subset
    ensure_path(model.get("path"))
    module = importlib.import_module(str(model["ref"]))
    for name in ("initialize_parameters", "run"):
        if not callable(getattr(module, name, None)):
            raise CandleLabError(f"model.ref: benchmark module {module.__name__!r} has no {name}() function")
    module_dir = Path(module.__file__ or ".").resolve().parent
    default_model = model.get("default_model") or str(module_dir / "default_model.txt")
    config_file = model.get("config_file")

    argv = [str(module.__file__)] + (["--config_file", str(config_file)] if config_file else [])
    init = module.initialize_parameters
    accepted = inspect.signature(init).parameters.get("default_model")
    # No model.default_model and no default_model.txt: the module's own default (nt3_default_model.txt).
    own_default = accepted is not None and accepted.default is not inspect.Parameter.empty
    if accepted is None or (own_default and not model.get("default_model") and not Path(default_model).is_file()):
        kwargs: dict[str, Any] = {}
    else:
        kwargs = {"default_model": default_model}
    with _argv(argv), trial_parameters(params, run_info) as trial:
        base = init(**kwargs)
    if trial.finalized:
        # The module called candle.finalize_parameters (the compatible subset), which merged
        # the config file, the search's values and the run information already.
        final = dict(base) if isinstance(base, Mapping) else dict(trial.finalized[-1])
    else:
        final = merge_parameters(dict(base or {}), _model_file(config_file), search=params, run_info=run_info)
    (run_dir / FINAL_PARAMS_FILE).write_text(json.dumps(final, indent=2, default=str), encoding="utf-8")
    log.debug("running %s with %s", module.__name__, final)
    if before_run is not None:
        before_run()
    return module.run(final)


def command_line_overrides(args: Sequence[str]) -> dict[str, Any]:
    """``--name value`` pairs, values as Python literals when they parse (CANDLE's CLI)."""
    out: dict[str, Any] = {}
    for flag, text in zip(args[::2], args[1::2], strict=False):
        out[flag.lstrip("-")] = parse_value(text)
    return out


def benchmark_main(
    initialize_parameters: Callable[..., dict[str, Any]],
    run: Callable[[dict[str, Any]], Any],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> Any:
    """Run a benchmark module from the command line, as CANDLE benchmarks run:
    ``python nt3_baseline.py --config_file my.txt --epochs 3``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config_file", help="a model file overriding default_model.txt")
    args, rest = parser.parse_known_args(argv)
    params = initialize_parameters(config_file=args.config_file, overrides=command_line_overrides(rest))
    history = run(params)
    losses = getattr(history, "history", {}).get("val_loss", [])
    sys.stdout.write(f"val_loss per epoch: {[round(float(v), 4) for v in losses]}\n")
    return history
