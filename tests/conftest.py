"""Shared fixtures: one local dask cluster for the engine tests, a scratch experiments folder."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


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


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "experiments"


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
