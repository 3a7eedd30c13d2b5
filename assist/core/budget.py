"""A message-rate budget per connection: a token bucket with strikes.

Every message costs tokens (one, plus a little per size); the bucket refills
at ``rate`` tokens a second up to ``burst``. A client inside its budget is
served. A message past it is refused (the broker answers with a typed
``rate-limit`` error) and counts as a strike; the broker then stops reading
from that client for :meth:`Budget.pause` seconds, so SSH flow control holds
the rest of its flood where it is, on the client's side. More than
``strikes`` strikes within ``memory`` seconds and the client is
disconnected. A client that bursts once and calms down is served again.

Pure: the caller passes the time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    """What to do with one message."""

    SERVE = "serve"
    REFUSE = "refuse"
    """Over budget: drop it, say so, and read nothing more for :meth:`Budget.pause`."""
    DISCONNECT = "disconnect"
    """Over budget again and again: close the connection."""


@dataclass
class Budget:
    """Token bucket for one connection.

    Args:
        rate: tokens added per second.
        burst: most tokens held.
        now: the time the bucket starts full.
        strikes: refusals allowed within ``memory`` seconds; one more disconnects.
        memory: seconds a strike is remembered.
    """

    rate: float
    burst: float
    now: float
    strikes: int = 3
    memory: float = 30.0
    tokens: float = field(init=False)
    _struck: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self._at = self.now

    def spend(self, cost: float, now: float) -> Verdict:
        """Charge one message of ``cost`` tokens at time ``now``."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return Verdict.SERVE
        self._struck = [t for t in self._struck if now - t < self.memory]
        self._struck.append(now)
        if len(self._struck) > self.strikes:
            return Verdict.DISCONNECT
        return Verdict.REFUSE

    def pause(self) -> float:
        """Seconds until the bucket is half full again (read nothing meanwhile)."""
        return max(0.0, self.burst / 2 - self.tokens) / self.rate

    @property
    def struck(self) -> int:
        """Strikes remembered now."""
        return len(self._struck)


def message_cost(size: int, stream: bool = False) -> float:
    """Tokens one message of ``size`` bytes costs: 1, plus 1 per 64 KiB (decoding big
    lines costs more).

    A terminal's output (``stream``) costs 0.3 plus its bytes: a program printing
    a flushed line at a time sends hundreds a second, each cheap to relay.
    """
    return (0.3 + size / 16384) if stream else 1.0 + size / 65536
