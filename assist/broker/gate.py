"""Who gets in and how fast: connection limits, the message budget, a fair reader.

Every client connection is read here. A key may hold :data:`MAX_PER_KEY`
connections at once and one address :data:`MAX_GUESTS` unregistered ones.
Each message is charged against the connection's budget before it is even
decoded; a client over its budget is told, then not read for a while (SSH
flow control keeps the rest of its flood on its side), and cut off after
repeated strikes. The reader yields to the loop after every message, so one
busy client never delays the others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from assist.broker.connection import Connection
from assist.core.budget import Verdict
from assist.core.clock import Clock
from assist.errors import ProtocolError
from assist.protocol import decode
from assist.protocol import messages as m
from assist.protocol.codec import DecodeFailure
from assist.transport.channel import ChannelClosed, MessageChannel
from assist.transport.peer import Peer

log = logging.getLogger("assist.broker.hub")

MAX_PAUSE = 5.0
"""Longest a client over its budget goes unread."""
MAX_PER_KEY = 32
"""Connections one key may hold at once (an agent's console and its scripts)."""
MAX_GUESTS = 64
"""Connections of unregistered users from one address at once."""
_STREAM = b'{"t":"output"'
"""How a terminal-output line starts (the encoder writes the tag first)."""

Dispatch = Callable[[Connection, m.Msg], Awaitable[None]]


class Gate:
    """Admits and reads every client connection of one hub.

    Args:
        clock: time and sleeps (the budget's pauses).
        dispatch: handles one decoded message.
        gone: told when a connection ends (``silent``: it stopped answering).
        resync: asked for a fresh picture of the session ``client`` shares,
            after terminal frames of it were refused.
    """

    def __init__(self, clock: Clock, dispatch: Dispatch,
                 gone: Callable[[Connection, bool], None],
                 resync: Callable[[str], None]) -> None:
        self.clock = clock
        self.dispatch = dispatch
        self.gone = gone
        self.resync = resync
        self._count: collections.Counter[str] = collections.Counter()

    def over_limit(self, peer: Peer) -> str:
        """Why ``peer`` may not open one more connection ("" if it may)."""
        if self._count[peer.fingerprint] >= MAX_PER_KEY:
            return (f"this key has {MAX_PER_KEY} connections to the broker already; "
                    "close some first")
        if not peer.registered and self._count[f"guests@{peer.address}"] >= MAX_GUESTS:
            return f"{MAX_GUESTS} unregistered users are connected from {peer.address} already"
        return ""

    async def serve(self, channel: MessageChannel, peer: Peer, hello_within: float = 0
                    ) -> None:
        """Run one client's control channel until it closes.

        ``hello_within``: seconds the client has to complete its hello (0: no limit).
        """
        client = Connection(channel, peer, now=self.clock.now(), on_resync=self.resync)
        client.log = logging.LoggerAdapter(log, {"peer": f"{peer.role}:{peer.name}"})
        client.log.info("connected from %s", peer.address)
        refusal = self.over_limit(peer)
        if refusal:
            client.log.warning("refused: %s", refusal)
            client.kick("too-many-connections", refusal)
            return
        client.counted = [peer.fingerprint] + (
            [] if peer.registered else [f"guests@{peer.address}"])
        self._count.update(client.counted)
        deadline = self.clock.call_later(hello_within, self._too_slow, client) \
            if hello_within else None
        silent = False
        try:
            await self._read(client)
        except ChannelClosed as exc:
            silent = exc.silent
        finally:
            if deadline is not None:
                deadline.cancel()
            self._uncount(client, client.counted)
            self.gone(client, silent)
            client.close()
            client.log.info("disconnected%s", " (stopped answering)" if silent else "")

    def admitted(self, client: Connection) -> None:
        """``client`` proved who it is after connecting (a certificate): it no longer
        takes an unregistered user's place."""
        guests = [key for key in client.counted if key.startswith("guests@")]
        self._uncount(client, guests)

    def _uncount(self, client: Connection, keys: list[str]) -> None:
        self._count.subtract(keys)
        for key in keys:
            if self._count[key] <= 0:
                del self._count[key]
        client.counted = [key for key in client.counted if key not in keys]

    @staticmethod
    def _too_slow(client: Connection) -> None:
        if not client.hello and not client.closed:
            client.kick("auth", "no hello in time: connect again")

    async def _read(self, client: Connection) -> None:
        channel = client.channel
        while not client.closed:
            refused: ProtocolError | None = None
            try:
                line = await channel.recv_line()
            except ProtocolError as exc:
                line, refused = b"", exc
            stream = line.startswith(_STREAM)
            verdict = client.admit(channel.last_size, self.clock.now(), stream)
            if verdict is Verdict.DISCONNECT:
                client.log.warning("kept flooding past its budget: disconnected")
                client.kick("rate-limit", "too many messages: disconnected")
                return
            if verdict is Verdict.REFUSE:
                # Read nothing for a while: SSH flow control keeps the rest of the
                # flood on the client's side. Screen frames dropped meanwhile are
                # repaired by a fresh picture afterwards.
                await self.clock.sleep(min(MAX_PAUSE, client.budget.pause()))
                if stream and client.session is not None:
                    self.resync(client.session)
                continue
            if refused is not None:
                client.error(refused.code, refused.message)
            else:
                await self._handle(client, line)
            if channel.ready:
                # One message at a time, then the others' turn. With nothing
                # buffered the read below waits anyway, and that costs nothing
                # extra on the keystroke path (a loop pass is dear there).
                await asyncio.sleep(0)

    async def _handle(self, client: Connection, line: bytes) -> None:
        try:
            msg = decode(line)
        except ProtocolError as exc:
            rid = exc.rid if isinstance(exc, DecodeFailure) else 0
            client.error(exc.code, exc.message, rid)
            return
        await self.dispatch(client, msg)
