"""An in-process byte stream pair, for tests of everything above the transport.

Each direction is a :class:`Pipe` with a capacity: what the reader has not
read yet counts as the writer's :meth:`~MemoryStream.buffered` bytes, and
:meth:`~MemoryStream.drain` waits while it is over the capacity, as a real
socket's flow control does. So a test can play a client that never reads.
"""

from __future__ import annotations

import asyncio

from assist.transport.channel import MessageChannel

CAPACITY = 64 * 1024
"""Unread bytes past which a writer's ``drain`` waits (like SSH's high-water mark)."""


class Pipe:
    """One direction: bytes written by one end, read by the other."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._data = bytearray()
        self._eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __len__(self) -> int:
        return len(self._data)

    def put(self, data: bytes) -> None:
        if self._eof or not data:
            return
        self._data += data
        self._readable.set()
        if len(self._data) > self.capacity:
            self._writable.clear()

    def end(self) -> None:
        self._eof = True
        self._readable.set()
        self._writable.set()

    async def take(self, n: int) -> bytes:
        while not self._data and not self._eof:
            self._readable.clear()
            await self._readable.wait()
        out = bytes(self._data[:n])
        del self._data[:n]
        if len(self._data) <= self.capacity:
            self._writable.set()
        return out

    async def room(self) -> None:
        await self._writable.wait()


class MemoryStream:
    """One end of an in-memory duplex stream."""

    def __init__(self, inbound: Pipe, outbound: Pipe) -> None:
        self._in = inbound
        self._out = outbound
        self._closed = False
        self.lost = ""

    async def read(self, n: int) -> bytes:
        """Return up to ``n`` bytes, ``b""`` once the peer closed."""
        return await self._in.take(n)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the peer."""
        if not self._closed:
            self._out.put(data)

    async def drain(self) -> None:
        """Wait while the peer has more than the capacity unread."""
        await self._out.room()
        if self._closed:
            raise ConnectionError("the stream is closed")

    def buffered(self) -> int:
        """Bytes written that the peer has not read yet."""
        return len(self._out)

    def close(self) -> None:
        """Signal end of stream to both sides."""
        if not self._closed:
            self._closed = True
            self._out.end()
            self._in.end()


def stream_pair(capacity: int = CAPACITY) -> tuple[MemoryStream, MemoryStream]:
    """Return two connected streams."""
    a_to_b, b_to_a = Pipe(capacity), Pipe(capacity)
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)


def channel_pair(capacity: int = CAPACITY) -> tuple[MessageChannel, MessageChannel]:
    """Return two connected message channels."""
    a, b = stream_pair(capacity)
    return MessageChannel(a), MessageChannel(b)
