"""The SLURM jobs of the workers: when each was submitted and ends, and how it ended.

``squeue`` gives submission and end times of running jobs. How a job ended comes from
``sacct`` where SLURM keeps accounting (slurmdbd); where it does not ("Slurm accounting
storage is disabled", as on a test cluster without a database) from ``scontrol show
job``, which knows a job for ``MinJobAge`` seconds (default 300) after it ended — the
driver asks within seconds. Every command goes through
:func:`candle_lab.clusters.slurm.run_command`; the parsers are pure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from candle_lab.clusters.slurm import run_command
from candle_lab.errors import CandleLabError

log = logging.getLogger(__name__)

SQUEUE_FORMAT = "%i|%T|%V|%e"  # job id, state, submitted, ends


@dataclass(frozen=True)
class JobInfo:
    """What SLURM says of one job (None: not said)."""

    job: str
    state: str | None = None
    reason: str | None = None  # SLURM's Reason field (why it ended or waits)
    submitted: float | None = None  # epoch seconds
    ends: float | None = None  # when its walltime ends (running) or when it ended


def parse_time(text: str) -> float | None:
    """SLURM's local ``YYYY-MM-DDTHH:MM:SS`` as epoch seconds; None for Unknown, N/A, None."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def _state(text: str) -> str | None:
    """``CANCELLED by 0`` -> ``CANCELLED``; empty -> None."""
    word = text.strip().split(" ", 1)[0] if text.strip() else ""
    return word.rstrip("+") or None


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """``sacct -n -P -X -o JobID,State,Reason`` lines; steps (``123.batch``) are skipped,
    a job listed twice (requeued) keeps its last line."""
    out: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 2 or not parts[0].strip() or "." in parts[0]:
            continue
        job = parts[0].strip()
        out[job] = JobInfo(job, _state(parts[1]), (parts[2].strip() or None) if len(parts) > 2 else None)
    return out


_FIELD = re.compile(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)")


def parse_scontrol(text: str) -> dict[str, JobInfo]:
    """``scontrol show job -o`` lines (one job a line, ``Key=value`` fields)."""
    out: dict[str, JobInfo] = {}
    for line in text.splitlines():
        fields = dict(_FIELD.findall(line))
        job = fields.get("JobId")
        if not job:
            continue
        out[job] = JobInfo(
            job,
            _state(fields.get("JobState", "")),
            fields.get("Reason") or None,
            parse_time(fields.get("SubmitTime", "")),
            parse_time(fields.get("EndTime", "")),
        )
    return out


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """``squeue -h -o '%i|%T|%V|%e'`` lines."""
    out: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != 4 or not parts[0].strip():
            continue
        job = parts[0].strip()
        out[job] = JobInfo(job, _state(parts[1]), None, parse_time(parts[2]), parse_time(parts[3]))
    return out


class JobQuery:
    """Asks SLURM about jobs; remembers once that ``sacct`` has no accounting to read."""

    def __init__(self) -> None:
        self.sacct = True

    def times(self, jobs: Iterable[str]) -> dict[str, JobInfo]:
        """Submission and end times of running jobs, one ``squeue`` for all ({} on error)."""
        wanted = sorted(set(jobs))
        if not wanted:
            return {}
        try:
            return parse_squeue(run_command(["squeue", "-h", "-j", ",".join(wanted), "-o", SQUEUE_FORMAT]))
        except CandleLabError as exc:  # a job that left meanwhile makes squeue fail: one at a time
            log.debug("%s", exc)
        out: dict[str, JobInfo] = {}
        for job in wanted:
            out.update(self._scontrol(job))
        return out

    def states(self, jobs: Iterable[str]) -> dict[str, JobInfo]:
        """How jobs stand or ended: ``sacct`` in one call, ``scontrol`` for what it lacks."""
        wanted = sorted(set(jobs))
        out: dict[str, JobInfo] = {}
        if wanted and self.sacct:
            try:
                out = parse_sacct(run_command(["sacct", "-n", "-P", "-X", "-j", ",".join(wanted),
                                               "-o", "JobID,State,Reason"]))
            except CandleLabError as exc:
                if "accounting storage is disabled" in str(exc).lower():
                    log.info("sacct has no accounting here: job states come from scontrol")
                    self.sacct = False
                else:
                    log.debug("%s", exc)
        for job in wanted:
            if job not in out:
                out.update(self._scontrol(job))
        return out

    @staticmethod
    def _scontrol(job: str) -> dict[str, JobInfo]:
        try:
            return parse_scontrol(run_command(["scontrol", "show", "job", "-o", job]))
        except CandleLabError as exc:  # purged (MinJobAge) or not a job
            log.debug("%s", exc)
            return {}
