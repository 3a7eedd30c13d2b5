"""One connected client: its control channel, bounded outbox and message budget.

Nothing a client does can make the broker hold more than a fixed amount for
it. What the broker sends goes through an :class:`Outbox` with three kinds
of traffic, each with its own rule when the client does not keep up:

* control (replies and events): past :data:`CONTROL_LIMIT` queued bytes the
  client is not reading; it is told so (``slow-consumer``) and closed;
* terminal stream frames: past :data:`STREAM_LIMIT` they are dropped and the
  session is remembered as lagging; once the client has caught up, the
  session's user is asked for a snapshot that replaces what was missed;
* views (wallboard, position): one pending message per view, the latest
  replaces an older one that was not sent yet.

Lines are handed to the transport only while its own buffer is under
:data:`WRITE_HIGH`, so the outbox, not the transport, holds the backlog and
knows its size. With nothing queued, a line goes straight to the transport
(no task switch on the keystroke path).

An agent may hold several connections at once: the console, plus scripts
acting on its sessions (``assist agent chat``, a runbook). They share one
presence (:class:`AgentLinks`): events fan out to all of them, and the agent
is gone only when the last one closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from assist.core.budget import Budget, Verdict, message_cost
from assist.errors import MessageTooLarge
from assist.protocol import encode
from assist.protocol import messages as m
from assist.transport.channel import ChannelClosed, MessageChannel
from assist.transport.peer import Peer

log = logging.getLogger("assist.broker.hub")

CONTROL_LIMIT = 2 * 1024 * 1024
"""Queued bytes of a client that does not read, past which it is disconnected."""
PEER_LIMIT = 512 * 1024
"""Queued bytes past which what the other party of a session sends (chat, signalling,
keys, marks, questions) is refused to the sender instead of queued: one party's
flood must never get the other disconnected as a slow reader."""
STREAM_LIMIT = 512 * 1024
"""Queued terminal-stream bytes past which frames are dropped (then resynced)."""
RESUME_BELOW = 64 * 1024
"""A watcher with more than this not yet sent is behind: views wait for it."""
WRITE_HIGH = 64 * 1024
"""Bytes left in the transport's own buffer before the outbox holds back."""
RATE = 500.0
"""Message budget per connection: tokens per second (a message costs about one; a
terminal in full flow sends a few dozen a second, a typist a handful)."""
BURST = 2000.0
"""... and the most held at once."""


class Kind(enum.Enum):
    """What a queued line is, which decides what happens when the client lags."""

    CONTROL = "control"
    STREAM = "stream"
    VIEW = "view"


