"""CANDLE's parameter handling: ``finalize_parameters(bmk)`` and the keywords every
benchmark may use.

Precedence, lowest first: library defaults (with the ``default`` of each of the
benchmark's ``additional_definitions``) < the default model file < ``--config_file`` <
the command line (``--name value``) < the trial's values from the search < the trial's
run information (``output_dir``, ``run_id``, ``experiment_id``, ``timeout``). Unlike the
CANDLE library, a config file is layered over the default model file (a config file
that names every keyword behaves identically), and the ``default`` of a definition never
overrides a file.

Values are converted to each definition's ``type``; list-typed keywords (``nargs``: e.g.
``dense``, ``conv``) accept CANDLE's space-separated convention, ``"500 100 50"`` ->
``[500, 100, 50]``, from a file, the command line or the search (as CANDLE Supervisor's
model runner does with ``dense``).
"""

from __future__ import annotations

import argparse
import logging
import os
import pprint
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle_lab.compat.candle.file_utils import directory_from_parameters
from candle_lab.compat.candle.helper_utils import str2bool
from candle_lab.compat.context import current_trial_parameters
from candle_lab.errors import SpecError, expected_got
from candle_lab.models.candle import LIBRARY_DEFAULTS, Layer, merge_parameters, parse_value

if TYPE_CHECKING:
    from candle_lab.compat.candle.benchmark_def import Benchmark

log = logging.getLogger(__name__)

FINAL_PARAMS_FILE = "final_params.txt"
DEFAULT_OUTPUT_ROOT = "Output"


def _d(name: str, type: Any = str, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": type, **more}


# CANDLE's registered keywords (types for the command line and for conversions).
REGISTERED_CONF: list[dict[str, Any]] = [
    # basic
    _d("config_file"),
    _d("data_type", choices=["f16", "f32", "f64"]),
    _d("rng_seed", int),
    _d("train_bool", str2bool),
    _d("eval_bool", str2bool),
    _d("timeout", int),
    _d("gpus", int, nargs="*"),
    _d("profiling", str2bool),
    # input / output
    _d("save_path"),
    _d("model_name"),
    _d("home_dir"),
    _d("train_data"),
    _d("val_data"),
    _d("test_data"),
    _d("output_dir"),
    _d("data_url"),
    _d("data_dir"),
    _d("experiment_id"),
    _d("run_id"),
    # logging
    _d("verbose", str2bool),
    _d("logfile"),
    # data preprocessing
    _d("scaling", choices=["minabs", "minmax", "std", "none"]),
    _d("shuffle", str2bool),
    _d("feature_subsample", int),
    # model
    _d("dense", int, nargs="+"),
    _d("conv", int, nargs="+"),
    _d("locally_connected", str2bool),
    _d("activation"),
    _d("out_activation"),
    _d("lstm_size", int, nargs="+"),
    _d("recurrent_dropout", float),
    _d("dropout", float),
    _d("pool", int),
    _d("batch_normalization", str2bool),
    _d("loss"),
    _d("optimizer"),
    _d("metrics"),
    # training
    _d("epochs", int),
    _d("batch_size", int),
    _d("learning_rate", float),
    _d("early_stop", str2bool),
    _d("momentum", float),
    _d(
        "initialization",
        choices=["constant", "uniform", "normal", "glorot_uniform", "glorot_normal", "lecun_uniform", "he_normal"],
    ),
    _d("val_split", float),
    _d("train_steps", int),
    _d("val_steps", int),
    _d("test_steps", int),
    _d("train_samples", int),
    _d("val_samples", int),
    # cyclic learning rate
    _d("clr_flag", str2bool),
    _d("clr_mode", choices=["trng1", "trng2", "exp"]),
    _d("clr_base_lr", float),
    _d("clr_max_lr", float),
    _d("clr_gamma", float),
    # checkpoints (the keywords only: checkpointing itself is not provided)
    _d("ckpt_restart_mode", choices=["off", "auto", "required"]),
    _d("ckpt_checksum", str2bool),
    _d("ckpt_skip_epochs", int),
    _d("ckpt_directory"),
    _d("ckpt_save_best", str2bool),
    _d("ckpt_save_best_metric"),
    _d("ckpt_save_weights_only", str2bool),
    _d("ckpt_save_interval", int),
    _d("ckpt_keep_mode", choices=["linear", "exponential"]),
    _d("ckpt_keep_limit", int),
]

PARAMETERS_CANDLE: list[str] = [d["name"] for d in REGISTERED_CONF]

CONFLICT_LIST: list[list[str]] = [["clr_flag", "warmup_lr"], ["clr_flag", "reduce_lr"]]

_DATA_TYPES = ("f16", "f32", "f64")


class ArgumentStruct:
    """A dict's entries as attributes: ``ArgumentStruct(**params).epochs``."""

    def __init__(self, **entries: Any) -> None:
        self.__dict__.update(entries)


class ListOfListsAction(argparse.Action):
    """``--name 1,2:3,4`` -> ``[[1, 2], [3, 4]]`` (CANDLE's ``action: 'list-of-lists'``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, type: Any = None, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.dtype = type or int

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, parse_list_of_lists(str(values), self.dtype))


def parse_list_of_lists(text: str, dtype: Any = None) -> list[list[Any]]:
    """``"[1,2]:[3,4]"`` -> ``[[1, 2], [3, 4]]`` (lists separated by ``:``, items by ``,``)."""
    cast = dtype or int
    text = text.replace("[", "").replace("]", "")
    return [[cast(item.strip()) for item in part.split(",") if item.strip()] for part in text.split(":")]


def split_list(value: str) -> list[Any]:
    """CANDLE's list convention: ``"500 100 50"`` (or ``"500,100"``, ``"[500, 100]"``) ->
    the items (literals when they parse, else strings)."""
    parsed = parse_value(value)
    if isinstance(parsed, list | tuple):
        return list(parsed)
    text = value.strip().strip("[]()")
    return [parse_value(item) for item in text.replace(",", " ").split()]


def _is_list_def(definition: Mapping[str, Any]) -> bool:
    return definition.get("nargs") not in (None, "?")


def _type_name(kind: Any) -> str:
    return str(getattr(kind, "__name__", kind))


def _cast(name: str, value: Any, kind: Any, source: str | None) -> Any:
    """One value converted to a definition's ``type`` (conservatively: only strings, and
    numbers between int and float)."""
    if kind is None or value is None or not callable(kind):
        return value
    if kind is str2bool or _type_name(kind) == "str2bool":
        if isinstance(value, str | int):
            try:
                return kind(str(value) if not isinstance(value, bool) else value)
            except (argparse.ArgumentTypeError, ValueError, TypeError):
                raise SpecError.one(name, expected_got("a boolean (true/false, yes/no, 1/0)", value), source) from None
        return value
    if isinstance(value, str):
        if kind is str:
            return value
        try:
            return kind(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            if kind is int:
                try:
                    number = float(value)
                except ValueError:
                    number = float("nan")
                if number.is_integer():
                    return int(number)
            raise SpecError.one(name, expected_got(f"a value of type {_type_name(kind)}", value), source) from None
    if isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def coerce(
    name: str,
    value: Any,
    definition: Mapping[str, Any] | None,
    previous: Any = None,
    source: str | None = None,
) -> Any:
    """A parameter's value in the shape and type its definition asks for. Without a
    definition, a string replacing a list is split by CANDLE's list convention."""
    if value is None:
        return None
    if definition is None:
        if isinstance(previous, list) and isinstance(value, str):
            return split_list(value)
        return value
    kind = definition.get("type")
    if definition.get("action") in ("list-of-lists", ListOfListsAction):
        return parse_list_of_lists(value, kind) if isinstance(value, str) else value
    if _is_list_def(definition):
        if isinstance(value, str):
            items = split_list(value)
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            items = [value]
        return [_cast(name, item, kind, source) for item in items]
    if isinstance(value, list | tuple | dict):
        return value
    return _cast(name, value, kind, source)


