"""A request/reply and event link to the broker, over one channel at a time.

Requests carry a fresh ``rid``; the broker's answer with the same ``rid``
completes the request (an ``Error`` answer raises). Everything else the
broker sends is an event: delivered to :meth:`Link.events` consumers and to
any :meth:`Link.wait_for` waiters.

A link outlives its channel: after a reconnect, :meth:`Link.rebind` carries
it on over the new one, so the parts that send through it (the terminal
share, the grant guard, media signalling) never hold a dead connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from assist.errors import AssistError, ConnectionFailed, ProtocolError, StateError
from assist.protocol import messages as m
from assist.transport.channel import ChannelClosed, MessageChannel

log = logging.getLogger(__name__)

T = TypeVar("T", bound=m.Msg)
EVENT_BACKLOG = 2_000
"""Events held for a consumer that is behind; past it the oldest screen frame or view
goes first (a snapshot or a fresh page repairs those), control events last."""
DROPPABLE = (m.Output, m.Snapshot, m.Position, m.Wallboard, m.QueueDelta, m.QueuePage)


class _Events:
    """The bounded event queue of a link; ``None`` marks where a connection ended."""

    def __init__(self, limit: int = EVENT_BACKLOG) -> None:
        self._limit = limit
        self._items: collections.deque[m.Msg | None] = collections.deque()
        self._ready = asyncio.Event()
        self.dropped_stream = False
        """A screen frame was dropped: the viewer should ask for a snapshot."""

    def empty(self) -> bool:
        return not self._items

    def put(self, item: m.Msg | None) -> None:
        if len(self._items) >= self._limit:
            self._drop_one()
        self._items.append(item)
        self._ready.set()

    def _drop_one(self) -> None:
        for index, old in enumerate(self._items):
            if isinstance(old, DROPPABLE):
                del self._items[index]
                self.dropped_stream |= isinstance(old, m.Output | m.Snapshot)
                return
        self._items.popleft()

    async def get(self) -> m.Msg | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def forget_ends(self) -> None:
        """Drop the end marks of connections gone (a new one starts): events stay."""
        self._items = collections.deque(i for i in self._items if i is not None)


class BrokerError(AssistError):
    """The broker answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Waiter:
    match: Callable[[m.Msg], bool]
    future: asyncio.Future[m.Msg]


