"""A token bucket per connection: ``rate`` events a second sustained, ``burst`` at once."""

from __future__ import annotations

import time


class TokenBucket:
    """Counts a connection's events. ``take()`` is False when over the limit.

    ``strikes`` counts refused events, less one for each accepted one; the signaller disconnects a
    client that keeps sending past the limit. (It does not drop to 0 when the bucket has room
    again: a flooder whose events the server reads slowly gets a token now and then, and would
    never be cut off.)
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate", "strikes")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self.strikes = 0

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.strikes = max(0, self.strikes - 1)
            return True
        self.strikes += 1
        return False
