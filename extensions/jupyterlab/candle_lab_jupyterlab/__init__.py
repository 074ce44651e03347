"""CANDLE Lab's JupyterLab extension: the prebuilt frontend (launcher card, experiments
sidebar, dashboard tabs). Installing this package also enables the REST API of
``candle_lab.server`` and the proxied dashboard ``candle-lab-app``."""

from __future__ import annotations

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "candle-lab-jupyterlab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "candle_lab.server"}]