class Link:
    """Talk to the broker over ``channel``; call :meth:`start` before use."""

    def __init__(self, channel: MessageChannel, on_close: Callable[[], object] | None = None):
        self.channel = channel
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[m.Msg]] = {}
        self._waiters: list[_Waiter] = []
        self._events = _Events()
        self._reader: asyncio.Task[None] | None = None
        self._on_close = on_close
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.fast: Callable[[m.Msg], bool] | None = None
        """Handles hot-path events (keystrokes, terminal output) in the reader itself,
        skipping the event queue and a task switch; returns True if it took the
        event. Used only while the queue is empty, so events keep their order."""

    def start(self) -> None:
        """Start reading from the channel."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    def rebind(self, channel: MessageChannel,
               on_close: Callable[[], object] | None = None) -> None:
        """Carry on over ``channel`` (a new connection) once the old one is closed.

        Raises:
            StateError: if the link is still reading from a live channel.
        """
        if self._reader is not None and not self._reader.done():
            raise StateError("the link is still connected")
        self.channel = channel
        self._on_close = on_close
        self._reader = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        # The old connection's end is behind us: an events() loop over the new
        # one must not stop at it.
        self._events.forget_ends()
        self.start()

    def send_nowait(self, msg: m.Msg) -> None:
        """Queue ``msg`` on the current channel.

        Raises:
            ChannelClosed: while there is no connection.
            MessageTooLarge: if the message is over the size limit.
        """
        self.channel.send_nowait(msg)

    def buffered(self) -> int:
        """Bytes queued for the broker but not yet sent."""
        return self.channel.buffered()

    async def _read(self) -> None:
        reason = "the broker closed the connection"
        try:
            while True:
                try:
                    msg = await self.channel.recv()
                except ProtocolError as exc:
                    log.warning("bad message from broker: %s", exc)
                    continue
                self._deliver(msg)
        except ChannelClosed as exc:
            reason = exc.message
        finally:
            self.close_reason = reason
            failure = ConnectionFailed(f"lost the connection to the broker ({reason})")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(failure)
            for waiter in self._waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(failure)
            self._pending.clear()
            self._waiters.clear()
            self._push(None)
            self.closed.set()

    def _deliver(self, msg: m.Msg) -> None:
        future = self._pending.pop(msg.rid, None) if msg.rid else None
        if future is not None:
            if not future.done():
                future.set_result(msg)
            return
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.match(msg):
                waiter.future.set_result(msg)
        if self.fast is not None and self._events.empty() and self.fast(msg):
            return
        self._push(msg)

    def _push(self, msg: m.Msg | None) -> None:
        # A consumer that stopped reading must not make memory grow without bound.
        self._events.put(msg)

    @property
    def dropped_stream(self) -> bool:
        """A screen frame was dropped for a consumer that was behind (read once)."""
        dropped, self._events.dropped_stream = self._events.dropped_stream, False
        return dropped

    async def request(self, msg: m.Msg, expect: type[T], timeout: float = 10.0) -> T:
        """Send a request and return the broker's typed answer.

        Raises:
            BrokerError: if the broker answered with an error.
            ConnectionFailed: if the connection is lost or the broker is silent.
        """
        reply = await self.request_any(msg, (expect,), timeout)
        assert isinstance(reply, expect)
        return reply

    async def request_any(self, msg: m.Msg, expect: tuple[type[m.Msg], ...],
                          timeout: float = 10.0) -> m.Msg:
        """Send a request whose answer may be one of several types.

        Raises:
            BrokerError: if the broker answered with an error.
            ConnectionFailed: if the connection is lost or the broker is silent.
        """
        rid = next(self._ids)
        future: asyncio.Future[m.Msg] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self.channel.send(_with_rid(msg, rid))
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ConnectionFailed(f"the broker did not answer in {timeout:g} s") from None
        except ChannelClosed as exc:
            raise ConnectionFailed(f"lost the connection to the broker ({exc.message})") from None
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, m.Error):
            raise BrokerError(reply.code, reply.message)
        if not isinstance(reply, expect):
            names = " or ".join(t.__name__ for t in expect)
            raise ProtocolError(f"expected {names} from the broker, got "
                                f"{type(reply).__name__}")
        return reply

    async def send(self, msg: m.Msg) -> None:
        """Send a message that has no answer."""
        try:
            await self.channel.send(msg)
        except ChannelClosed as exc:
            raise ConnectionFailed(f"lost the connection to the broker ({exc.message})") from None

    async def wait_for(self, match: Callable[[m.Msg], bool], timeout: float | None = None) -> m.Msg:
        """Wait for the next event that satisfies ``match``.

        Raises:
            ConnectionFailed: if the connection drops first.
            StateError: on timeout.
        """
        if self.closed.is_set():
            raise ConnectionFailed(f"lost the connection to the broker ({self.close_reason})")
        waiter = _Waiter(match, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            raise StateError(f"nothing happened within {timeout:g} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def events(self) -> AsyncIterator[m.Msg]:
        """Yield broker events until the connection closes."""
        while True:
            msg = await self._events.get()
            if msg is None:
                return
            yield msg

    async def close(self) -> None:
        """Close the channel and stop reading."""
        self.channel.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._on_close is not None:
            result = self._on_close()
            if asyncio.iscoroutine(result):
                await result


def _with_rid(msg: m.Msg, rid: int) -> m.Msg:
    return msgspec.structs.replace(msg, rid=rid)
