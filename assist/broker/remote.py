"""Agent connections carried between nodes: a user on one node, their agent on another.

The node that holds the user (the *owner*) runs the session as always; the
agent's node opens a *link* to it over the bus and is to the owner one more
connection of that agent, through which it relays the agent's messages about
the session and brings back everything the owner sends (replies, the
terminal stream, chat, grants, signalling). So grants stay decided on the
user's machine, and one node owns each live session.

On the bus a link is the subject ``assist.to.<node>.link.<id>`` of the node
it goes to; each payload starts with a tag: ``O`` opens (JSON: agent, key
fingerprint, the node it comes from), ``D`` carries bytes of the message
stream, ``E`` ends it. One subscription per node carries them all, so the
opening comes before the bytes. Inbound bytes are bounded: a link that
brings more than :data:`INBOUND_LIMIT` unread is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from assist.broker.bus import Bus, Subscription
from assist.transport.channel import MessageChannel
from assist.transport.memory import Pipe
from assist.transport.peer import Peer

log = logging.getLogger(__name__)

INBOUND_LIMIT = 8 * 1024 * 1024
"""Unread bytes a link may bring before it is closed (a peer that floods)."""
CHUNK = 256 * 1024
"""Bytes per bus message when a node writes a lot at once."""


class Open(msgspec.Struct, frozen=True):
    """An agent node opens a link for ``agent`` (logged in with ``fingerprint``)."""

    agent: str
    fingerprint: str
    node: str


LINK_ADDRESS = "node:"
"""How the address of a link's connection starts (``node:<name>``)."""


def over_link(peer: Peer) -> bool:
    """Whether ``peer`` is an agent connected through a link from another node."""
    return peer.address.startswith(LINK_ADDRESS)


def subject(node: str, link: str) -> str:
    """The subject of ``link`` at ``node``."""
    return f"assist.to.{node}.link.{link}"


class BusStream:
    """A byte stream whose far end is another node (see :class:`MessageChannel`)."""

    def __init__(self, bus: Bus, to: str) -> None:
        self._bus = bus
        self._to = to
        self._in = Pipe(INBOUND_LIMIT)
        self._closed = False
        self.lost = ""

    def feed(self, data: bytes) -> None:
        """Bytes from the far end."""
        if len(self._in) + len(data) > INBOUND_LIMIT:
            log.warning("link %s brought more than %d unread bytes: closed", self._to,
                        INBOUND_LIMIT)
            self.close()
            return
        self._in.put(data)

    def ended(self, why: str = "") -> None:
        """The far end closed (or its node is gone)."""
        self.lost = why
        self._closed = True
        self._in.end()

    async def read(self, n: int) -> bytes:
        return await self._in.take(n)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        for start in range(0, len(data), CHUNK):
            self._bus.publish(self._to, b"D" + data[start:start + CHUNK])

    async def drain(self) -> None:
        if self._closed:
            raise ConnectionError("the link is closed")

    def buffered(self) -> int:
        return 0  # the bus does not wait: what it cannot take is dropped and resynced

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus.publish(self._to, b"E")
            self._in.end()


@dataclass(eq=False)
class Link:
    """One link, seen from either end."""

    id: str
    node: str
    """The node at the other end."""
    stream: BusStream
    task: asyncio.Task[None] | None = None
    on_data: Callable[[bytes], None] | None = None
    on_end: Callable[[], None] | None = None


class Links:
    """This node's links: those it serves (owner side) and those it opened (agent side).

    Args:
        node: this node's name.
        bus: the bus between the nodes.
        serve: runs one connection through the hub (as for an SSH client).
    """

    def __init__(self, node: str, bus: Bus,
                 serve: Callable[[MessageChannel, Peer], Awaitable[None]]) -> None:
        self.node = node
        self.bus = bus
        self.serve = serve
        self.served: dict[str, Link] = {}
        self.opened: dict[str, Link] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Listen for links to this node."""
        self._sub = await self.bus.subscribe(f"assist.to.{self.node}.link.*", self._on)

    def stop(self) -> None:
        """Close every link."""
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        for link in [*self.served.values(), *self.opened.values()]:
            link.stream.close()
            self._drop(link)

    def open(self, node: str, agent: str, fingerprint: str,
             on_data: Callable[[bytes], None], on_end: Callable[[], None]) -> Link:
        """Open a link to ``node`` for ``agent``; bytes from it go to ``on_data``."""
        link_id = secrets.token_hex(8)
        stream = BusStream(self.bus, subject(node, link_id))
        link = Link(link_id, node, stream, on_data=on_data, on_end=on_end)
        self.opened[link_id] = link
        self.bus.publish(subject(node, link_id),
                         b"O" + msgspec.json.encode(Open(agent, fingerprint, self.node)))
        return link

    def shut(self, link: Link) -> None:
        """Close a link this node opened, on purpose (its ``on_end`` is not told)."""
        link.stream.close()
        self.opened.pop(link.id, None)

    def node_lost(self, node: str) -> None:
        """``node`` is gone: every link to or from it ends."""
        for link in [*self.served.values(), *self.opened.values()]:
            if link.node == node:
                link.stream.ended(f"node {node} is gone")
                self._drop(link)

    def _drop(self, link: Link) -> None:
        self.served.pop(link.id, None)
        if self.opened.pop(link.id, None) is not None and link.on_end is not None:
            link.on_end()

    def _on(self, subject_: str, payload: bytes) -> None:
        link_id = subject_.rsplit(".", 1)[1]
        tag, data = payload[:1], payload[1:]
        if tag == b"O":
            self._serve(link_id, data)
            return
        link = self.served.get(link_id) or self.opened.get(link_id)
        if link is None:
            return  # a link that ended, or never was
        if tag == b"D":
            if link.on_data is not None:
                link.on_data(data)
            else:
                link.stream.feed(data)
        elif tag == b"E":
            link.stream.ended("closed by the other node")
            self._drop(link)

    def _serve(self, link_id: str, data: bytes) -> None:
        try:
            opening = msgspec.json.decode(data, type=Open)
        except msgspec.DecodeError:
            log.warning("bus: an unreadable link opening")
            return
        if link_id in self.served:
            return
        stream = BusStream(self.bus, subject(opening.node, link_id))
        link = Link(link_id, opening.node, stream)
        self.served[link_id] = link
        peer = Peer("agent", opening.agent, opening.fingerprint, True, LINK_ADDRESS + opening.node)

        async def run() -> None:
            try:
                await self.serve(MessageChannel(stream), peer)
            finally:
                stream.close()
                self.served.pop(link_id, None)

        link.task = asyncio.get_running_loop().create_task(run())

    async def close(self) -> None:
        """Stop, and wait for the served connections to finish."""
        tasks = [link.task for link in self.served.values() if link.task is not None]
        self.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
