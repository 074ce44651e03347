"""Which attempts run again, and what a lost trial's SLURM job says about it (pure).

A trial lost with its worker on SLURM is recorded with how its job ended (``sacct`` or
``scontrol``: :mod:`candle_lab.clusters.jobs`). The policy:

- PREEMPTED, NODE_FAIL (BOOT_FAIL), TIMEOUT (DEADLINE): ``preempted``, ``node-fail``,
  ``walltime`` — not the trial's doing: it runs again (resuming from its last epoch
  checkpoint) without counting against ``trial.retries``, at most
  :data:`MAX_FREE_RETRIES` times. A trial stopped by its worker's ``--signal`` notice
  (reason ``walltime``, state ``stopped``) is retried the same way.
- CANCELLED: ``cancelled`` — someone cancelled the job; retried while ``trial.retries``
  allows, counted.
- OUT_OF_MEMORY: ``oom`` — a worker of the same size would run out again, and one
  SLURMCluster asks for one worker size: recorded failed, not retried, with a message
  that names ``compute.memory`` and the partition's largest node memory.
- Any other end (COMPLETED, FAILED, still running): ``lost-worker``, retried, counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from candle_lab.clusters.profiles import memory_bytes
from candle_lab.trial.protocol import FREE_RETRY, RETRYABLE, Reason

MAX_FREE_RETRIES = 10  # free retries per trial: a trial that never fits still ends

SLURM_REASONS: dict[str, Reason] = {
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node-fail",
    "BOOT_FAIL": "node-fail",
    "TIMEOUT": "walltime",
    "DEADLINE": "walltime",
    "CANCELLED": "cancelled",
    "OUT_OF_MEMORY": "oom",
}
# States of a job that has ended (others: PENDING, RUNNING, COMPLETING, SUSPENDED, ...).
ENDED_STATES = frozenset({*SLURM_REASONS, "COMPLETED", "FAILED", "REVOKED", "SPECIAL_EXIT"})

Retry = Literal["free", "counted"]


def retry_kind(reason: str | None, attempt: int, retries: int, free_used: int) -> Retry | None:
    """Whether an attempt that ended with ``reason`` runs again.

    ``attempt`` is the attempt's number, ``free_used`` how many of the trial's earlier
    attempts were free retries. ``"free"``: not counted against ``retries``; ``"counted"``:
    a retry of ``retries``; None: recorded as it is."""
    if reason in FREE_RETRY and free_used < MAX_FREE_RETRIES:
        return "free"
    if reason in RETRYABLE and attempt - free_used <= retries:
        return "counted"
    return None


@dataclass(frozen=True)
class JobEnd:
    """What a lost trial's job end means: its reason and error text, and whether it may
    run again (False: record it, whatever the retries left)."""

    reason: Reason
    error: str
    retry: bool


def job_end(
    job: str,
    state: str | None,
    slurm_reason: str | None = None,
    *,
    memory: str | None = None,
    partition: str | None = None,
    node_memory: str | None = None,
) -> JobEnd | None:
    """The verdict on a trial lost with SLURM job ``job`` that ended in ``state``; None
    while the job has not ended (or its state is unknown): the trial stays ``lost-worker``."""
    if state is None or state not in ENDED_STATES:
        return None
    text = f"SLURM job {job} ended {state}"
    if slurm_reason and slurm_reason not in ("None", "(null)"):
        text += f" ({slurm_reason})"
    reason = SLURM_REASONS.get(state)
    if reason is None:
        return JobEnd("lost-worker", f"{text}: its worker was lost", True)
    if reason == "oom":
        return JobEnd("oom", oom_message(text, memory, partition, node_memory), False)
    return JobEnd(reason, text, True)


def oom_message(text: str, memory: str | None, partition: str | None, node_memory: str | None) -> str:
    """Why a trial whose job ran out of memory is not retried, and what to change."""
    asked = f"compute.memory={memory}" if memory else "the partition's default memory"
    where = f"a {partition!r} node" if partition else "a node"
    if memory and node_memory and memory_bytes(node_memory) > memory_bytes(memory):
        return (
            f"{text}: the trial needs more than {asked}; a worker of the same size would run out again, so it is "
            f"not retried: raise compute.memory (up to {node_memory}, what {where} has)"
        )
    most = f" ({node_memory})" if node_memory else ""
    return (
        f"{text}: the trial needs more than {asked}, the most {where} has{most}: it cannot run on this partition "
        "(infeasible); choose a partition with more memory per node"
    )
