"""The Jupyter server extension's REST API, in a real Jupyter server (pytest-jupyter)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import model_spec
from tornado.httpclient import HTTPClientError

from candle_lab import api
from candle_lab.html_report import write_report

pytest.importorskip("jupyter_server")


@pytest.fixture
def jp_server_config(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("CANDLE_LAB_HOME", str(root))
    return {"ServerApp": {"jpserver_extensions": {"candle_lab.server": True}}}


@pytest.fixture
def finished(client: Any, root: Path) -> api.Experiment:
    return api.run(model_spec("sleepy", budget={"max_trials": 3}, search={"seed": 3}), client=client, root=root)


async def _json(jp_fetch: Any, *path: str, **kwargs: Any) -> tuple[int, Any]:
    try:
        response = await jp_fetch("candle-lab", "api", *path, **kwargs)
    except HTTPClientError as exc:
        assert exc.response is not None
        try:
            return exc.code, json.loads(exc.response.body)
        except json.JSONDecodeError:  # no route at all (tornado's own page)
            return exc.code, exc.response.body.decode(errors="replace")
    return response.code, json.loads(response.body)


async def test_lists_experiments_with_status_and_best(jp_fetch: Any, finished: api.Experiment) -> None:
    code, body = await _json(jp_fetch, "experiments")
    assert code == 200
    [listed] = body["experiments"]
    best = finished.best
    assert best is not None
    assert listed["id"] == finished.id and listed["state"] == "completed"
    assert listed["completed"] == 3 and listed["progress"] == 1.0 and listed["max_trials"] == 3
    assert listed["best"] == pytest.approx(best.objective)
    assert (listed["metric"], listed["direction"], listed["algorithm"]) == ("loss", "minimize", "random")
    assert listed["duration"] > 0  # what the sidebar shows next to the algorithm


async def test_experiment_detail_has_spec_and_trials(jp_fetch: Any, finished: api.Experiment) -> None:
    code, body = await _json(jp_fetch, "experiments", finished.id)
    assert code == 200
    assert body["spec"]["budget"]["max_trials"] == 3
    assert sorted(t["trial_id"] for t in body["trials"]) == [0, 1, 2]
    assert {t["state"] for t in body["trials"]} == {"completed"}
    assert (await _json(jp_fetch, "experiments", "EXP999"))[0] == 404
    other_root = finished.path.parent.parent / "elsewhere"
    elsewhere = [api.create_experiment(model_spec("sleepy"), other_root) for _ in range(2)][-1]
    assert elsewhere.name == "EXP001"
    assert (await _json(jp_fetch, "experiments", elsewhere.name))[0] == 404  # only ids in the server's folder
    assert (await _json(jp_fetch, "experiments", str(elsewhere)))[0] == 404  # never a path


async def test_report_is_written_when_out_of_date_and_served_as_html(jp_fetch: Any,
                                                                     finished: api.Experiment) -> None:
    report, db = finished.path / "report.html", finished.path / "experiment.db"
    assert not report.exists()  # api.run writes none: the route writes it
    first = await jp_fetch("candle-lab", "api", "experiments", finished.id, "report")
    assert first.code == 200 and first.headers["Content-Type"].startswith("text/html")
    page = first.body.decode()
    assert f"candle_lab report: {finished.id}" in page and page == report.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in page and "sandbox allow-scripts" in first.headers["Content-Security-Policy"]
    written = report.stat().st_mtime_ns

    again = await jp_fetch("candle-lab", "api", "experiments", finished.id, "report")
    assert again.body == first.body and report.stat().st_mtime_ns == written  # store unchanged: not rewritten

    later = time.time() + 5
    os.utime(db, (later, later))  # the store changed after the report was written
    await jp_fetch("candle-lab", "api", "experiments", finished.id, "report")
    assert report.stat().st_mtime_ns > written

    write_report(finished, plotly="shared")  # links ../plotly.min.js, which the route does not serve
    shared = await jp_fetch("candle-lab", "api", "experiments", finished.id, "report")
    served = shared.body.decode()
    assert "plotly.min.js" not in served and len(served) > 1_000_000  # plotly.js inline: its plots draw


@pytest.mark.parametrize(
    ("exp_id", "code", "words"),
    [
        ("EXP.1", 400, "experiment: expected an experiment id like EXP003"),
        ("%2E%2E", 400, "experiment: expected an experiment id like EXP003"),
        ("EXP999", 404, "experiment: no experiment 'EXP999'"),
    ],
)
async def test_report_of_a_bad_or_unknown_id_names_the_field(jp_fetch: Any, root: Path, exp_id: str, code: int,
                                                             words: str) -> None:
    got, body = await _json(jp_fetch, "experiments", exp_id, "report")
    assert got == code and words in body["message"], body
    assert not root.exists() or not any(root.rglob("report.html"))


async def test_info_points_at_the_proxied_dashboard(jp_fetch: Any, jp_base_url: str, root: Path) -> None:
    code, body = await _json(jp_fetch, "info")
    assert code == 200
    assert body["dashboard"] == f"{jp_base_url.rstrip('/')}/candle-lab-app/"
    assert Path(body["root"]) == root.resolve()


async def test_submit_runs_the_spec_and_stop_requests_reach_the_driver(jp_fetch: Any, root: Path) -> None:
    spec = model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 0, "high": 1},
                                       {"name": "sleep", "type": "constant", "value": 1.0}],
                      budget={"max_trials": 20}, compute={"workers": 1})
    code, body = await _json(jp_fetch, "experiments", method="POST", body=json.dumps(spec))
    assert code == 201, body
    exp = api.open_experiment(body["id"], root)
    assert exp.spec.budget.max_trials == 20
    await _until(lambda: (t := exp.trial(0)) is not None and t.state == "running", "trial 0 running")
    code, _ = await _json(jp_fetch, "experiments", exp.id, "trials", "0", "stop", method="POST", body="")
    assert code == 202
    await _until(lambda: (t := exp.trial(0)) is not None and t.state == "stopped", "trial 0 stopped")
    code, _ = await _json(jp_fetch, "experiments", exp.id, "stop", method="POST", body="")
    assert code == 202
    status = exp.wait(timeout=120)
    assert status.state == "stopped" and status.trials < 20  # the detached driver obeyed


async def _until(predicate: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("{not json", "expected a JSON object (an experiment spec), got invalid JSON"),
        ("[1, 2]", "body: expected a JSON object (an experiment spec), got [1, 2]"),
        (json.dumps(model_spec("sleepy", search={"algorithm": "annealing"})), "search.algorithm"),
        (json.dumps(model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 2, "high": 1}])),
         "space.parameters[0]"),
        (json.dumps(model_spec("sleepy", compute={"profile": "lab", "gpus": 3})), "compute.gpus"),
        (json.dumps(model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 0, "high": 1},
                                                {"name": "y", "type": "real", "low": 0, "high": 1, "when": "z > 1"}])),
         "space.parameters[1] (y).when: 'z > 1': no parameter is named 'z'"),
        (json.dumps(model_spec("sleepy", search={"algorithm": "async-bo", "warm_start": ["EXP042"]})),
         "search.warm_start[0]: expected an experiment id like EXP000"),
    ],
)
async def test_bad_submissions_get_400_with_the_field(jp_fetch: Any, root: Path, body: str, words: str) -> None:
    code, answer = await _json(jp_fetch, "experiments", method="POST", body=body)
    assert code == 400
    assert words in answer["message"]
    assert "Traceback" not in answer["message"]
    assert not root.exists() or not any(root.iterdir())  # nothing was created


async def test_unknown_trial_is_404(jp_fetch: Any, finished: api.Experiment) -> None:
    code, body = await _json(jp_fetch, "experiments", finished.id, "trials", "77", "stop", method="POST", body="")
    assert code == 404 and "no trial 77" in body["message"]


async def test_a_link_to_a_folder_outside_the_root_is_not_an_experiment(
    jp_fetch: Any, finished: api.Experiment, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "experiment.db").write_bytes((finished.path / "experiment.db").read_bytes())
    (finished.path.parent / "EXP777").symlink_to(outside, target_is_directory=True)
    assert (await _json(jp_fetch, "experiments", "EXP777"))[0] == 404
    code, _ = await _json(jp_fetch, "experiments", "EXP777", "stop", method="POST", body="")
    assert code == 404
    assert sorted(p.name for p in outside.iterdir()) == ["experiment.db"]  # nothing written outside


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"\xff\xfe{}", 400, "in UTF-8"),
        (b"[" * 200_000 + b"]" * 200_000, 400, "nested too deeply"),
        (b'{"description": "' + b"x" * (2 << 20) + b'"}', 413, "expected at most 1048576 bytes"),
    ],
)
async def test_hostile_bodies_get_a_json_error(jp_fetch: Any, root: Path, body: bytes, code: int, words: str) -> None:
    got, answer = await _json(jp_fetch, "experiments", method="POST", body=body)
    assert got == code and words in answer["message"]


async def test_unknown_api_routes_answer_json_404(jp_fetch: Any) -> None:
    code, body = await _json(jp_fetch, "experiments", "EXP001", "nothing")
    assert code == 404 and "no candle_lab API route" in body["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ("info",)),
        ("GET", ("experiments",)),
        ("POST", ("experiments",)),
        ("GET", ("experiments", "EXP000")),
        ("POST", ("experiments", "EXP000", "stop")),
        ("GET", ("experiments", "EXP000", "report")),
        ("POST", ("experiments", "EXP000", "trials", "0", "stop")),
        ("GET", ("no", "such", "route")),
    ],
)
async def test_every_route_needs_a_token(jp_fetch: Any, method: str, path: tuple[str, ...]) -> None:
    with pytest.raises(HTTPClientError) as denied:
        await jp_fetch("candle-lab", "api", *path, method=method, body="{}" if method == "POST" else None,
                       headers={"Authorization": "token wrong"})
    assert denied.value.code == 403


async def test_the_malformed_corpus_gets_400_naming_the_field(jp_fetch: Any, root: Path) -> None:
    from malformed import REST_CASES

    assert len(REST_CASES) >= 40
    for case in REST_CASES:
        start = time.monotonic()
        code, answer = await _json(jp_fetch, "experiments", method="POST", body=json.dumps(case.data))
        assert code == 400, (case.name, answer)
        assert case.field in answer["message"] and "Traceback" not in answer["message"], (case.name, answer)
        assert time.monotonic() - start < 1.0, case.name
    assert not root.exists() or not any(root.iterdir())  # nothing was created


async def test_ensemble_of_a_finished_experiment_starts_in_the_background(jp_fetch: Any, client: Any,
                                                                          root: Path) -> None:
    space = [{"name": "degree", "type": "integer", "low": 3, "high": 4},
             {"name": "alpha", "type": "real", "low": 1e-3, "high": 1e-2}]
    source = api.run(model_spec("uq_regression", space=space, objective={"metric": "objective"},
                                budget={"max_trials": 2}), client=client, root=root)
    for bad, words in (
        ({"top": "2"}, "top: expected a whole number, got '2'"),
        ({"members": 1}, "ensemble.members"),
        ({"method": "jackknife"}, "ensemble.method"),
        ({"size": 3}, "size: expected one of top, method, members"),
    ):
        code, body = await _json(jp_fetch, "experiments", source.id, "ensemble", method="POST", body=json.dumps(bad))
        assert code == 400 and words in body["message"], body
    code, body = await _json(jp_fetch, "experiments", source.id, "ensemble", method="POST",
                             body=json.dumps({"members": 3, "workers": 1}))
    assert code == 201, body
    started = api.open_experiment(body["id"], root)
    deadline = time.monotonic() + 120
    while started.status().state not in ("completed", "failed") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert started.status().completed == 3
    (config,) = started.uncertainty()
    assert config.trial_id == source.best.trial_id  # type: ignore[union-attr]
