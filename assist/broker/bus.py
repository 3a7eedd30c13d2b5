"""The bus between broker nodes, and the in-process bus of a broker on its own.

Nodes of one helpdesk tell each other what moves: queue changes, node
heartbeats, and (for a session whose user and agent are on different nodes)
the session's traffic. A :class:`Bus` publishes a payload on a subject and
calls the handlers subscribed to it; subjects are dot-separated words, and a
subscription may end in ``>`` (any rest) or hold ``*`` (any one word), as in
NATS. Delivery is at most once and in order per publisher, never blocking the
publisher: what is lost is healed by the next snapshot, as for a lagging
viewer. :class:`LocalBus` is that bus inside one process (the default, and
several nodes in one test); :mod:`assist.broker.nats_bus` is the one between
machines.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]
"""Called with ``(subject, payload)`` on the event loop; must not block."""

MAX_PAYLOAD = 1024 * 1024
"""The largest payload a node sends (NATS's default limit)."""


class Subscription(ABC):
    """One subscription; :meth:`cancel` stops its handler being called."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop delivering to this subscription."""


class Bus(ABC):
    """What carries messages between the nodes of one helpdesk."""

    @abstractmethod
    async def start(self) -> None:
        """Connect (a no-op for the in-process bus).

        Raises:
            BusError: if the bus cannot be reached.
        """

    @abstractmethod
    def publish(self, subject: str, payload: bytes) -> None:
        """Send ``payload`` to every subscriber of ``subject``; never blocks.

        A payload over :data:`MAX_PAYLOAD`, or one the bus has no room for,
        is dropped (and counted in :attr:`dropped`).
        """

    @abstractmethod
    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        """Call ``handler`` for every message on ``subject`` (wildcards allowed), from
        the moment this returns."""

    @abstractmethod
    async def close(self) -> None:
        """Stop: subscriptions end, nothing more is sent."""

    dropped: int = 0
    """Payloads not sent: too big, or no room (the peer nodes resync)."""


def matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` is one ``pattern`` subscribes to (``*`` one word, ``>`` the rest)."""
    want, got = pattern.split("."), subject.split(".")
    for index, word in enumerate(want):
        if word == ">":
            return len(got) > index
        if index >= len(got) or (word != "*" and word != got[index]):
            return False
    return len(want) == len(got)


@dataclass(eq=False)
class _LocalSubscription(Subscription):
    bus: LocalBus
    pattern: str
    handler: Handler

    def cancel(self) -> None:
        self.bus.subscriptions.discard(self)


@dataclass(eq=False)
class LocalBus(Bus):
    """The bus inside one process: handlers run soon after, on the same event loop.

    Attributes:
        limit: messages waiting for delivery past which new ones are dropped.
    """

    limit: int = 100_000
    subscriptions: set[_LocalSubscription] = field(default_factory=set)
    _pending: int = 0
    closed: bool = False

    async def start(self) -> None:
        self.closed = False

    def publish(self, subject: str, payload: bytes) -> None:
        if self.closed:
            return
        if len(payload) > MAX_PAYLOAD or self._pending >= self.limit:
            self.dropped += 1
            return
        self._pending += 1
        # Later, not now: a publisher must never run a subscriber's code inside its own
        # step, as a network bus would not either.
        asyncio.get_running_loop().call_soon(self._deliver, subject, payload)

    def _deliver(self, subject: str, payload: bytes) -> None:
        self._pending -= 1
        for sub in list(self.subscriptions):
            if sub in self.subscriptions and matches(sub.pattern, subject):
                try:
                    sub.handler(subject, payload)
                except Exception:
                    log.exception("bus handler for %s failed", subject)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        sub = _LocalSubscription(self, subject, handler)
        self.subscriptions.add(sub)
        return sub

    async def close(self) -> None:
        self.closed = True
        self.subscriptions.clear()