def check_flag_conflicts(params: Mapping[str, Any]) -> None:
    """Mutually exclusive flags (``clr_flag`` with ``warmup_lr`` or ``reduce_lr``)."""
    for flags in CONFLICT_LIST:
        if sum(params.get(flag) is True for flag in flags) > 1:
            raise SpecError.one(
                " + ".join(flags), f"these flags cannot be used together, got {[params[f] for f in flags]}"
            )


def add_arguments(parser: argparse.ArgumentParser, definitions: Iterable[Mapping[str, Any]]) -> None:
    """``--name`` options for definitions (every default suppressed: an option the
    command line does not give does not override the files)."""
    for d in definitions:
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": d.get("help", ""), "dest": d["name"]}
        action = d.get("action")
        if action in ("list-of-lists", ListOfListsAction):
            kwargs.update(action=ListOfListsAction, type=d.get("type"))
        else:
            if action is not None:
                kwargs["action"] = action
            if d.get("type") is not None:
                kwargs["type"] = d["type"]
            if "nargs" in d:
                kwargs["nargs"] = d["nargs"]
            if "choices" in d:
                kwargs["choices"] = d["choices"]
        flags = [f"--{d['name']}"] + ([f"-{d['abv']}"] if d.get("abv") else [])
        parser.add_argument(*flags, **kwargs)


def _extra_arguments(rest: Sequence[str]) -> dict[str, Any]:
    """``--name value`` / ``--name=value`` pairs no definition knows (kept, with a warning)."""
    out: dict[str, Any] = {}
    ignored: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("--") and len(token) > 2:
            name, eq, text = token[2:].partition("=")
            if not eq and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                text, eq = rest[i + 1], "="
                i += 1
            out[name] = parse_value(text) if eq else True
        else:
            ignored.append(token)
        i += 1
    if out:
        log.warning("command-line parameters not defined by CANDLE or the benchmark (kept): %s", sorted(out))
    if ignored:
        log.warning("command-line arguments ignored: %s", ignored)
    return out


