"""Shared fixtures: one local dask cluster for the engine tests, a scratch experiments folder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

pytest_plugins = ["pytest_jupyter.jupyter_server"]  # jp_fetch & co. for the server extension


def _uses_jupyter_server(request: pytest.FixtureRequest) -> bool:
    own = {"jp_asyncio_loop", "jp_server_cleanup"}  # pytest-jupyter's autouse fixtures
    return any(name.startswith("jp_") and name not in own for name in request.fixturenames)


@pytest.fixture(autouse=True)
def jp_asyncio_loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """pytest-jupyter's event loop for tests that use a Jupyter server; a private one for
    the others (taking the current loop would close the one Playwright's sync API runs)."""
    if _uses_jupyter_server(request):
        from jupyter_core.utils import ensure_event_loop

        loop = ensure_event_loop(prefer_selector_loop=True)
    else:
        loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def jp_server_cleanup(jp_asyncio_loop: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    """pytest-jupyter's server clean-up, only after tests that had a server."""
    yield
    if not _uses_jupyter_server(request):
        return
    from jupyter_server.serverapp import ServerApp

    app = ServerApp.instance()
    with contextlib.suppress(RuntimeError, SystemExit):
        jp_asyncio_loop.run_until_complete(app._cleanup())
    if hasattr(app, "kernel_manager"):
        app.kernel_manager.context.destroy()
    ServerApp.clear_instance()


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    """Two single-threaded worker processes, as the ``local`` profile starts them."""
    from candle_lab.clusters.local import start_local
    from candle_lab.spec import ComputeSpec

    cluster, client = start_local(ComputeSpec(workers=2))
    logging.getLogger("distributed").setLevel(logging.WARNING)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def slurm() -> None:
    """The real single-node SLURM of scripts/slurm-up (started here when it is not up)."""
    up = shutil.which("sinfo") and subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
    if not up or not {"idle", "mixed", "allocated"} & set(up.split()):
        result = subprocess.run([str(REPO / "scripts" / "slurm-up")], capture_output=True, text=True)
        assert result.returncode == 0, f"could not bring SLURM up:\n{result.stderr}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "experiments"


def pbt_progress_spec(seed: int, retries: int = 1, **sections: Any) -> dict[str, Any]:
    """PBT over ``trial_models:pbt_progress`` (2 members, 3 intervals of 3 epochs; the first
    attempt of each of member 1's later intervals kills its worker)."""
    spec = model_spec(
        "pbt_progress",
        space=[{"name": "learning_rate", "type": "real", "low": 0.1, "high": 0.2, "mutable": True}],
        objective={"metric": "loss"},
        search={"algorithm": "pbt", "population": 2, "interval_epochs": 3, "intervals": 3, "truncation": 0.5,
                "seed": seed},
        trial={"retries": retries},
        **sections,
    )
    spec["budget"] = {}
    return spec


def assert_pbt_progress_continues(records: dict[str, Any], metrics: Any) -> None:
    """Each ``pbt_progress`` interval starts where the run it names as its source ended:
    its first epoch's progress is that run's last plus its learning rate; member 1's later
    intervals each lost a worker once (attempt 2)."""
    progress = metrics[metrics["name"] == "progress"]
    for t in records.values():
        if t.state != "completed":
            continue
        mine = progress[(progress["trial_id"] == t.trial_id) & (progress["attempt"] == t.attempt)]
        start = 0.0
        if t.origin and t.origin.get("from"):
            source = records[t.origin["from"]]
            start = float(progress[progress["trial_id"] == source.trial_id]["value"].iloc[-1])
        assert mine["value"].iloc[0] == pytest.approx(start + t.params["learning_rate"]), t.run_id
        assert list(mine["step"]) == list(range(int(mine["step"].iloc[0]), int(mine["step"].iloc[0]) + 3))
    lost = [t for t in records.values() if t.run_id.startswith("M001_") and t.origin and t.origin["interval"] > 0]
    assert lost and all(t.attempt >= 2 for t in lost)


def model_spec(function: str, space: list[dict[str, Any]] | None = None, **sections: Any) -> dict[str, Any]:
    """A spec dict running ``tests/trial_models.py:function``."""
    data: dict[str, Any] = {
        "name": f"test-{function}",
        "model": {"ref": f"trial_models:{function}", "path": str(TESTS)},
        "space": space or [{"name": "x", "type": "real", "low": 0.0, "high": 1.0}],
        "objective": {"metric": "loss" if function == "sleepy" else "objective"},
        "search": {"algorithm": "random", "seed": 1},
        "budget": {"max_trials": 6},
        "compute": {"workers": 2},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) per browser-test module."""
    from browser import SHOTS, chromium

    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own context: cookies, storage) for each browser test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    yield pg
    context.close()

