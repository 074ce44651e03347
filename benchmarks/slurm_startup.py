"""Time from a SLURM worker job starting to its dask worker connected (TLS on).

Needs a SLURM (``scripts/slurm-up`` brings up the single-node one). Target: ≤ 3 s.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import table

TARGET_S = 3.0


def _job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
    return out.strip()


def one_start(exp_dir: Path) -> float:
    exp_dir.mkdir()
    from candle_lab.clusters import resolve
    from candle_lab.clusters.slurm import start_slurm
    from candle_lab.spec import ComputeSpec

    cluster, client = start_slurm(resolve(ComputeSpec(profile="lab", workers=1, memory="1GB")), exp_dir, adaptive=False)
    try:
        cluster.scale(1)
        deadline = time.monotonic() + 60
        while not cluster.workers or not getattr(next(iter(cluster.workers.values())), "job_id", None):
            assert time.monotonic() < deadline, "the job was not submitted"
            time.sleep(0.01)
        job_id = next(iter(cluster.workers.values())).job_id
        while _job_state(job_id) != "RUNNING":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.01)
        started = time.monotonic()
        while not client.scheduler_info()["workers"]:
            assert time.monotonic() < deadline, "the worker did not connect"
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        client.close()
        cluster.close()


def main(quick: bool = False) -> list[dict[str, Any]]:
    if (
        not shutil.which("squeue")
        or "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
    ):
        print("\n== 5. SLURM worker start-up: no idle SLURM here (scripts/slurm-up brings one up); not measured")
        return []
    times = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(2 if quick else 5):
            times.append(one_start(Path(d) / f"EXP{i:03d}"))
        gc.collect()  # the clusters' certificate files close before their folder goes
    median = statistics.median(times)
    table(
        "5. SLURM job running -> dask worker connected (TLS), seconds",
        ["runs", "median", "max"],
        [[len(times), median, max(times)]],
    )
    print(f"  target ≤ {TARGET_S:g} s: {'PASS' if median <= TARGET_S else 'FAIL'}")
    return [{"runs": len(times), "median_s": median, "max_s": max(times)}]


if __name__ == "__main__":
    main()
