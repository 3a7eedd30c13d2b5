"""Sessions this node's agents hold on other nodes (the agent's side of a link).

When an agent accepts a user who waits at another node, the session stays
with that node (its owner) and this node forwards: the agent's messages
about the session go over a :class:`~assist.broker.remote.Links` link, and
what comes back goes to the agent's connections (terminal frames only to
those that watch the session, through their bounded outboxes). The record
outlives the link: if the agent drops and comes back, or the owner node dies
and another takes the session over, the link is opened again and the agent
goes on in the same session.

All of the agent's connections here share the one link, so requests are
renumbered on it: each gets a request id of the link's own, and the answer
goes back to the connection that asked, under its own id (two connections
number their requests alike; an answer to one must never settle the other's
request). A forwarded ``Resync`` is answered by the owner with the session
as it stands (tagged with the request's id, see :meth:`Presence.show
<assist.broker.presence.Presence.show>`) and then ``Ok``; what the node asks
for itself is answered to nobody.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from assist.broker.connection import AgentLinks, Connection
from assist.broker.remote import Link, Links
from assist.errors import ProtocolError
from assist.protocol import PROTOCOL_VERSION, decode, encode
from assist.protocol import messages as m
from assist.protocol.codec import LineBuffer

log = logging.getLogger(__name__)

LINGER = 2.0
"""Seconds a link stays open after its session ended (the last replies come)."""
MAX_ASKED = 256
"""Requests of a forwarded session waiting for the owner's answer, past which the oldest
is forgotten (its asker gave up on it long ago; a message sent with a request id that
the owner never answers must not make this node's memory grow)."""
HELLO_RID = 2**53 - 7
"""The request id of the node's own hello on a link (its welcome is not the agent's)."""
_STREAM = (m.Output, m.Snapshot, m.Resize)


@dataclass(frozen=True)
class Asked:
    """A request forwarded on a link, waiting for its answer."""

    client: Connection | None
    """Who asked (``None``: this node itself; the answer goes to nobody)."""
    rid: int
    """The request id the asker gave it."""
    request: type[m.Msg]


@dataclass(eq=False)
class Forwarded:
    """One session an agent of this node holds at another node."""

    session: str
    owner: str
    agent: str
    fingerprint: str
    link: Link | None = None
    buffer: LineBuffer = field(default_factory=LineBuffer)
    asked: dict[int, Asked] = field(default_factory=dict)
    """Requests on the link not yet answered, by the link's request id."""


class Forwarding:
    """This node's forwarded sessions.

    Args:
        links: the node's links.
        agents: an agent's connections on this node, if any.
        released: told ``(agent, session)`` when a forwarded session is over
            for the agent (ended, requeued, refused): its roster entry frees.
    """

    def __init__(self, links: Links, agents: Callable[[str], AgentLinks | None],
                 released: Callable[[str, str], None]) -> None:
        self.links = links
        self.agents = agents
        self.released = released
        self.sessions: dict[str, Forwarded] = {}
        self._rids = itertools.count(1)

    def accept(self, client: Connection, session: str, rid: int, owner: str) -> None:
        """Take ``session`` at node ``owner`` for the agent of ``client`` (the reply,
        with ``rid``, comes from there)."""
        held = Forwarded(session, owner, client.peer.name, client.peer.fingerprint)
        self.sessions[session] = held
        self._connect(held)
        self._ask(held, m.Accept(session=session, rid=rid), client)

    def _connect(self, held: Forwarded) -> None:
        held.buffer = LineBuffer()
        for asked in held.asked.values():  # asked on a link that is gone: say so now
            if asked.client is not None and asked.rid and not asked.client.closed:
                asked.client.error("connection", "the user's node changed before it "
                                   "answered; try again", asked.rid)
        held.asked.clear()
        held.link = self.links.open(held.owner, held.agent, held.fingerprint,
                                    lambda data: self._down(held, data),
                                    lambda: self._link_ended(held))
        self._send(held, m.Hello(version=PROTOCOL_VERSION, client="assist node",
                                 watch=False, rid=HELLO_RID))

    def _send(self, held: Forwarded, msg: m.Msg) -> None:
        if held.link is not None:
            held.link.stream.write(encode(msg))

    def _ask(self, held: Forwarded, msg: m.Msg, client: Connection | None) -> None:
        """Send a request under a request id of the link's own."""
        while len(held.asked) >= MAX_ASKED:
            del held.asked[next(iter(held.asked))]
        rid = next(self._rids)
        held.asked[rid] = Asked(client, msg.rid, type(msg))
        self._send(held, msgspec.structs.replace(msg, rid=rid))

    def forward(self, client: Connection, msg: m.Msg) -> bool:
        """Send ``client``'s message on if it is about a session its agent holds elsewhere."""
        held = self.sessions.get(str(getattr(msg, "session", "") or ""))
        if held is None or held.agent != client.peer.name:
            return False
        if held.link is None:
            self._connect(held)
        if msg.rid or isinstance(msg, m.Resync):
            self._ask(held, msg, client)
        else:
            self._send(held, msg)
        return True

    def resync(self, session: str) -> bool:
        """A watcher of a forwarded session caught up: ask its owner for a fresh picture
        (which comes in the stream; the session's state is not told again)."""
        held = self.sessions.get(session)
        if held is None:
            return False
        if held.link is None:
            self._connect(held)
        self._ask(held, m.Resync(session=session), None)
        return True

    def _down(self, held: Forwarded, data: bytes) -> None:
        for line in held.buffer.feed(data):
            if isinstance(line, ProtocolError):
                continue
            try:
                msg = decode(line)
            except ProtocolError:
                continue
            if isinstance(msg, m.Welcome) and msg.rid == HELLO_RID:
                continue
            if msg.rid:
                # Every request on the link has a number of the link's own: an answer
                # whose request was forgotten goes to nobody (never under a number that
                # one of the agent's connections uses for something else).
                asked = held.asked.get(msg.rid)
                if asked is not None:
                    self._answer(held, msg.rid, asked, msg)
                continue
            whole = line + b"\n"  # the buffer gives lines without their end
            links = self.agents(held.agent)
            if links is not None:
                if isinstance(msg, _STREAM):
                    for watcher in links.watchers(held.session):
                        watcher.outbox.stream(held.session, whole)
                else:
                    for client in links.clients:
                        client.send_line(whole)
            if isinstance(msg, m.Ended | m.UserLost) and msg.session == held.session \
                    and self.sessions.get(held.session) is held:
                self.finish(held.session, linger=LINGER)

    def _answer(self, held: Forwarded, rid: int, asked: Asked, msg: m.Msg) -> None:
        """An answer to a request on the link: to the connection that asked, as it asked."""
        # A Resync is answered with the session as it stands, then Ok (or an error).
        final = asked.request is not m.Resync or isinstance(msg, m.Ok | m.Error)
        if final:
            del held.asked[rid]
        client = asked.client
        if client is not None and not client.closed:
            client.send(msgspec.structs.replace(msg, rid=asked.rid if final else 0))
            if isinstance(msg, m.Ok) and asked.request is m.Resync:
                client.streams.add(held.session)  # it watches the stream from now on
        if self.sessions.get(held.session) is not held:
            return
        if (isinstance(msg, m.Ok) and asked.request is m.Handoff) \
                or (isinstance(msg, m.Error) and asked.request is m.Accept):
            # Handed on (back in the queue at its node), or not taken after all.
            self.finish(held.session, linger=LINGER)

    def finish(self, session: str, linger: float = 0.0) -> None:
        """The session is over for this node's agent: free the agent, close its link
        (after ``linger`` seconds, for the replies still on their way)."""
        held = self.sessions.pop(session, None)
        if held is None:
            return
        self.released(held.agent, session)
        if held.link is not None:
            asyncio.get_running_loop().call_later(linger, self.links.shut, held.link)

    def _let_go(self, held: Forwarded) -> None:
        """Close the session's link, keeping the record (a new link may follow)."""
        if held.link is not None:
            link, held.link = held.link, None
            self.links.shut(link)

    def _relink(self, held: Forwarded) -> None:
        """Go on over a new link to the session's owner, from a fresh picture."""
        self._let_go(held)
        self._connect(held)
        self._send(held, m.Resync(session=held.session))

    def _link_ended(self, held: Forwarded) -> None:
        # The owner closed it or is gone; the record stays for a new link.
        held.link = None

    def agent_gone(self, agent: str) -> None:
        """The agent's last connection here closed: its links close (the owner waits
        for it as for any agent who dropped)."""
        for held in self.of(agent):
            self._let_go(held)

    def agent_back(self, agent: str) -> None:
        """The agent is connected here again: its sessions elsewhere go on."""
        for held in self.of(agent):
            if held.link is None:
                self._relink(held)

    def restarted(self, node: str) -> None:
        """``node`` started again: the sessions held there go on over new links."""
        for held in self.owned_by(node):
            self._relink(held)

    def moved(self, session: str, holder: str) -> None:
        """The session's owner is gone and ``holder`` took it over: link there instead."""
        held = self.sessions.get(session)
        if held is None:
            return
        held.owner = holder
        self._relink(held)

    def of(self, agent: str) -> list[Forwarded]:
        """The forwarded sessions of ``agent``."""
        return [held for held in self.sessions.values() if held.agent == agent]

    def owned_by(self, node: str) -> list[Forwarded]:
        """The forwarded sessions whose owner is ``node``."""
        return [held for held in self.sessions.values() if held.owner == node]
