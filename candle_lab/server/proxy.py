"""jupyter-server-proxy entry: the Panel app at ``<base_url>candle-lab-app/``.

jupyter-server-proxy starts ``candle-lab dashboard`` the first time the path is requested,
on a Unix socket in a folder only this user can open (never a TCP port, which anyone on a
shared login node could connect to): the Jupyter server's login is the only way in. The
app reads the experiments folder the server extension chose (``$CANDLE_LAB_HOME``)."""

from __future__ import annotations

import sys
from typing import Any

NAME = "candle-lab-app"


def dashboard() -> dict[str, Any]:
    return {
        "command": [sys.executable, "-m", "candle_lab.cli", "dashboard", "--unix-socket", "{unix_socket}",
                    "--prefix", "{base_url}" + NAME],
        "unix_socket": True,  # jupyter-server-proxy makes the socket's folder with mkdtemp (0700)
        "absolute_url": True,  # Panel serves under the full prefix itself
        "timeout": 60,
        "launcher_entry": {"enabled": False},  # the extension has its own launcher card
    }