class Outbox:
    """The bounded queue of lines for one client, and the task that writes them.

    Args:
        channel: the client's channel.
        on_overflow: called once when control traffic passes its bound.
        on_resync: called with a session id once a client whose frames of
            that session were dropped has caught up.
    """

    def __init__(self, channel: MessageChannel, on_overflow: Callable[[], None],
                 on_resync: Callable[[str], None]) -> None:
        self.channel = channel
        self._on_overflow = on_overflow
        self._on_resync = on_resync
        self._queue: deque[tuple[Kind, str, bytes]] = deque()
        self._views: dict[str, bytes] = {}
        self._bytes = 0
        self._stream_bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._drained: list[Callable[[], None]] = []
        self.lagging: set[str] = set()
        """Sessions whose frames were dropped since the client last caught up."""
        self.closed = False
        self.dropped = 0
        """Stream bytes dropped so far (for the log and the tests)."""

    @property
    def queued(self) -> int:
        """Bytes waiting in the outbox (not yet handed to the transport)."""
        return self._bytes

    @property
    def backlog(self) -> int:
        """Bytes not yet sent: in the outbox plus in the transport's buffer."""
        return self._bytes + self.channel.buffered()

    @property
    def behind(self) -> bool:
        """More than :data:`PEER_LIMIT` of replies and events waits (terminal frames have
        their own bound): take nothing more from the other party. A closed outbox
        takes nothing anyway and holds nobody up."""
        return not self.closed and self._bytes - self._stream_bytes > PEER_LIMIT

    def control(self, line: bytes) -> None:
        """Queue a reply or event; past the bound the client is disconnected."""
        if self.closed:
            return
        if self._bytes + len(line) > CONTROL_LIMIT:
            self.closed = True
            self._on_overflow()
            return
        self._put(Kind.CONTROL, "", line)

    def stream(self, session: str, line: bytes) -> bool:
        """Queue a terminal frame of ``session``; return False if it was dropped."""
        if self.closed:
            return False
        # A frame bigger than the bound (a full-screen picture) still goes out
        # when no other frame waits: else it could never be delivered.
        over = self._stream_bytes > 0 and self._stream_bytes + len(line) > STREAM_LIMIT
        if session in self.lagging or over:
            self.dropped += len(line)
            if session not in self.lagging:
                self.lagging.add(session)
            self._check_caught_up()
            return False
        self._put(Kind.STREAM, session, line)
        return True

    def view(self, key: str, line: bytes) -> None:
        """Queue the latest state of view ``key``, replacing one not sent yet."""
        if self.closed:
            return
        pending = self._views.get(key)
        if pending is not None:
            self._bytes += len(line) - len(pending)
            self._views[key] = line
            return
        if not self._queue and self.channel.buffered() < WRITE_HIGH:
            self._write(line)
            return
        self._views[key] = line
        self._append(Kind.VIEW, key, line)

    def when_caught_up(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the client has read what was queued for it."""
        self._drained.append(callback)
        self._check_caught_up()

    def _put(self, kind: Kind, key: str, line: bytes) -> None:
        if not self._queue and self.channel.buffered() < WRITE_HIGH:
            self._write(line)
            return
        self._append(kind, key, line)

    def _append(self, kind: Kind, key: str, line: bytes) -> None:
        self._queue.append((kind, key, line))
        self._bytes += len(line)
        if kind is Kind.STREAM:
            self._stream_bytes += len(line)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def _write(self, line: bytes) -> None:
        try:  # not contextlib.suppress: this is every line's path
            self.channel.send_raw(line)
        except ChannelClosed:
            return

    async def _run(self) -> None:
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and not self.closed:
                    if self.channel.buffered() >= WRITE_HIGH:
                        await self.channel.drain()
                        continue
                    kind, key, line = self._queue.popleft()
                    if kind is Kind.VIEW:
                        line = self._views.pop(key, line)
                    self._bytes -= len(line)
                    if kind is Kind.STREAM:
                        self._stream_bytes -= len(line)
                    self._write(line)
                if (self.lagging or self._drained) and not self.closed:
                    if self.channel.buffered() >= WRITE_HIGH:
                        await self.channel.drain()  # until the client has read most of it
                    if not self._queue:
                        self._caught_up()
        except ChannelClosed:
            self.closed = True

    def _check_caught_up(self) -> None:
        """Someone waits for this client to catch up: let the writer find out when."""
        if self.closed or not (self.lagging or self._drained):
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def _caught_up(self) -> None:
        lagging, self.lagging = self.lagging, set()
        drained, self._drained = self._drained, []
        calls = [lambda s=s: self._on_resync(s) for s in lagging] + drained
        for call in calls:
            try:
                call()
            except Exception:
                # A bug there must not stop this client's writer for good.
                log.exception("a caught-up callback failed")

    def close(self) -> None:
        """Drop everything queued and stop the writer."""
        self.closed = True
        self._queue.clear()
        self._views.clear()
        self._bytes = self._stream_bytes = 0
        self._drained.clear()
        if self._task is not None:
            self._task.cancel()


@dataclass(eq=False)
class Connection:
    """One connected control channel and what the broker knows about it.

    Attributes:
        session: for a user, the session this connection holds.
        streams: for an agent, sessions whose terminal stream it watches.
        watch: for an agent, whether it gets queue views.
    """

    channel: MessageChannel
    peer: Peer
    now: float = 0.0
    on_resync: Callable[[str], None] = field(default=lambda session: None)
    host: str = ""
    os_user: str = ""
    hello: bool = False
    watch: bool = False
    session: str | None = None
    streams: set[str] = field(default_factory=set)
    counted: list[str] = field(default_factory=list)
    """What the gate counts this connection under (its key, and guests@ADDRESS)."""
    log: logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.LoggerAdapter(log))
    outbox: Outbox = field(init=False)
    budget: Budget = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.channel, self._overflow, self.on_resync)
        self.budget = Budget(RATE, BURST, self.now)

    @property
    def closed(self) -> bool:
        """True once the connection was closed by either side."""
        return self.outbox.closed or self.channel.closed

    def send(self, msg: m.Msg) -> None:
        """Queue a reply or event (a client that is gone is simply skipped)."""
        try:
            line = encode(msg)
        except MessageTooLarge:
            self.log.error("dropped an oversized %s", type(msg).__name__)
            return
        self.outbox.control(line)

    def send_line(self, line: bytes) -> None:
        """Queue an encoded reply or event (encoded once for many connections)."""
        self.outbox.control(line)

    def send_view(self, key: str, msg: m.Msg) -> None:
        """Queue the latest state of a view (wallboard, position)."""
        self.outbox.view(key, encode(msg))

    def error(self, code: str, message: str, rid: int = 0) -> None:
        """Answer with a typed error (its text kept within the protocol's bound)."""
        self.send(m.Error(code=code[: m.MAX_NAME], message=message[: m.MAX_NOTE], rid=rid))

    def admit(self, size: int, now: float, stream: bool = False) -> Verdict:
        """Charge one incoming message of ``size`` bytes against the budget."""
        verdict = self.budget.spend(message_cost(size, stream), now)
        if verdict is Verdict.REFUSE:
            self.error("rate-limit", f"too many messages (more than {RATE:g} a second): "
                       f"warning {self.budget.struck} of {self.budget.strikes}, then the "
                       "broker disconnects you")
        return verdict

    def _overflow(self) -> None:
        self.log.warning("not reading (more than %d bytes queued): disconnected", CONTROL_LIMIT)
        self.kick("slow-consumer",
                  "you did not read what the broker sent; the connection is closed")

    def kick(self, code: str, message: str, rid: int = 0) -> None:
        """Say why (as the answer to request ``rid``, if any), straight to the
        transport (past any queue), and close."""
        with contextlib.suppress(ChannelClosed, MessageTooLarge):
            self.channel.send_raw(encode(m.Error(code=code, message=message, rid=rid)))
        self.close()

    def close(self) -> None:
        """Close the connection (its reader then ends)."""
        self.outbox.close()
        self.channel.close()


Handler = Callable[[Connection, Any], Awaitable[None]]


@dataclass(eq=False)
class AgentLinks:
    """Every open connection of one agent."""

    name: str
    clients: list[Connection] = field(default_factory=list)

    def send(self, msg: m.Msg) -> None:
        """Send to each connection of the agent (encoded once)."""
        if not self.clients:
            return
        try:
            line = encode(msg)
        except MessageTooLarge:
            log.error("dropped an oversized %s for agent %s", type(msg).__name__, self.name)
            return
        for client in self.clients:
            client.send_line(line)

    def watchers(self, session: str) -> list[Connection]:
        """The connections watching ``session``'s terminal stream.

        Only the connection that accepted the session (the console) and those
        that asked for a picture (a runbook) watch it: a bot's queue watcher
        or a one-shot command must not pile up a user's output.
        """
        return [c for c in self.clients if session in c.streams]

    def unwatch(self, session: str) -> None:
        """The session is over (or back in the queue): nobody watches it any more."""
        for client in self.clients:
            client.streams.discard(session)
