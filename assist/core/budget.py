"""A message-rate budget per connection: a token bucket with a debt limit.

Every message costs tokens (one, plus a little per size); the bucket refills
at ``rate`` tokens a second up to ``burst``. A client inside its budget is
served. A client past it has its messages refused (the broker answers the
first refusal with a typed ``rate-limit`` error); one that keeps sending
while refused runs up a debt, and past ``burst`` of debt it is disconnected.
A client that slows down pays the debt back and is served again.

Pure: the caller passes the time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    """What to do with one message."""

    SERVE = "serve"
    REFUSE = "refuse"
    """Over budget: drop the message (the first one in a row gets an error reply)."""
    DISCONNECT = "disconnect"
    """Still sending after a whole burst of refusals: close the connection."""


@dataclass
class Budget:
    """Token bucket for one connection.

    Args:
        rate: tokens added per second.
        burst: most tokens held (and most debt run up before a disconnect).
        now: the time the bucket starts full.
    """

    rate: float
    burst: float
    now: float
    tokens: float = field(init=False)
    refusing: bool = field(default=False, init=False)
    """True from the first refused message until one is served again."""

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self._at = self.now

    def spend(self, cost: float, now: float) -> Verdict:
        """Charge one message of ``cost`` tokens at time ``now``."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.refusing = False
            return Verdict.SERVE
        self.tokens -= cost
        self.refusing = True
        if self.tokens < -self.burst:
            return Verdict.DISCONNECT
        return Verdict.REFUSE


def message_cost(size: int) -> float:
    """Tokens one message of ``size`` bytes costs: 1, plus 1 per 64 KiB (decoding big lines
    costs more)."""
    return 1.0 + size / 65536
