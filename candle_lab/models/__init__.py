"""Model adapters: how one trial runs the researcher's model.

``callable``: ``module:function`` called with the parameters; ``candle``: a CANDLE
benchmark module run unchanged; ``command``: a script with the parameters as a JSON file
and ``--name value`` arguments. A Keras model fitted inside any of them reports its
epochs live (see :mod:`candle_lab.keras`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle_lab.models.callable import load_callable
from candle_lab.models.results import ModelResult, interpret

if TYPE_CHECKING:
    from candle_lab.trial.protocol import TrialTask

__all__ = ["ModelResult", "interpret", "run_model"]


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Installs the live-metrics ``fit`` hook the moment a model imports Keras."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if loader is not None and hasattr(loader, "exec_module"):
            exec_module = loader.exec_module

            def exec_then_hook(module: Any) -> None:
                exec_module(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                _install_now()

            loader.exec_module = exec_then_hook  # type: ignore[method-assign]
        return spec


def _install_now() -> None:
    from candle_lab.keras import install_fit_hook

    install_fit_hook()


def _hook_keras() -> None:
    """Live Keras metrics for whatever the model fits: now if Keras is loaded, else on import."""
    if "keras" in sys.modules:
        _install_now()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


def _call(fn: Any, params: dict[str, Any]) -> Any:
    """``fn(params)``; ``fn(params, checkpoint=...)`` in a PBT trial when it takes one."""
    from candle_lab.trial.checkpoint import current_checkpoint
    from candle_lab.trial.context import current_trial

    checkpoint = current_checkpoint()
    if checkpoint is not None and _takes_checkpoint(fn):
        ctx = current_trial()
        if ctx is not None:
            ctx.checkpoint_by_model = True
        checkpoint.resend()
        return fn(params, checkpoint=checkpoint)
    return fn(params)


def _takes_checkpoint(fn: Any) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "checkpoint" in parameters


def run_model(task: TrialTask, run_dir: Path) -> Any:
    """Run the trial's model with its parameters; returns what the model returned."""
    params = dict(task.params)
    model = task.model
    kind = model.get("kind", "callable")
    if task.fn is not None or kind == "callable":
        fn = task.fn if task.fn is not None else load_callable(str(model["ref"]), model.get("path"))
        _hook_keras()
        return _call(fn, params)
    if kind == "candle":
        from candle_lab.models.candle import run_candle_module

        info: dict[str, Any] = {"run_id": task.run_id, "experiment_id": run_dir.parent.name, "output_dir": str(run_dir)}
        if task.timeout is not None:
            info["timeout"] = task.timeout
        return run_candle_module(model, params, run_dir, info, before_run=_hook_keras)
    from candle_lab.models.command import run_command

    return run_command(model, params, run_dir, task.timeout)