def _resolve_config_file(value: Any, bmk: Benchmark) -> Path:
    path = Path(os.fspath(value)).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, Path(os.fspath(bmk.file_path)) / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise SpecError.one("config_file", f"file not found: {where}", f"parameters of benchmark {type(bmk).__name__}")


def _warn_unknown(values: Mapping[str, Any], known: set[str], path: str | os.PathLike[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        log.warning("%s: keywords not defined by CANDLE or by the benchmark: %s", path, unknown)


def _check_choices(params: Mapping[str, Any], definitions: Mapping[str, Mapping[str, Any]], source: str) -> None:
    problems: list[tuple[str, str]] = []
    for name, d in definitions.items():
        choices = d.get("choices")
        value = params.get(name)
        if not choices or value is None:
            continue
        items = value if isinstance(value, list) and _is_list_def(d) else [value]
        bad = [item for item in items if item not in choices]
        if bad:
            problems.append((name, expected_got("one of " + ", ".join(map(repr, choices)), value)))
    if problems:
        raise SpecError(problems, source)


def _data_type(value: Any) -> Any:
    import numpy as np

    if value is None:
        return np.float32
    if isinstance(value, str) and value in _DATA_TYPES:
        return {"f16": np.float16, "f32": np.float32, "f64": np.float64}[value]
    return value


def _printable(value: Any) -> Any:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_printable(v) for v in value)
    return value


def write_final_params(params: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> Path:
    """``final_params.txt``: the parameters as CANDLE writes them (a pretty-printed dict;
    a Python literal, types written as their names)."""
    path = Path(output_dir) / FINAL_PARAMS_FILE
    path.write_text(pprint.pformat(_printable(dict(params)), width=100) + "\n", encoding="utf-8")
    return path


def finalize_parameters(bmk: Benchmark) -> dict[str, Any]:
    """The benchmark's parameters, merged with CANDLE's precedence (see the module's
    docstring), checked (required keywords, choices, conflicting flags), with the output
    folder created and ``final_params.txt`` written into it.

    The output folder is the trial's run folder inside a candle_lab trial, else CANDLE's
    ``<output_dir>/<experiment_id>/<run_id>`` (``Output/EXP000/RUN000`` by default;
    ``output_dir = '.'`` is the current folder itself)."""
    bmk.parse_parameters()
    definitions = bmk.definitions()
    source = f"parameters of benchmark {type(bmk).__name__}"
    trial = current_trial_parameters()
    known = set(PARAMETERS_CANDLE) | set(definitions) | set(bmk.required or ()) | set(LIBRARY_DEFAULTS)

    args, rest = bmk.parser.parse_known_args(sys.argv[1:])
    cli = dict(vars(args))
    cli.update(_extra_arguments(rest))

    # Library defaults, with the benchmark's definitions' defaults
    library: dict[str, Any] = {k: v for k, v in LIBRARY_DEFAULTS.items() if k != "output_dir"}
    for d in bmk.additional_definitions:
        if "default" in d and d["default"] is not argparse.SUPPRESS:
            library[d["name"]] = coerce(d["name"], d["default"], d, source=source)
    default_model = bmk.read_config_file(bmk.conffile)
    _warn_unknown(default_model, known, bmk.conffile)
    config: dict[str, Any] = {}
    config_file = cli.pop("config_file", None)
    if config_file:
        path = _resolve_config_file(config_file, bmk)
        config = bmk.read_config_file(path)
        _warn_unknown(config, known, path)
        config["config_file"] = str(path)

    def convert(layer: Layer, name: str, value: Any, below: Any) -> Any:
        where = source if layer == "command line" else f"search values ({source})"
        return coerce(name, value, definitions.get(name), below, where)

    params = merge_parameters(
        default_model,
        config,
        command_line=cli,
        search=trial.params if trial is not None else None,
        run_info=trial.run_info if trial is not None else None,
        defaults=library,
        convert=convert,
    )

    bmk.check_required_exists(params)
    _check_choices(params, definitions, source)
    check_flag_conflicts(params)

    params["data_type"] = _data_type(params.get("data_type"))
    if trial is not None and "output_dir" in trial.run_info:
        out = Path(os.fspath(params["output_dir"])).absolute()
        out.mkdir(parents=True, exist_ok=True)
        params["output_dir"] = str(out)
    else:
        params["output_dir"] = directory_from_parameters(params, str(params.get("output_dir") or DEFAULT_OUTPUT_ROOT))
    write_final_params(params, params["output_dir"])
    log.info("Params:\n%s", pprint.pformat(_printable(params), width=100))
    if trial is not None:
        trial.finalized.append(params)
    return params
