"""Failed logins per client: a few tries are free, then each further one waits longer.

Pure bookkeeping on a clock the caller passes in (seconds), so the policy is tested
without a server. 300 wrong passwords, which an unthrottled login takes in 3 s, take
hours here."""

from __future__ import annotations

from dataclasses import dataclass, field

FREE_TRIES = 5  # failures before any wait
FIRST_WAIT = 1.0  # seconds after the first failure beyond the free ones; doubles each time
MAX_WAIT = 300.0
FORGET_AFTER = 900.0  # a client quiet this long starts afresh


@dataclass
class _Client:
    failures: int = 0
    last: float = 0.0


@dataclass
class LoginThrottle:
    clients: dict[str, _Client] = field(default_factory=dict)

    def wait(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before its next try (0: it may try now)."""
        state = self.clients.get(client)
        if state is None or now - state.last > FORGET_AFTER:
            return 0.0
        if state.failures < FREE_TRIES:
            return 0.0
        delay = min(MAX_WAIT, FIRST_WAIT * 2 ** (state.failures - FREE_TRIES))
        return max(0.0, state.last + delay - now)

    def record(self, client: str, ok: bool, now: float) -> None:
        if ok:
            self.clients.pop(client, None)
            return
        state = self.clients.get(client)
        if state is None or now - state.last > FORGET_AFTER:
            state = self.clients[client] = _Client()
        state.failures += 1
        state.last = now
        if len(self.clients) > 10_000:  # many clients: drop the quiet ones
            for name in [n for n, c in self.clients.items() if now - c.last > FORGET_AFTER]:
                del self.clients[name]
