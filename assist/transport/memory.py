"""An in-process byte stream pair, for tests of everything above the transport."""

from __future__ import annotations

import asyncio

from assist.transport.channel import MessageChannel


class MemoryStream:
    """One end of an in-memory duplex stream."""

    def __init__(self, inbound: asyncio.StreamReader, outbound: asyncio.StreamReader) -> None:
        self._in = inbound
        self._out = outbound
        self._closed = False

    async def read(self, n: int) -> bytes:
        """Return up to ``n`` bytes, ``b""`` once the peer closed."""
        return await self._in.read(n)

    def write(self, data: bytes) -> None:
        """Deliver ``data`` to the peer at once."""
        if not self._closed:
            self._out.feed_data(data)

    async def drain(self) -> None:
        """Nothing to wait for: writes are delivered immediately."""

    def buffered(self) -> int:
        """Always 0: nothing waits in between."""
        return 0

    def close(self) -> None:
        """Signal end of stream to both sides."""
        if not self._closed:
            self._closed = True
            self._out.feed_eof()
            self._in.feed_eof()


def stream_pair() -> tuple[MemoryStream, MemoryStream]:
    """Return two connected streams."""
    a_to_b, b_to_a = asyncio.StreamReader(), asyncio.StreamReader()
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)


def channel_pair() -> tuple[MessageChannel, MessageChannel]:
    """Return two connected message channels."""
    a, b = stream_pair()
    return MessageChannel(a), MessageChannel(b)
