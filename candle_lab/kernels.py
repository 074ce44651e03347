"""The Jupyter kernel "CANDLE Lab (TensorFlow)": this environment, or a container image."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KERNEL_NAME = "candle-lab"
DISPLAY_NAME = "CANDLE Lab (TensorFlow)"


def kernelspec(python: str | None = None, container: str | None = None) -> dict[str, Any]:
    """The ``kernel.json`` content: the kernel runs this Python, or inside ``container``."""
    launcher = [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if container:
        launcher = ["apptainer", "exec", "--nv", container, "python3", *launcher[1:]]
    return {
        "argv": launcher,
        "display_name": DISPLAY_NAME,
        "language": "python",
        "env": {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2"},
        "metadata": {"debugger": True, "candle_lab": {"container": container}},
    }


def kernels_dir(user: bool = True, prefix: str | None = None) -> Path:
    """Where Jupyter looks for kernels: ``PREFIX/share/jupyter/kernels`` or the user's data dir."""
    if prefix:
        return Path(prefix) / "share" / "jupyter" / "kernels"
    if user:
        data = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
            os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "jupyter"
        )
        return Path(data) / "kernels"
    return Path(sys.prefix) / "share" / "jupyter" / "kernels"


def install_kernel(
    user: bool = True, prefix: str | None = None, container: str | None = None, name: str = KERNEL_NAME
) -> Path:
    """Write the kernelspec; returns its folder."""
    folder = kernels_dir(user, prefix) / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = kernelspec(container=container)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    log.info("kernel %r installed in %s: %s", DISPLAY_NAME, folder, shlex.join(spec["argv"]))
    return folder
