"""The Panel app end to end in a real headless Chromium (Debian's), driven by Playwright.

Screenshots go to ``test-artifacts/screenshots/`` (kept after the CI run).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import bokeh_source_length, chromium, dashboard_server
from conftest import REPO, TESTS

from candle_lab import api

pytest.importorskip("panel")
pytest.importorskip("playwright")

SHOTS = REPO / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    yield pg
    context.close()


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Submit experiment").wait_for(timeout=60_000)


def _fill(page: Any, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_submit_watch_and_stop_a_trial(page: Any, tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(
            [
                {"name": "x", "type": "float", "lower": 0.0, "upper": 1.0},
                {"name": "epochs", "type": "constant", "value": 12},
                {"name": "epoch_seconds", "type": "constant", "value": 0.5},
            ]
        )
    )
    with dashboard_server(root) as (url, _):
        _open(page, url)
        _fill(page, "Reference (module:function or benchmark module)", "trial_models:epochs")
        _fill(page, "Folder of the model", str(TESTS))
        _fill(page, "Space file (on the server)", str(space))
        page.get_by_role("button", name="Import").click()
        page.get_by_text("imported 3 parameters").wait_for(timeout=10_000)
        _fill(page, "Experiment name", "browser-test")
        _fill(page, "Metric", "loss")
        _fill(page, "Max trials", "3")
        _fill(page, "Initial points", "2")
        page.screenshot(path=SHOTS / "form-filled.png", full_page=True)
        page.get_by_role("button", name="Submit experiment").click()

        # The app switches to the dashboard of the new experiment; bars appear as trials start.
        page.locator(".experiment-id").get_by_text("EXP000").wait_for(timeout=30_000)
        _wait(lambda: bokeh_source_length(page, "gantt") >= 1, 60, "a bar in the Gantt chart")
        _wait(lambda: bokeh_source_length(page, "curves") >= 1, 60, "a loss curve")
        page.screenshot(path=SHOTS / "dashboard-running.png", full_page=True)

        exp = api.open_experiment("EXP000", root)
        running = [t.trial_id for t in exp.records() if t.state == "running"]
        assert running, exp.records()
        victim = str(running[0])
        _wait(lambda: victim in page.get_by_label("Trial", exact=True).locator("option").all_inner_texts(), 10,
              "the running trial in the stop list")
        page.get_by_label("Trial", exact=True).select_option(victim)
        page.get_by_role("button", name="Stop trial").click()
        _wait(lambda: exp.trials.set_index("trial_id").loc[int(victim), "state"] == "stopped", 30, "the stopped trial")

        page.locator(".best-objective").wait_for(timeout=90_000)  # a completed trial is the best so far
        best = exp.best
        assert best is not None
        assert float(page.locator(".best-objective").inner_text()) == pytest.approx(best.objective, rel=1e-5)
        _wait(lambda: page.locator(".experiment-state").inner_text() == "completed", 90, "the end of the search")
        assert bokeh_source_length(page, "gantt") == 3
        page.screenshot(path=SHOTS / "dashboard-done.png", full_page=True)
        states = exp.trials.set_index("trial_id")["state"].to_dict()
        assert states[int(victim)] == "stopped" and list(states.values()).count("completed") == 2


def test_invalid_compute_request_is_flagged_before_submit(page: Any, tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    with dashboard_server(root) as (url, _):
        _open(page, url)
        page.get_by_label("Site profile", exact=True).select_option("lab")
        _fill(page, "GPUs per worker", "3")
        message = "compute.gpus: a 'gpu' node has 2 any GPUs, asked for 3 per worker"
        page.get_by_text(message).first.wait_for(timeout=10_000)
        page.screenshot(path=SHOTS / "form-compute-error.png", full_page=True)
        page.get_by_role("button", name="Submit experiment").click()
        page.get_by_text("not submitted: fix the problems shown").wait_for(timeout=10_000)
        assert not root.exists() or not any(root.iterdir())  # nothing was created


def test_served_under_a_portal_prefix(page: Any, tmp_path: Path) -> None:
    prefix = "/node/compute-1/8080"
    password = "portal-session-secret"
    with dashboard_server(tmp_path / "experiments", "--prefix", prefix, "--password", password,
                          path=f"{prefix}/login") as (url, _):
        page.goto(url)
        page.locator("input[name=username]").fill("researcher")
        page.locator("input[name=password]").fill(password)
        page.locator("input[name=password]").press("Enter")
        page.get_by_role("button", name="Submit experiment").wait_for(timeout=60_000)  # redirected inside the app
        assert page.url.split("?")[0].endswith(f"{prefix}/")  # the page, its scripts and websocket: all under it
        logins = {c["name"]: c["path"] for c in page.context.cookies() if c["httpOnly"]}
        assert logins and set(logins.values()) == {f"{prefix}/"}  # other sessions' logins are safe
        page.locator(".bk-tab", has_text="Experiments").click()  # Bokeh tabs carry no ARIA role
        page.get_by_role("button", name="Compare selected").wait_for(timeout=10_000)
        page.screenshot(path=SHOTS / "prefix.png")


def test_exposed_dashboard_asks_for_the_password(page: Any, tmp_path: Path) -> None:
    password = "correct-horse-battery"
    with dashboard_server(tmp_path / "experiments", "--address", "0.0.0.0", "--password", password,
                          path="/login") as (url, _):
        base = url.rsplit("/login", 1)[0]
        with urllib.request.urlopen(base + "/") as answer:
            assert "/login" in answer.geturl() and b"Bokeh.embed" not in answer.read()
        page.goto(base + "/")
        page.locator("input[name=username]").fill("researcher")
        page.locator("input[name=password]").fill("wrong-password")
        page.locator("input[name=password]").press("Enter")
        page.get_by_text("Invalid username or password").wait_for(timeout=10_000)
        page.locator("input[name=username]").fill("researcher")
        page.locator("input[name=password]").fill(password)
        page.locator("input[name=password]").press("Enter")
        page.get_by_role("button", name="Submit experiment").wait_for(timeout=60_000)
        page.screenshot(path=SHOTS / "after-login.png")
        codes = []
        for _ in range(7):  # guessing: five tries, then this address waits (longer each time)
            form = urllib.parse.urlencode({"username": "x", "password": "guess-guess"}).encode()
            try:
                with urllib.request.urlopen(base + "/login", data=form) as answer:
                    codes.append(answer.status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
                retry_after = exc.headers.get("Retry-After")
        assert codes == [200] * 5 + [429] * 2 and retry_after is not None and int(retry_after) >= 1
