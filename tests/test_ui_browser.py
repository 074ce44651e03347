"""The Panel app end to end in a real headless Chromium (Debian's), driven by Playwright.

Screenshots go to ``test-artifacts/screenshots/`` (kept after the CI run).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser import SHOTS, bokeh_source_length, dashboard_server, wait_until
from conftest import TESTS

from candle_lab import api

pytest.importorskip("panel")
pytest.importorskip("playwright")

def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Submit experiment").wait_for(timeout=60_000)


def _fill(page: Any, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


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
        wait_until(lambda: bokeh_source_length(page, "gantt") >= 1, 60, "a bar in the Gantt chart")
        wait_until(lambda: bokeh_source_length(page, "curves") >= 1, 60, "a loss curve")
        page.screenshot(path=SHOTS / "dashboard-running.png", full_page=True)

        exp = api.open_experiment("EXP000", root)
        running = [t.trial_id for t in exp.records() if t.state == "running"]
        assert running, exp.records()
        victim = str(running[0])
        wait_until(lambda: victim in page.get_by_label("Trial", exact=True).locator("option").all_inner_texts(), 10,
              "the running trial in the stop list")
        page.get_by_label("Trial", exact=True).select_option(victim)
        page.get_by_role("button", name="Stop trial").click()
        wait_until(lambda: exp.trials.set_index("trial_id").loc[int(victim), "state"] == "stopped", 30,
                   "the stopped trial")

        page.locator(".best-objective").wait_for(timeout=90_000)  # a completed trial is the best so far
        wait_until(lambda: page.locator(".experiment-state").inner_text() == "completed", 90, "the end of the search")
        best = exp.best
        assert best is not None
        wait_until(lambda: page.locator(".best-objective").inner_text() == f"{best.objective:.5g}", 10,
              "the best objective, to 5 significant figures")
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
        message = "compute.gpus: a 'gpu' node has 2 GPUs, asked for 3 per worker"  # no GPU type was chosen
        page.get_by_text(message).wait_for(timeout=10_000)  # once: under the compute section only
        assert page.get_by_text(message).count() == 1
        page.screenshot(path=SHOTS / "form-compute-error.png", full_page=True)
        wait_until(lambda: page.get_by_role("button", name="Submit experiment").is_disabled(), 10, "Submit disabled")
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


def _cell(page: Any, table: str, row: int, field: str) -> Any:
    """A Tabulator cell: ``row`` from 0 among the rows drawn, ``field`` its column."""
    return page.locator(f"{table} .tabulator-row").nth(row).locator(f'.tabulator-cell[tabulator-field="{field}"]')


def _column(page: Any, table: str, field: str) -> list[str]:
    return page.locator(f'{table} .tabulator-row .tabulator-cell[tabulator-field="{field}"]').all_inner_texts()


def test_gallery_model_shows_its_default_values_as_text(page: Any, tmp_path: Path) -> None:
    with dashboard_server(tmp_path / "experiments") as (url, _):
        _open(page, url)  # starts on digits_sklearn: no default model file, an empty table
        page.get_by_label("Gallery model", exact=True).select_option("digits_mlp")
        page.get_by_role("button", name="Load model").click()
        page.get_by_text("loaded gallery model digits_mlp").wait_for(timeout=10_000)
        table = ".default-model-values"
        wait_until(lambda: "activation" in _column(page, table, "parameter"), 10, "the default model values")
        shown: dict[str, str] = {}
        for _ in range(2):  # the rows drawn, then the rest (Tabulator draws only what is in view)
            shown |= dict(zip(_column(page, table, "parameter"), _column(page, table, "value"), strict=True))
            page.locator(f"{table} .tabulator-tableholder").evaluate("e => { e.scrollTop = e.scrollHeight; }")
            page.wait_for_timeout(300)
        page.screenshot(path=SHOTS / "form-default-values.png", full_page=True)
        assert {"model_name", "dense", "activation", "optimizer", "epochs", "timeout"} <= set(shown), shown
        assert shown["activation"] == "relu" and shown["optimizer"] == "rmsprop" and shown["dense"] == "[512, 512]"
        assert shown["loss"] == "categorical_crossentropy" and shown["epochs"] == "5"
        assert "NaN" not in page.locator(table).inner_text()


def test_invalid_form_disables_submit_and_lists_every_problem(page: Any, tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    with dashboard_server(root) as (url, _):
        _open(page, url)
        submit = page.get_by_role("button", name="Submit experiment")
        wait_until(submit.is_enabled, 10, "Submit enabled for the gallery model")
        space = ".space-table"
        assert _column(page, space, "row")[:2] == ["1", "2"]  # the rows are numbered as messages number them
        _cell(page, space, 0, "low").click()
        page.keyboard.press("Control+A")
        page.keyboard.type("abc")
        page.keyboard.press("Enter")
        _fill(page, "Max time (e.g. 2h)", "soon")

        cell_problem = 'space row 1 (units), low: "abc" is not a number'
        time_problem = "budget.max_time: expected a duration like 3600, '30m', '2h' or '01:30:00', got 'soon'"
        for message in (cell_problem, time_problem):  # both at once, each once
            page.get_by_text(message).wait_for(timeout=10_000)
            assert page.get_by_text(message).count() == 1
        page.get_by_text("2 problems to fix before submitting").wait_for(timeout=10_000)
        assert submit.is_disabled()
        assert _cell(page, space, 0, "low").inner_text() == "abc"  # the rejected text stays where it was typed
        assert "background-color" in (_cell(page, space, 0, "low").get_attribute("style") or "")
        assert page.locator(".invalid").count() == 1  # the Max time box has the red border
        page.screenshot(path=SHOTS / "form-two-problems.png", full_page=True)

        _cell(page, space, 0, "low").click()
        page.keyboard.press("Control+A")
        page.keyboard.type("8")
        page.keyboard.press("Enter")
        page.get_by_text(cell_problem).wait_for(state="detached", timeout=10_000)
        assert submit.is_disabled()  # one problem left
        _fill(page, "Max time (e.g. 2h)", "2h")
        wait_until(submit.is_enabled, 10, "Submit enabled once every problem is fixed")
        assert page.get_by_text(time_problem).count() == 0 and page.locator(".invalid").count() == 0
        assert "background-color" not in (_cell(page, space, 0, "low").get_attribute("style") or "")
        assert not root.exists() or not any(root.iterdir())  # nothing was submitted
