"""The dashboard server's start: what it loads beside its loop must not race a session."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("panel")

PROBE = textwrap.dedent(
    """
    import sys, threading
    from candle_lab.ui import server

    seen = {}
    start = threading.Thread.start

    def recording(self):
        if self.name == "candle-lab-preload":
            seen.update((m, m in sys.modules) for m in ("narwhals.stable.v1", "narwhals.stable.v2"))
        start(self)

    threading.Thread.start = recording
    srv, url, _ = server.start_server(server.ServeOptions(root=sys.argv[1], port=0))
    print(sorted(m for m, loaded in seen.items() if not loaded) if seen else "no preload thread")
    """
)


def test_the_preload_thread_starts_after_what_it_shares_with_a_session(tmp_path: Path) -> None:
    """plotly (preloaded on a thread) and Bokeh (a session's first table) both import
    narwhals, whose two stable APIs import each other: imported at once, the first page
    after a start failed with a _DeadlockError (two CI runs). The server loads it first."""
    probe = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "[]"  # nothing left for the two threads to race on
