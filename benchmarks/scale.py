"""Scale: does the real engine keep W workers busy?

``candle_lab.run(spec, fn=..., client=...)`` exactly as a user at scale runs it: the dask
scheduler in the driver process (as dask-jobqueue runs it), workers as separate
processes with many threads each (fresh ones for every run), trials that sleep a
lognormal time (σ 0.5) and return a synthetic loss over the 6-D mixed space.
Utilization comes from the store's start and end times, in steady state (the first 10 %
of the window left out). Side by side in the same run: candle_lab random (the engine's
ceiling), async-bo, batch-bo, and Optuna TPE (``multivariate=True, constant_liar=True``)
with ``n_jobs=W`` threads on the same sleeping objective.

Also at that scale: trials written to the store, the dashboard's poll of the running
experiment (from another process, as the dashboard reads it), and the simulated idle of
``benchmarks/simulate.py`` for the same workers and durations, beside the real figure.
Finally ``candle-lab report`` of a 10,000-trial experiment.

Targets: async-bo ≥ 99 % utilization at every size; dashboard poll ≤ 200 ms; report of
10,000 trials ≤ 10 s.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import MIXED_6D, mixed_objective, table

REPO = Path(__file__).resolve().parents[1]
SIGMA = 0.5
WARMUP_SHARE = 0.1
TARGET_UTILIZATION = 0.99
TARGET_POLL_S = 0.2
TARGET_REPORT_S = 10.0
# (workers, median trial seconds, window seconds)
FULL = ((64, 5.0, 300.0), (256, 10.0, 300.0), (1024, 60.0, 300.0))
QUICK = ((64, 5.0, 60.0), (256, 5.0, 60.0), (1024, 15.0, 60.0))
METHODS = ("random", "async-bo", "batch-bo", "Optuna TPE")


def trial_seconds(params: dict[str, Any], median: float) -> float:
    """The sleeping time of a point: lognormal, fixed by the point itself."""
    key = json.dumps({k: params[k] for k in sorted(params)}, default=str)
    return random.Random(key).lognormvariate(math.log(median), SIGMA)


def sleeping_trial(params: dict[str, Any], median: float) -> float:
    time.sleep(trial_seconds(params, median))
    return mixed_objective(params)


# ---------------------------------------------------------------------- the cluster
@contextmanager
def cluster(workers: int) -> Iterator[Any]:
    """A scheduler in this process and worker processes with threads inside."""
    from distributed import Client, LocalCluster

    procs = 2 if workers <= 256 else workers // 256
    local = LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None)
    client = Client(local)
    logging.getLogger("distributed").setLevel(logging.ERROR)  # set by distributed when the cluster starts
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                local.scheduler_address,
                "--nthreads",
                str(workers // procs),
                "--no-nanny",
                "--no-dashboard",
                "--memory-limit",
                "0",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(procs)
    ]
    try:
        client.wait_for_workers(procs, timeout=120)
        yield client
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()
        client.close()
        local.close()


def busy_share(intervals: list[tuple[float, float | None]], workers: int, t0: float, t1: float) -> float:
    """Busy worker-seconds in [t0, t1] over the capacity (a trial still running ends at t1)."""
    busy = sum(max(0.0, min(e if e is not None else t1, t1) - max(s, t0)) for s, e in intervals)
    return busy / (workers * (t1 - t0))


# ---------------------------------------------------------------------- one run each
def run_candle(algorithm: str, workers: int, median: float, window: float, root: Path) -> dict[str, Any]:
    import candle_lab

    spec = {
        "name": f"scale-{algorithm}-{workers}",
        "model": {"ref": "benchmarks.scale:sleeping_trial"},
        "space": MIXED_6D,
        "objective": {"metric": "objective"},
        "search": {"algorithm": algorithm, "seed": 0},
        "budget": {"max_time": window},
        "compute": {"workers": workers},
    }
    with cluster(workers) as client:
        cpu0, t0 = time.process_time(), time.time()
        exp = candle_lab.run(
            spec, fn=functools.partial(sleeping_trial, median=median), client=client, root=root, wait=False
        )
        poller = _poll_in_another_process(exp.path, window)
        exp.wait()
        wall, cpu = time.time() - t0, time.process_time() - cpu0
    trials = exp.trials
    ran = trials[trials["started"].notna()]
    intervals = [
        (float(s), None if math.isnan(e) else float(e)) for s, e in zip(ran["started"], ran["ended"], strict=True)
    ]
    events = _events(exp.path)
    # the search's own window: from the driver's start to its end (max_time)
    began = next(when for when, kind, _, _ in events if kind == "driver-start")
    ended = next(when for when, kind, _, _ in events if kind == "driver-end")
    start = began + WARMUP_SHARE * (ended - began)
    events = [e for e in events if e[1].startswith("proposer-")]
    polls = poller.result()
    return {
        "utilization": busy_share(intervals, workers, start, ended),
        "trials": len(trials),
        "proposals/s": len(trials) / window,
        "driver CPU": cpu / wall,
        "poll median s": polls.get("median"),
        "poll worst s": polls.get("worst"),
        "poll CPU s": polls.get("cpu median"),
        "notes": "; ".join(f"{kind}: {detail.get('change', '')}" for _, kind, _, detail in events),
        "path": str(exp.path),
    }


def run_optuna(workers: int, median: float, window: float) -> dict[str, Any] | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = threading.Event()

    def objective(trial: Any) -> float:
        params: dict[str, Any] = {}
        for p in MIXED_6D:
            if p["type"] == "real":
                params[p["name"]] = trial.suggest_float(p["name"], p["low"], p["high"], log=p.get("log", False))
            elif p["type"] == "integer":
                params[p["name"]] = trial.suggest_int(p["name"], p["low"], p["high"], log=p.get("log", False))
            else:
                params[p["name"]] = trial.suggest_categorical(p["name"], p["choices"])
        stop.wait(trial_seconds(params, median))  # the same sleep, cut short at the window's end
        return mixed_objective(params)

    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=0)
    study = optuna.create_study(sampler=sampler)
    timer = threading.Timer(window, stop.set)
    cpu0, t0 = time.process_time(), time.time()
    timer.start()
    study.optimize(objective, timeout=window, n_jobs=workers)
    wall, cpu = time.time() - t0, time.process_time() - cpu0
    timer.cancel()
    intervals = [
        (t.datetime_start.timestamp(), t.datetime_complete.timestamp() if t.datetime_complete else None)
        for t in study.trials
        if t.datetime_start is not None
    ]
    return {
        "utilization": busy_share(intervals, workers, t0 + WARMUP_SHARE * window, t0 + window),
        "trials": len(study.trials),
        "proposals/s": len(study.trials) / window,
        "driver CPU": cpu / wall,
    }


def _events(path: Path) -> list[tuple[float, str, int | None, Any]]:
    from candle_lab.store import DB_NAME, Store

    with Store(path / DB_NAME, readonly=True) as store:
        return store.events()


class _Poller:
    def __init__(self, proc: subprocess.Popen[str] | None) -> None:
        self.proc = proc

    def result(self) -> dict[str, float]:
        if self.proc is None:
            return {}
        out, _ = self.proc.communicate(timeout=60)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}


def _poll_in_another_process(path: Path, seconds: float) -> _Poller:
    try:
        import param  # noqa: F401  (the dashboard's state: the ui extra)
    except ImportError:
        return _Poller(None)
    cmd = [sys.executable, "-m", "benchmarks.scale", "--poll", str(path), str(seconds)]
    return _Poller(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))


def poll(path: str, seconds: float) -> None:
    """As the dashboard does: refresh the experiment's monitor every 2 s; print timings."""
    import statistics

    from candle_lab.ui.state import ExperimentMonitor

    monitor = ExperimentMonitor(path=path)
    times, cpu = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(2.0)
        start, cpu0 = time.perf_counter(), time.process_time()
        monitor.refresh()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu0)
    print(
        json.dumps(
            {
                "median": statistics.median(times),
                "worst": max(times),
                "cpu median": statistics.median(cpu),
                "rows": len(monitor.trials),
            }
        )
    )


