"""Failed sign-ins counted per client, so that passwords cannot be guessed at speed.

After MAX_FAILURES wrong passwords within WINDOW_S seconds, a client (an address) is refused
for LOCK_S seconds, whatever it sends; a right password before that clears its count.
"""

import threading
import time
from typing import Callable

MAX_FAILURES = 5
WINDOW_S = 300
LOCK_S = 300


class LoginLimiter:
    """Counts each client's recent failed sign-ins and says how long it must still wait."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, lock_s: float = LOCK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.lock_s, self.clock = max_failures, window_s, lock_s, clock
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again; 0 when it may now."""
        with self._lock:
            return max(0.0, self._locked_until.get(client, 0.0) - self.clock())

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window_s] + [now]
            if len(recent) >= self.max_failures:
                self._locked_until[client] = now + self.lock_s
                recent = []
            self._failures[client] = recent

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def refusal(self, wait_s: float) -> str:
        """The message a locked-out client gets."""
        return (f"Too many wrong passwords: {self.max_failures} within {self.window_s // 60:.0f} minutes. "
                f"Sign-ins from this address are refused for {max(1, round(wait_s / 60))} more minute(s); then try again, "
                "or ask whoever runs the studio for the password (STUDIO_AUTH).")
