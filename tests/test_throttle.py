"""The dashboard's login throttle: free tries, then doubling waits, per client."""

from __future__ import annotations

from candle_lab.ui.throttle import FORGET_AFTER, FREE_TRIES, MAX_WAIT, LoginThrottle


def _fail(throttle: LoginThrottle, client: str, times: int, now: float) -> None:
    for _ in range(times):
        throttle.record(client, False, now)


def test_free_tries_then_doubling_waits() -> None:
    t = LoginThrottle()
    _fail(t, "a", FREE_TRIES - 1, 0.0)
    assert t.wait("a", 0.0) == 0.0
    _fail(t, "a", 1, 0.0)
    assert t.wait("a", 0.0) == 1.0 and t.wait("a", 0.4) == 0.6 and t.wait("a", 1.0) == 0.0
    _fail(t, "a", 1, 1.0)
    assert t.wait("a", 1.0) == 2.0
    _fail(t, "a", 20, 2.0)
    assert t.wait("a", 2.0) == MAX_WAIT


def test_clients_are_apart_and_success_or_silence_forgives() -> None:
    t = LoginThrottle()
    _fail(t, "a", FREE_TRIES + 3, 0.0)
    assert t.wait("b", 0.0) == 0.0  # another address is not held up
    assert t.wait("a", FORGET_AFTER + 1) == 0.0
    t.record("a", True, 1.0)
    assert t.wait("a", 1.0) == 0.0


def test_three_hundred_guesses_take_hours() -> None:
    t, now = LoginThrottle(), 0.0
    for _ in range(300):
        now += t.wait("a", now)
        t.record("a", False, now)
    assert now > 3600 * 10