def report_seconds(n: int = 10_000) -> float:
    """``candle-lab report`` of an experiment of ``n`` finished trials."""
    from benchmarks.dashboard import SPEC, _fill
    from candle_lab import api

    with tempfile.TemporaryDirectory() as tmp:
        path = api.create_experiment({**SPEC, "name": "big", "compute": {"workers": 128}}, Path(tmp))
        _fill(path, n, 128)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "candle_lab.cli", "report", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=REPO,
        )
        return time.perf_counter() - start


def simulated_idle(workers: int, median: float, window: float, mode: str) -> float:
    """The discrete-event model's idle for the same size, with the measured proposal cost."""
    from benchmarks import simulate
    from benchmarks.proposal import measure_auto

    cost = simulate.cost_function(_cost_cache.setdefault("auto", measure_auto(quick=True)))
    kw = {"median": median, "horizon": window, "warmup": WARMUP_SHARE * window}
    if mode == "batch-bo":
        return simulate.simulate_batch(workers, cost, **kw)
    return simulate.simulate_rounds(workers, cost, **kw)


_cost_cache: dict[str, dict[int, float]] = {}


def _ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{1000 * seconds:.0f} ms"


def main(
    quick: bool = False, methods: tuple[str, ...] = METHODS, sizes: tuple[int, ...] | None = None
) -> list[dict[str, Any]]:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("candle_lab").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers, median, window in QUICK if quick else FULL:
            if sizes is not None and workers not in sizes:
                continue
            for method in methods:
                if method == "Optuna TPE":
                    result = run_optuna(workers, median, window)
                    if result is None:
                        continue
                else:
                    result = run_candle(method, workers, median, window, Path(tmp) / "experiments")
                    if method != "random":
                        result["simulated"] = 1.0 - simulated_idle(workers, median, window, method)
                rows.append({"workers": workers, "median s": median, "window s": window, "method": method, **result})
                print(
                    f"  {workers} workers, {method}: {100 * result['utilization']:.2f}% busy, "
                    f"{result['trials']} trials",
                    flush=True,
                )
    table(
        "7. the real engine at scale: utilization in steady state (lognormal trials, σ 0.5)",
        [
            "workers",
            "trial median",
            "method",
            "utilization",
            "simulated",
            "trials",
            "proposals/s",
            "driver CPU",
            "poll median",
            "poll CPU",
            "poll worst",
            "notes",
        ],
        [
            [
                r["workers"],
                f"{r['median s']:g} s",
                r["method"],
                f"{100 * r['utilization']:.2f}%",
                f"{100 * r['simulated']:.2f}%" if "simulated" in r else None,
                r["trials"],
                f"{r['proposals/s']:.1f}",
                f"{100 * r['driver CPU']:.0f}%",
                _ms(r.get("poll median s")),
                _ms(r.get("poll CPU s")),
                _ms(r.get("poll worst s")),
                r.get("notes") or None,
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r["method"] == "async-bo":
            ok = r["utilization"] >= TARGET_UTILIZATION
            print(
                f"  async-bo at {r['workers']} workers: {100 * r['utilization']:.2f}% vs target ≥ 99%: "
                f"{'PASS' if ok else 'FAIL'}"
            )
        if r["method"] == "Optuna TPE":
            ours = next(x for x in rows if x["workers"] == r["workers"] and x["method"] == "async-bo")
            print(
                f"  {r['workers']} workers: async-bo / Optuna TPE utilization = "
                f"{ours['utilization'] / r['utilization']:.2f}×"
            )
    polls = [r["poll worst s"] for r in rows if r.get("poll worst s") is not None]
    if polls:
        print(
            f"  dashboard poll, worst of all runs: {max(polls) * 1000:.0f} ms vs target ≤ 200 ms: "
            f"{'PASS' if max(polls) <= TARGET_POLL_S else 'FAIL'}"
        )
    most = max(rows, key=lambda r: r["trials"])
    print(
        f"  most trials written in one run: {most['trials']} ({most['method']}, {most['workers']} workers, "
        f"{most['window s']:g} s)"
    )
    seconds = report_seconds()
    rows.append({"figure": "report of 10,000 trials", "seconds": seconds})
    print(
        f"  candle-lab report of 10,000 trials: {seconds:.1f} s vs target ≤ 10 s: "
        f"{'PASS' if seconds <= TARGET_REPORT_S else 'FAIL'}"
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--poll":
        poll(sys.argv[2], float(sys.argv[3]))
    else:
        # python -m benchmarks.scale [--quick] [--methods=random,async-bo,...] [--sizes=256,1024]
        opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
        main(
            quick="--quick" in sys.argv,
            methods=tuple(opts["methods"].split(",")) if "methods" in opts else METHODS,
            sizes=tuple(int(n) for n in opts["sizes"].split(",")) if "sizes" in opts else None,
        )
