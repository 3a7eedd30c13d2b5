"""A message channel over any byte stream.

The channel frames :mod:`assist.protocol` messages as JSON lines. ``recv``
raises the protocol's own errors for a bad line and then carries on with the
next one, so one malformed message never costs the connection.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from assist.errors import ConnectionFailed, ProtocolError
from assist.protocol import MAX_MESSAGE_BYTES, LineBuffer, Message, decode, encode
from assist.protocol.messages import Msg

READ_SIZE = 256 * 1024


class ByteStream(Protocol):
    """What a channel needs from a transport."""

    async def read(self, n: int) -> bytes:
        """Return up to ``n`` bytes; ``b""`` at end of stream."""
        ...

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending."""
        ...

    async def drain(self) -> None:
        """Wait until the write buffer is below its high-water mark."""
        ...

    def buffered(self) -> int:
        """Bytes written but not yet sent."""
        ...

    def close(self) -> None:
        """Close the stream (idempotent)."""
        ...


class ChannelClosed(ConnectionFailed):
    """The peer closed the channel or the connection was lost.

    Attributes:
        silent: the peer stopped answering (keepalive timeout) rather than
            closing: a stopped process or a cut network.
    """

    code = "closed"

    def __init__(self, message: str, silent: bool = False) -> None:
        super().__init__(message)
        self.silent = silent


class Outlet(Protocol):
    """Where a client part sends its messages: a channel, or a link that outlives channels."""

    def send_nowait(self, msg: Msg) -> None:
        """Queue ``msg``; raises ``ChannelClosed`` when there is no connection."""
        ...

    def buffered(self) -> int:
        """Bytes queued for the broker but not yet sent."""
        ...


class MessageChannel:
    """Send and receive protocol messages over a :class:`ByteStream`."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._buffer = LineBuffer()
        self._pending: deque[bytes | ProtocolError] = deque()
        self._closed = False
        self._full_read = False
        self.last_size = 0
        """Size in bytes of the line :meth:`recv` last returned (or refused)."""

    @property
    def closed(self) -> bool:
        """True once either side closed the channel."""
        return self._closed

    def buffered(self) -> int:
        """Bytes queued for the peer but not yet sent (for lag detection)."""
        return self._stream.buffered()

    @property
    def ready(self) -> bool:
        """The next :meth:`recv_line` may return without waiting: a line read earlier
        waits, or the last read filled its buffer and the stream may hold more.

        Otherwise the next read waits for the transport, and so lets every other
        task and callback run first: a reader that wants to be fair yields itself
        only while this is true.
        """
        return bool(self._pending) or self._full_read

    async def drain(self) -> None:
        """Wait until the transport takes more (its buffer is under the high-water mark).

        Raises:
            ChannelClosed: if the connection was lost.
        """
        try:
            await self._stream.drain()
        except (ConnectionError, BrokenPipeError, OSError) as exc:
            self._closed = True
            raise ChannelClosed(f"the connection was lost: {exc}") from None

    def send_nowait(self, msg: Msg) -> None:
        """Queue ``msg`` without waiting for the transport to drain.

        Raises:
            ChannelClosed: if the channel is closed.
            MessageTooLarge: if the message is over the size limit.
        """
        if self._closed:
            raise ChannelClosed("the connection is closed")
        self._stream.write(encode(msg))

    def send_raw(self, line: bytes) -> None:
        """Queue an already encoded message line (used to relay without re-encoding)."""
        if self._closed:
            raise ChannelClosed("the connection is closed")
        self._stream.write(line)

    async def send(self, msg: Msg) -> None:
        """Send ``msg`` and wait for the transport to accept it (backpressure)."""
        self.send_nowait(msg)
        await self.drain()

    async def recv(self) -> Message:
        """Return the next message (see :meth:`recv_line`, then decoded).

        Raises:
            ChannelClosed: at end of stream.
            ProtocolError: for a line that is not a valid message; the
                channel stays usable and the next call reads the next line.
        """
        return decode(await self.recv_line())

    async def recv_line(self) -> bytes:
        """Return the next message line, not yet decoded (the broker budgets it first).

        Raises:
            ChannelClosed: at end of stream.
            MessageTooLarge: for a line over the size limit; the channel stays
                usable and the next call reads the next line.
        """
        while not self._pending:
            if self._closed:
                raise ChannelClosed("the connection is closed")
            try:
                data = await self._stream.read(READ_SIZE)
                self._full_read = len(data) >= READ_SIZE
            except (ConnectionError, OSError) as exc:
                data = b""
                reason = f"the connection was lost: {exc}"
            else:
                reason = "the peer closed the connection"
            if not data:
                self._closed = True
                lost = str(getattr(self._stream, "lost", "") or "")
                if lost == "silent":
                    raise ChannelClosed("the peer stopped answering", silent=True)
                raise ChannelClosed(f"the connection was lost: {lost}" if lost else reason)
            self._pending.extend(self._buffer.feed(data))
        item = self._pending.popleft()
        if isinstance(item, ProtocolError):
            self.last_size = MAX_MESSAGE_BYTES
            raise item
        self.last_size = len(item)
        return item

    def close(self) -> None:
        """Close the channel and its stream."""
        self._closed = True
        self._stream.close()
