"""Helpers for the browser tests and the dashboard benchmark: serve the app, drive
Debian's Chromium with Playwright (``executable_path``; no browser download)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from candle_lab.ui.server import free_port

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    """Debian's Chromium, installed by ``scripts/browser-up`` when missing."""
    if not shutil.which("chromium"):
        subprocess.run([str(Path(__file__).parents[1] / "scripts" / "browser-up")], check=False)
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("Debian's chromium is not installed and scripts/browser-up could not install it")
    return found


@contextmanager
def _serving(command: list[str], url: str, log_path: Path, what: str, env: dict[str, str],
             cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until ``url`` answers (any HTTP status is an answer); stop it after."""
    log = log_path.open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except urllib.error.HTTPError:
            break  # it answers (a login redirect or a 404 is an answer)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {log_path.read_text()}") from None
            time.sleep(0.3)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def dashboard_server(root: Path, *args: str, path: str = "/") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``candle-lab dashboard`` in a subprocess; yields its URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "candle_lab.cli", "--root", str(root), "dashboard", "--port", str(port), *args]
    url = f"http://127.0.0.1:{port}{path}"
    env = {**os.environ, "CANDLE_LAB_HOME": str(root)}
    with _serving(command, url, root.parent / f"dashboard-{port}.log", "the dashboard", env) as proc:
        yield url, proc


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def bokeh_source_length(page: Any, name: str) -> int:
    """Rows of a named ColumnDataSource in the page's Bokeh document: what is drawn."""
    return int(
        page.evaluate(
            """(name) => {
                for (const doc of (window.Bokeh ? Bokeh.documents : [])) {
                    const src = doc.get_model_by_name(name);
                    if (src) { const cols = Object.values(src.data); return cols.length ? cols[0].length : 0; }
                }
                return -1;
            }""",
            name,
        )
    )


def bokeh_source_column(page: Any, name: str, column: str) -> list[Any]:
    """One column of a named ColumnDataSource in the page's Bokeh document."""
    return list(
        page.evaluate(
            """([name, column]) => {
                for (const doc of (window.Bokeh ? Bokeh.documents : [])) {
                    const src = doc.get_model_by_name(name);
                    if (src && src.data[column] !== undefined) { return Array.from(src.data[column]); }
                }
                return [];
            }""",
            [name, column],
        )
    )


@contextmanager
def jupyterlab_server(folder: Path, experiments: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab with candle_lab's extension, serving ``folder``; yields (URL, token).
    The news toast and update checks are off (they cover the UI in screenshots)."""
    import secrets

    port, token = free_port(), secrets.token_hex(16)
    settings = folder / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "CANDLE_LAB_HOME": str(experiments),
           "JUPYTERLAB_SETTINGS_DIR": str(folder / ".lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".lab-workspaces")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--allow-root"]
    url = f"http://127.0.0.1:{port}"
    with _serving(command, f"{url}/api/status?token={token}", folder / "jupyterlab.log", "JupyterLab", env, folder):
        yield url, token


SHOTS = Path(__file__).parents[1] / "test-artifacts" / "screenshots"


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.25 s; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)

