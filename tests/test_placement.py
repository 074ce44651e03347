"""Placing adaptive trials: when to queue one ahead per worker, and on which worker."""

from __future__ import annotations

from candle_lab.engine.placement import Turnaround, placements, slots


def test_queue_ahead_latches_once_the_wait_costs_time() -> None:
    slow = Turnaround(min_samples=4)
    for i in range(4):  # 60-s trials, 50 ms for a freed slot to get its next one: 0.08 %
        slow.freed("w1", ended=100.0 + i, duration=60.0)
        slow.started("w1", 100.05 + i)
    assert not slow.queue_ahead

    fast = Turnaround(min_samples=4)
    for i in range(4):  # 5-s trials, the same 50 ms: 1 %
        fast.freed("w1", ended=100.0 + i, duration=5.0)
        fast.started("w1", 100.05 + i)
    assert fast.queue_ahead
    assert fast.figures() == {"median_wait_s": 0.05, "median_trial_s": 5.0}
    for i in range(8):  # queued trials start at once: the decision stays
        fast.freed("w1", ended=200.0 + i, duration=5.0)
        fast.started("w1", 200.0 + i)
    assert fast.queue_ahead


def test_waits_are_paired_per_worker_first_in_first_out() -> None:
    t = Turnaround(min_samples=2, share=0.0)
    t.freed("a", ended=10.0, duration=1.0)
    t.freed("b", ended=11.0, duration=1.0)
    t.started("b", 11.5)  # b's slot waited 0.5 s, not a's 1.5 s
    t.started("c", 12.0)  # a worker with no freed slot (the first wave) is not a wait
    t.started("a", 10.25)  # a's slot waited 0.25 s
    assert t.figures()["median_wait_s"] == 0.375


def test_slots_are_threads_bounded_by_the_trials_resources() -> None:
    workers = {
        "tcp://a": {"nthreads": 8, "resources": {"GPU": 2}},
        "tcp://b": {"nthreads": 4, "resources": {}},
        "tcp://c": {"nthreads": 2},
    }
    assert slots(workers, None) == {"tcp://a": 8, "tcp://b": 4, "tcp://c": 2}
    assert slots(workers, {"GPU": 1}) == {"tcp://a": 2}  # b and c cannot run a GPU trial


def test_placements_fill_each_worker_to_its_slots_plus_one() -> None:
    room = {"a": 4, "b": 4}
    assert sorted(placements(room, {}, 0, 100)) == ["a"] * 5 + ["b"] * 5
    # a freed slot on a: its queued trial started, so a gets one new queued trial
    assert placements(room, {"a": 4, "b": 5}, 0, 10) == ["a"]
    assert placements(room, {"a": 5, "b": 5}, 0, 10) == []
    # trials whose worker is not known yet take room; the budget caps the count
    assert len(placements(room, {"a": 2}, 3, 10)) == 5
    assert placements(room, {}, 0, 1) in (["a"], ["b"])
    assert placements({}, {}, 0, 5) == []
