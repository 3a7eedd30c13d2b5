"""The bus between broker nodes on NATS (nats-py), for a helpdesk of several machines.

Core NATS is enough: the traffic is live (a gap is healed by a snapshot) and
what must last is in the store. Publishing never waits: payloads go into a
bounded queue that one task sends in order; past the bound they are dropped
and counted. While nothing waits (neither that queue nor nats-py's own
pending commands, and the socket takes what it is given), a payload goes
straight to the socket instead: a keystroke crossing nodes is then not held
up by two task switches (this queue's sender, then nats-py's flusher) at
each node. A subscriber that falls behind is bounded by NATS's own pending
limits. The connection reconnects by itself (nats-py retries, with jitter)
while the node goes on serving its own clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from assist.broker.bus import MAX_PAYLOAD, Bus, Handler, Subscription
from assist.core.urls import masked
from assist.errors import BusError

log = logging.getLogger(__name__)

CONNECT_WITHIN = 5.0
"""Seconds the first connection to the bus may take before the node gives up."""
OUTBOX = 10_000
"""Payloads waiting to be sent, past which new ones are dropped."""
DIRECT_BELOW = 64 * 1024
"""Bytes in the socket's buffer under which a payload may be written straight to it."""


class _NatsSubscription(Subscription):
    def __init__(self, sub: Any) -> None:
        self._sub = sub

    def cancel(self) -> None:
        async def unsubscribe() -> None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._sub.unsubscribe()

        with contextlib.suppress(RuntimeError):  # no loop: nothing to unsubscribe from
            asyncio.get_running_loop().create_task(unsubscribe())


class NatsBus(Bus):
    """The bus on a NATS server at ``url`` (``nats://HOST:PORT``)."""

    def __init__(self, url: str, name: str = "assist") -> None:
        self.url = url
        self.where = masked(url)
        """The URL fit to print (without credentials)."""
        self.name = name
        self._nc: Any = None
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(OUTBOX)
        self._sender: asyncio.Task[None] | None = None
        self._pub_cmd: Any = None
        self.dropped = 0
        self.direct = 0
        """Payloads written straight to the socket (for the tests)."""

    async def start(self) -> None:
        import nats
        import nats.errors

        async def on_error(exc: Exception) -> None:
            if self._nc is not None:  # before the first connection, start() says it once
                log.warning("bus %s: %s", self.where, exc)

        async def on_disconnect() -> None:
            log.warning("bus %s: disconnected; reconnecting", self.where)

        async def on_reconnect() -> None:
            log.info("bus %s: reconnected", self.where)

        try:
            # Once connected it reconnects forever; the first connection must come quickly.
            self._nc = await asyncio.wait_for(nats.connect(
                servers=[self.url], name=self.name, connect_timeout=2,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                ping_interval=2, max_outstanding_pings=2, error_cb=on_error,
                disconnected_cb=on_disconnect, reconnected_cb=on_reconnect), CONNECT_WITHIN)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            why = str(exc) or f"no answer within {CONNECT_WITHIN:g} s"
            raise BusError(f"cannot reach the bus at {self.where} ({why}): is nats-server "
                           "running there?") from None
        self._sender = asyncio.get_running_loop().create_task(self._send())
        pub_cmd: Any
        try:
            from nats.protocol.command import pub_cmd
        except ImportError:  # another nats-py: its own publish, through the queue
            pub_cmd = None
        if all(hasattr(self._nc, name) for name in ("_pending", "_transport", "stats")):
            self._pub_cmd = pub_cmd

    def publish(self, subject: str, payload: bytes) -> None:
        if self._nc is None or len(payload) > MAX_PAYLOAD:
            self.dropped += 1
            return
        if self._outbox.empty() and self._write_now(subject, payload):
            return
        try:
            self._outbox.put_nowait((subject, payload))
        except asyncio.QueueFull:
            self.dropped += 1

    def _write_now(self, subject: str, payload: bytes) -> bool:
        """Write one message straight to the socket if nothing is ahead of it there."""
        nc = self._nc
        if self._pub_cmd is None or nc._pending or not nc.is_connected:
            return False
        writer = getattr(nc._transport, "_io_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is None or transport.get_write_buffer_size() >= DIRECT_BELOW:
            return False
        transport.write(self._pub_cmd(subject, "", payload))
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += len(payload)
        self.direct += 1
        return True

    async def _send(self) -> None:
        while True:
            subject, payload = await self._outbox.get()
            try:
                await self._nc.publish(subject, payload)
            except Exception as exc:  # a full buffer while reconnecting, a closed link
                self.dropped += 1
                log.debug("bus: dropped a message on %s: %s", subject, exc)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        if self._nc is None:
            raise BusError("the bus is not started")

        async def deliver(msg: Any) -> None:
            try:
                handler(msg.subject, msg.data)
            except Exception:
                log.exception("bus handler for %s failed", msg.subject)

        return _NatsSubscription(await self._nc.subscribe(
            subject, cb=deliver, pending_msgs_limit=100_000,
            pending_bytes_limit=64 * 1024 * 1024))

    async def flush(self) -> None:
        """Wait until what was published so far reached the server (for tests and shutdown)."""
        while not self._outbox.empty():
            await asyncio.sleep(0.005)
        if self._nc is not None:
            await self._nc.flush(timeout=5)

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 2)
            self._sender.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = None
