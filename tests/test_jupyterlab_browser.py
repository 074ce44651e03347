"""The JupyterLab extension in a real JupyterLab and a real headless Chromium (Debian's,
driven by Playwright): launcher card, experiments sidebar, dashboard tabs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, jupyterlab_server
from conftest import REPO, model_spec

from candle_lab import api

pytest.importorskip("jupyterlab")
pytest.importorskip("playwright")

SHOTS = REPO / "test-artifacts" / "screenshots"
GANTT_BARS = """() => {
    for (const doc of (window.Bokeh ? Bokeh.documents : [])) {
        const src = doc.get_model_by_name("gantt");
        if (src) { const c = Object.values(src.data); return c.length ? c[0].length : 0; }
    }
    return -1;
}"""


def test_extension_is_installed_and_enabled() -> None:
    listed = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True,
                            text=True)
    text = listed.stdout + listed.stderr
    assert "candle-lab-jupyterlab v0.1.0" in text and "enabled" in text and "OK" in text, text


@pytest.fixture
def running(tmp_path: Path) -> Iterator[api.Experiment]:
    spec = model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 0, "high": 1},
                                       {"name": "sleep", "type": "constant", "value": 2.0}],
                      budget={"max_trials": 100}, compute={"workers": 1}, name="lab-running")
    exp = api.run(spec, wait=False, root=tmp_path / "experiments")
    yield exp
    exp.stop()
    exp.wait(timeout=60)


def test_launcher_sidebar_and_dashboard_tab(running: api.Experiment, tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab_server(tmp_path, tmp_path / "experiments") as (url, token), chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{url}/lab?reset&token={token}")
        card = page.locator(".jp-LauncherCard", has_text="CANDLE Lab")
        card.wait_for(timeout=90_000)
        page.screenshot(path=SHOTS / "jupyterlab-launcher.png")

        card.click()  # the app opens in a main-area tab, served through jupyter-server-proxy
        app = page.frame_locator(".candle-lab-dashboard iframe").first
        app.get_by_role("button", name="Submit experiment").wait_for(timeout=90_000)
        page.screenshot(path=SHOTS / "jupyterlab-new-experiment.png")

        page.locator(".lm-TabBar-tab[data-id='candle-lab-experiments']").click()
        item = page.locator(f".candle-lab-experiment[data-id='{running.id}']")
        item.wait_for(timeout=30_000)
        _wait(lambda: item.get_attribute("data-state") == "running", 60, "the experiment running in the sidebar", page)
        assert "lab-running" in item.inner_text()
        # the metric with its direction, the algorithm and how long it has run, a report link
        _wait(lambda: re.search(r"best loss ↓ \d", item.inner_text()) is not None, 60, "a best loss", page)
        counts = item.locator(".candle-lab-experiment-counts").inner_text()
        assert re.fullmatch(r"\d+/100 trials · [01] running · best loss ↓ [\d.e+-]+", counts), counts
        search = item.locator(".candle-lab-experiment-search").inner_text()
        assert re.fullmatch(r"random · \d+\.\d (s|min)", search), search
        link = item.locator("a.candle-lab-report")
        assert link.get_attribute("href") == f"{url}/candle-lab/api/experiments/{running.id}/report"
        assert link.get_attribute("target") == "_blank"
        with page.context.expect_page(timeout=60_000) as opened:
            link.click()
        report = opened.value
        report.wait_for_load_state(timeout=60_000)
        assert f"candle_lab report: {running.id}" in report.locator("h1").inner_text()
        report.locator(".plotly-graph-div").first.wait_for(timeout=30_000)  # plotly ran (sandboxed, same file)
        report.close()
        page.bring_to_front()  # a page behind another tab draws no frames: screenshots would wait
        page.wait_for_timeout(500)
        dashboard_tab = page.locator(".lm-TabBar-tab", has_text=f"CANDLE Lab: {running.id}")
        assert dashboard_tab.count() == 0  # the link's click did not also open the dashboard
        page.screenshot(path=SHOTS / "jupyterlab-sidebar.png")

        item.click()
        page.locator(".lm-TabBar-tab", has_text=f"CANDLE Lab: {running.id}").wait_for(timeout=30_000)
        _wait(lambda: _gantt_bars(page, running.id) >= 1, 90, "Gantt bars in the dashboard tab", page)
        page.screenshot(path=SHOTS / "jupyterlab-dashboard.png")


def _gantt_bars(page: Any, exp_id: str) -> int:
    for frame in page.frames:
        if f"experiment={exp_id}" in frame.url:
            try:
                return int(frame.evaluate(GANTT_BARS))
            except Exception:  # the frame is still loading
                return -1
    return -1


def _wait(predicate: Any, timeout: float, what: str, page: Any) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            page.screenshot(path=SHOTS / "jupyterlab-timed-out.png")
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(300)  # lets Playwright take in new frames (time.sleep would not)


def test_rest_answers_through_jupyterlab(tmp_path: Path, running: api.Experiment) -> None:
    import urllib.request

    with jupyterlab_server(tmp_path, tmp_path / "experiments") as (url, token):
        request = urllib.request.Request(f"{url}/candle-lab/api/experiments",
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request) as answer:
            listed = json.loads(answer.read())["experiments"]
    assert [e["id"] for e in listed] == [running.id]


PROBE = """import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    sys.exit(3)
s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
print(s.recv(100))
"""


def test_the_proxied_dashboard_has_no_listener_but_jupyter(tmp_path: Path, running: api.Experiment) -> None:
    """Only through Jupyter's login: no TCP port, a Unix socket other users cannot open."""
    import os
    import stat
    import urllib.error
    import urllib.request

    import psutil

    with jupyterlab_server(tmp_path, tmp_path / "experiments") as (url, token):
        app = f"{url}/candle-lab-app/"
        try:  # Jupyter's login page, or 403: never the app
            with urllib.request.urlopen(urllib.request.Request(app, headers={"Authorization": "token wrong"})) as a:
                assert "/login" in a.geturl() and b"candle_lab" not in a.read()
        except urllib.error.HTTPError as denied:
            assert denied.code == 403
        with urllib.request.urlopen(urllib.request.Request(app, headers={"Authorization": f"token {token}"}),
                                    timeout=90) as answer:
            assert answer.status == 200 and b"candle_lab" in answer.read()
        [child] = [p for p in psutil.process_iter(["cmdline"])
                   if "--unix-socket" in (p.info["cmdline"] or []) and "dashboard" in p.info["cmdline"]]
        assert [c for c in child.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
        sock = child.info["cmdline"][child.info["cmdline"].index("--unix-socket") + 1]
        assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
        if os.geteuid() == 0:  # as another user of the login node: refused
            other = subprocess.run(["/usr/bin/python3", "-c", PROBE, sock], user="nobody", capture_output=True)
            assert other.returncode == 3, other
