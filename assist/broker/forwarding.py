"""Sessions this node's agents hold on other nodes (the agent's side of a link).

When an agent accepts a user who waits at another node, the session stays
with that node (its owner) and this node forwards: the agent's messages
about the session go over a :class:`~assist.broker.remote.Links` link, and
what comes back goes to the agent's connections (terminal frames only to
those that watch the session, through their bounded outboxes). The record
outlives the link: if the agent drops and comes back, or the owner node dies
and another takes the session over, the link is opened again and the agent
goes on in the same session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from assist.broker.connection import AgentLinks
from assist.broker.remote import Link, Links
from assist.errors import ProtocolError
from assist.protocol import PROTOCOL_VERSION, decode, encode
from assist.protocol import messages as m
from assist.protocol.codec import LineBuffer

log = logging.getLogger(__name__)

LINGER = 2.0
"""Seconds a link stays open after its session ended (the last replies come)."""
HELLO_RID = 2**53 - 7
"""The request id of the node's own hello on a link (its welcome is not the agent's)."""
_STREAM = (m.Output, m.Snapshot, m.Resize)


@dataclass(eq=False)
class Forwarded:
    """One session an agent of this node holds at another node."""

    session: str
    owner: str
    agent: str
    fingerprint: str
    accept_rid: int = 0
    link: Link | None = None
    buffer: LineBuffer = field(default_factory=LineBuffer)


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

    def accept(self, agent: str, fingerprint: str, session: str, rid: int, owner: str) -> None:
        """Take ``session`` at node ``owner`` for ``agent`` (the reply, with ``rid``,
        comes from there)."""
        held = Forwarded(session, owner, agent, fingerprint, accept_rid=rid)
        self.sessions[session] = held
        self._connect(held)
        self._send(held, m.Accept(session=session, rid=rid))

    def _connect(self, held: Forwarded) -> None:
        held.buffer = LineBuffer()
        held.link = self.links.open(held.owner, held.agent, held.fingerprint,
                                    lambda data: self._down(held, data),
                                    lambda: self._link_ended(held))
        self._send(held, m.Hello(version=PROTOCOL_VERSION, client="assist node",
                                 watch=False, rid=HELLO_RID))

    def _send(self, held: Forwarded, msg: m.Msg) -> None:
        if held.link is not None:
            held.link.stream.write(encode(msg))

    def forward(self, agent: str, msg: m.Msg) -> bool:
        """Send ``agent``'s message on if it is about a session it holds elsewhere."""
        held = self.sessions.get(str(getattr(msg, "session", "") or ""))
        if held is None or held.agent != agent:
            return False
        if held.link is None:
            self._connect(held)
        self._send(held, msg)
        return True

    def resync(self, session: str) -> bool:
        """A watcher of a forwarded session caught up: ask its owner for a fresh picture."""
        held = self.sessions.get(session)
        return held is not None and self.forward(held.agent, m.Resync(session=session))

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
            whole = line + b"\n"  # the buffer gives lines without their end
            links = self.agents(held.agent)
            if links is not None:
                if isinstance(msg, _STREAM):
                    for watcher in links.watchers(held.session):
                        watcher.outbox.stream(held.session, whole)
                else:
                    for client in links.clients:
                        client.send_line(whole)
            if self._over(held, msg) and self.sessions.get(held.session) is held:
                self.finish(held.session, linger=LINGER)

    @staticmethod
    def _over(held: Forwarded, msg: m.Msg) -> bool:
        if isinstance(msg, m.Ended | m.UserLost):
            return msg.session == held.session
        return isinstance(msg, m.Error) and msg.rid == held.accept_rid and held.accept_rid != 0

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
        held.owner, held.accept_rid = holder, 0
        self._relink(held)

    def of(self, agent: str) -> list[Forwarded]:
        """The forwarded sessions of ``agent``."""
        return [held for held in self.sessions.values() if held.agent == agent]

    def owned_by(self, node: str) -> list[Forwarded]:
        """The forwarded sessions whose owner is ``node``."""
        return [held for held in self.sessions.values() if held.owner == node]
