"""jupyter-server-proxy entry: the Panel app at ``<base_url>candle-lab-app/``.

jupyter-server-proxy starts ``candle-lab dashboard`` on a free loopback port the first
time the path is requested; the Jupyter server's login guards it, and the app reads the
experiments folder the server extension chose (``$CANDLE_LAB_HOME``)."""

from __future__ import annotations

import sys
from typing import Any

NAME = "candle-lab-app"


def dashboard() -> dict[str, Any]:
    return {
        "command": [sys.executable, "-m", "candle_lab.cli", "dashboard", "--port", "{port}",
                    "--prefix", "{base_url}" + NAME],
        "absolute_url": True,  # Panel serves under the full prefix itself
        "timeout": 60,
        "launcher_entry": {"enabled": False},  # the extension has its own launcher card
    }
