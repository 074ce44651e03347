"""Jupyter server extension: an authenticated REST API over the experiment store.

Routes (under the server's base URL):

    GET  candle-lab/api/info                                 version, experiments folder, dashboard URL
    GET  candle-lab/api/experiments                          every experiment: status, progress, best
    POST candle-lab/api/experiments                          submit a spec (JSON body) -> 201
    GET  candle-lab/api/experiments/EXP003                   status, spec, trials
    GET  candle-lab/api/experiments/EXP003/report            its HTML report (written when out of date)
    POST candle-lab/api/experiments/EXP003/stop              stop the search
    POST candle-lab/api/experiments/EXP003/trials/7/stop     stop one trial

Experiments live in ``$CANDLE_LAB_HOME`` or ``<server root>/experiments``; relative model
paths in submitted specs are taken from the server's root directory. The live dashboard
(the Panel app) is served through jupyter-server-proxy at ``candle-lab-app/``.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "candle_lab.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from candle_lab.server.handlers import setup_handlers

    setup_handlers(serverapp)
