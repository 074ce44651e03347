"""The ``candle-lab`` command: run, kill -9 and resume, status, report, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TESTS, model_spec

from candle_lab.cli import main
from candle_lab.store import Store

CLI = [sys.executable, "-m", "candle_lab.cli"]
BAD_SPECS = sorted((TESTS / "data" / "bad_specs").glob("*.yaml"))


def write_spec(tmp_path: Path, **sections: object) -> Path:
    data = model_spec(
        "sleepy",
        space=[{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.6}],
        **sections,
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def completed(db: Path) -> dict[int, tuple[float | None, float | None, float | None]]:
    if not db.exists():
        return {}
    try:
        with Store(db, readonly=True) as store:
            return {t.trial_id: (t.objective, t.started, t.ended) for t in store.trials(["completed"])}
    except Exception:  # the driver may still be creating the tables
        return {}


@pytest.mark.parametrize(
    "search", [{"algorithm": "async-bo", "initial_points": 4}, {"algorithm": "ga", "population": 4}], ids=["bo", "ga"]
)
def test_resume_after_sigkill_loses_nothing(tmp_path: Path, search: dict[str, Any]) -> None:
    root = tmp_path / "experiments"
    spec = write_spec(tmp_path, budget={"max_trials": 12}, search=search)
    driver = subprocess.Popen(
        [*CLI, "--root", str(root), "run", str(spec), "-q"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    db = root / "EXP000" / "experiment.db"
    deadline = time.monotonic() + 90
    while len(completed(db)) < 4:
        assert driver.poll() is None, driver.stdout.read().decode() if driver.stdout else ""
        assert time.monotonic() < deadline, "the driver did not complete 4 trials in time"
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local cluster, mid-search
    driver.wait()
    before = completed(db)
    assert 4 <= len(before) < 12

    status = subprocess.run([*CLI, "--root", str(root), "status", "EXP000"], capture_output=True, text=True)
    assert "crashed" in status.stdout, status.stdout

    resumed = subprocess.run(
        [*CLI, "--root", str(root), "resume", "EXP000"], capture_output=True, text=True, timeout=180
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "best trial" in resumed.stdout and "report:" in resumed.stdout
    after = completed(db)
    assert len(after) == 12, after
    for trial_id, values in before.items():
        assert after[trial_id] == values  # kept as it was: never re-run
    with Store(db, readonly=True) as store:
        records = store.trials()
    assert [t.trial_id for t in records] == list(range(12))
    assert len({json.dumps(t.params, sort_keys=True) for t in records}) == 12
    if search["algorithm"] == "ga":  # the resumed search breeds from what the first run evaluated
        rounds = {t.run_id: t.round for t in records}
        children = [t for t in records if t.origin and t.origin["generation"] > 0]
        assert len(children) == 8
        for child in children:
            assert child.round == 1 + max(rounds[r] or 0 for r in child.origin["parents"])  # type: ignore[index]


def test_run_status_report_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "experiments"
    spec = write_spec(tmp_path, budget={"max_trials": 3})
    assert main(["--root", str(root), "run", str(spec), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "best trial: " in out and "report: " in out
    assert (root / "EXP000" / "report.html").is_file()
    assert main(["--root", str(root), "status", "EXP000", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "completed" and status["completed"] == 3
    assert main(["--root", str(root), "list"]) == 0
    assert "EXP000" in capsys.readouterr().out
    out_file = tmp_path / "r.html"
    assert main(["--root", str(root), "report", "0", "-o", str(out_file)]) == 0
    assert out_file.stat().st_size > 100_000  # plotly is inlined: the report works offline


def test_report_plotly_shared_and_cdn_keep_reports_small(tmp_path: Path, client: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from plotly.offline import get_plotlyjs

    from candle_lab import api
    from candle_lab.errors import SpecError
    from candle_lab.html_report import write_report

    root = tmp_path / "experiments"
    space = [{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.05}]
    exps = [api.run(model_spec("sleepy", space=space, budget={"max_trials": 2}), client=client, root=root)
            for _ in range(2)]
    inline = tmp_path / "inline.html"
    assert main(["--root", str(root), "report", exps[0].id, "-o", str(inline)]) == 0
    assert inline.stat().st_size > 3_000_000  # the default: plotly.js inside, works offline
    assert capsys.readouterr().out.strip() == str(inline)

    shared = root / "plotly.min.js"
    for i, exp in enumerate(exps):
        assert main(["--root", str(root), "report", exp.id, "--plotly", "shared"]) == 0
        if i == 0:
            written = shared.stat().st_mtime_ns
        report = exp.path / "report.html"
        assert capsys.readouterr().out.strip() == str(report)
        page = report.read_text(encoding="utf-8")
        assert report.stat().st_size < 200_000 and f"candle_lab report: {exp.id}" in page
        assert '<script charset="utf-8" src="../plotly.min.js"></script>' in page and "cdn.plot.ly" not in page
        assert (report.parent / "../plotly.min.js").resolve() == shared
    assert shared.read_text(encoding="utf-8") == get_plotlyjs()  # one copy, written once for both
    assert shared.stat().st_mtime_ns == written
    assert sorted(p.name for p in root.iterdir()) == [exps[0].id, exps[1].id, "plotly.min.js"]

    cdn = tmp_path / "cdn.html"
    assert main(["--root", str(root), "report", exps[1].id, "-o", str(cdn), "--plotly", "cdn"]) == 0
    page = cdn.read_text(encoding="utf-8")
    assert cdn.stat().st_size < 200_000 and 'src="https://cdn.plot.ly/plotly-' in page and "plotly.min.js\"" not in page

    with pytest.raises(SystemExit) as exited:
        main(["--root", str(root), "report", exps[0].id, "--plotly", "cnd"])
    assert exited.value.code == 2
    assert "--plotly: invalid choice: 'cnd' (choose from" in capsys.readouterr().err
    with pytest.raises(SpecError) as bad:
        write_report(exps[0], tmp_path / "bad.html", plotly="cnd")
    assert "plotly: expected one of 'inline', 'cdn', 'shared', got 'cnd' (did you mean 'cdn'?)" in str(bad.value)
    assert not (tmp_path / "bad.html").exists()


def test_status_efficiency_prints_the_figures_and_json(tmp_path: Path, client: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from candle_lab import api

    root = tmp_path / "experiments"
    space = [{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.05}]
    exp = api.run(model_spec("sleepy", space=space, budget={"max_trials": 3}), client=client, root=root)
    capsys.readouterr()
    assert main(["--root", str(root), "status", exp.id, "--efficiency"]) == 0
    out = capsys.readouterr().out
    assert f"{exp.id} test-sleepy: efficiency (worker-hours)" in out
    for label in ("worker-hours allocated", "worker-hours in trials", "worker-hours idle", "lost", "queue wait"):
        assert label in out, out
    assert main(["--root", str(root), "status", exp.id, "--efficiency", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["experiment"] == exp.id and figures["unit"] == "worker" and figures["trials"] == 3
    assert 0 <= figures["idle_hours"] <= figures["allocated_hours"]
    assert 0 < figures["trial_hours"] <= figures["allocated_hours"] * (1 + 1e-9)


def test_unknown_experiment_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "status", "EXP042"]) == 1
    err = capsys.readouterr().err
    assert "experiment: expected an experiment id" in err and "EXP042" in err


def test_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"model", "space", "search", "budget", "objective", "compute", "trial"} <= set(schema["properties"])


@pytest.mark.parametrize("path", BAD_SPECS, ids=[p.stem for p in BAD_SPECS])
def test_bad_spec_names_the_field(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert expect in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_bad_spec_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "model: {ref: 'm:f'}\nspace:\n  - {name: lr, type: real, low: 1, high: 0.1}\nbudget: {max_trials: 2}\n"
    )
    result = subprocess.run([*CLI, "run", str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "space.parameters[0] (lr)" in result.stderr and "low" in result.stderr, result.stderr
