"""Coming and going: connections that drop, come back, take over, and restarts.

The hub routes; this module decides what a connection coming or going means
for the sessions involved:

* a waiting user who drops keeps the place (offline) for ``resume_grace``;
* a live session's user who drops leaves the session waiting for
  ``user_grace`` seconds (the agent is told, with :class:`Away`); after it
  the session ends as ``user-lost``;
* an agent who drops leaves its live session waiting ``agent_grace``
  seconds; one that stopped answering (keepalive timeout) already used that
  time up, and its user goes first in the queue at once; the agent is told
  what happened when it connects again;
* the user's place, waiting or live, moves to a new connection with the
  resume token (a reconnect) or, for the same key, with ``takeover`` (a
  second ``assist help``); the connection that held it is told and let go;
* after a broker restart, waiting sessions are back in the queue (offline)
  and live sessions wait for both sides; the session, its events and its
  recording go on in the same session.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from assist.broker.connection import AgentLinks, Connection
from assist.broker.failover import Failover
from assist.broker.live import LiveSession
from assist.core.grants import GrantTable
from assist.core.session import Event, Session, State
from assist.errors import AlreadyWaiting, NotFound, StateError
from assist.protocol import messages as m

if TYPE_CHECKING:
    from assist.broker.hub import Hub


def token_hash(token: str) -> str:
    """Resume tokens are stored hashed: the database never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Presence:
    """Arrivals, departures and returns of users and agents, for one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.lost: dict[str, m.Ended] = {}
        """Agent -> the session that went back to the queue while it was away."""
        self.relayed: set[str] = set()
        """Agents whose connections here are links from their own node (that node
        audits their presence)."""
        self.failover = Failover(hub, self)

    # -- restart -------------------------------------------------------------------------

    def restore(self, sessions: Iterable[Session]) -> int:
        """Take the unfinished sessions of the store back after a (re)start."""
        hub = self.hub
        count = 0
        for session in sessions:
            if session.id in hub.waiting or session.id in hub.live:
                continue  # held here already (claimed back from a node thought gone)
            count += 1
            hub.hold(session)
            if session.state is State.OFFERED:
                hub.ledger.transition(session, Event.DECLINE, "broker", "requeued",
                                      {"why": "restart"})
                hub.enqueue(session, None)
            elif session.state.live:
                live = hub.new_live(session)
                hub.ledger.log(session.id, "suspended", "broker", {"why": "restart"})
                self._wait_for_agent(live, hub.config.agent_grace)
                self._wait_for_user(live)
            else:
                hub.enqueue(session, None)
        return count

    # -- departures ----------------------------------------------------------------------

    def disconnected(self, client: Connection, silent: bool) -> None:
        """``client``'s connection is gone (``silent``: it stopped answering)."""
        hub = self.hub
        if client.peer.role == "agent":
            hub.views.unwatch(client)
            links = hub.agents.get(client.peer.name)
            if links is not None and client in links.clients:
                links.clients.remove(client)
                if not links.clients:
                    self._agent_gone(client.peer.name, silent)
                    return
                for session_id in client.streams:
                    live = hub.live.get(session_id)
                    if live is not None and live.agent is links \
                            and not links.watchers(session_id):
                        # The connection that held the session went, others of the
                        # agent stay (a console beside a script): as if it had gone.
                        self._left(live, silent)
            return
        session_id = client.session or ""
        if session_id in hub.waiting and hub.users.get(session_id) is client:
            # Keep the place: the client reconnects with its resume token.
            del hub.users[session_id]
            hub.queue.set_online(session_id, False)
            hub.views.touch(session_id)
            hub.arm_grace(session_id)
            return
        live = hub.live.get(session_id)
        if live is None or live.user is not client:
            return
        live.user = None
        if live.session.state is State.OFFERED:
            live.to_agent(m.UserLost(session=session_id))
            hub.requeue(live, Event.DECLINE, "user disconnected while offered")
            return
        self._wait_for_user(live)
        live.mark("the user's connection dropped")

    def _wait_for_user(self, live: LiveSession) -> None:
        grace = self.hub.config.user_grace
        live.arm("user-grace", grace, self._user_timeout, live.id)
        live.to_agent(m.Away(session=live.id, who="user", until=self.hub.clock.now() + grace))

    def _user_timeout(self, session_id: str) -> None:
        live = self.hub.live.get(session_id)
        if live is not None and live.user is None:
            self.hub.end(live, f"user:{live.session.user}", "user-lost", False, "",
                         message="the user did not come back")

    def _agent_gone(self, name: str, silent: bool) -> None:
        """The agent's last connection closed."""
        hub = self.hub
        hub.roster.leave(name)
        hub.agents.pop(name, None)
        self.audit_presence(name, "offline")
        self.relayed.discard(name)
        if hub.forwarding is not None:
            hub.forwarding.agent_gone(name)
        hub.views.wallboard_soon()
        for live in [x for x in hub.live.values() if x.session.agent == name]:
            live.agent = None
            self._left(live, silent)

    def _left(self, live: LiveSession, silent: bool) -> None:
        """Nothing of the agent holds ``live`` any more: wait for it, or requeue."""
        hub = self.hub
        if live.agent_away and not silent:
            return  # already waited for (another of its connections went first): the grace runs on
        if live.session.state is State.OFFERED:
            hub.requeue(live, Event.DECLINE, "agent disconnected")
        elif silent or hub.config.agent_grace <= 0:
            why = "agent stopped responding" if silent else "agent disconnected"
            hub.requeue(live, Event.REQUEUE, why, lost=(
                f"your connection {'stopped answering' if silent else 'dropped'}; "
                f"{live.session.user} went back to the front of the queue"))
        else:
            self._wait_for_agent(live, hub.config.agent_grace)
            live.mark(f"agent:{live.session.agent}'s connection dropped")

    def _wait_for_agent(self, live: LiveSession, grace: float) -> None:
        live.agent_away = True
        live.arm("agent-grace", grace, self._agent_timeout, live.id)
        live.tell_user(m.Away(session=live.id, who="agent", until=self.hub.clock.now() + grace))

    def _agent_timeout(self, session_id: str) -> None:
        live = self.hub.live.get(session_id)
        if live is not None and live.agent_away:
            self.hub.requeue(live, Event.REQUEUE, "agent did not come back", lost=(
                f"you were away too long; {live.session.user} went back to the front of "
                "the queue"))

    # -- arrivals ------------------------------------------------------------------------

    def agent_connected(self, client: Connection) -> None:
        """An agent said hello: join its presence, and take back sessions it left."""
        hub = self.hub
        name = client.peer.name
        links = hub.agents.get(name)
        fresh = links is None
        if links is None:
            if client.peer.address.startswith("node:"):
                self.relayed.add(name)
            links = hub.agents[name] = AgentLinks(name)
            hub.roster.join(name, hub.clock.now(), status="away")
            self.audit_presence(name, "away")
        links.clients.append(client)
        lost = self.lost.pop(name, None)
        if lost is not None:
            client.send(lost)
        if not fresh:
            return  # a second connection (a script): it asks for what it needs
        if hub.forwarding is not None:
            hub.forwarding.agent_back(name)
        for live in [x for x in hub.live.values() if x.session.agent == name]:
            if live.agent is None:
                self._agent_back(live, links)
                self.show(live, client)

    def _agent_back(self, live: LiveSession, links: AgentLinks) -> None:
        hub = self.hub
        name = links.name
        live.agent = links
        hub.roster.assign(name, live.id, hub.clock.now())
        self.audit_presence(name, "busy")

    def show(self, live: LiveSession, client: Connection, rid: int = 0) -> None:
        """Give a (re)connected agent connection the session as it stands.

        If the session was waiting for its agent, it has it back. ``rid``: the
        request this answers, carried by each message (for a link from another
        node, which hands them to the connection that asked).
        """
        if live.agent_away:
            live.agent_away = False
            live.cancel("agent-grace")
            self.hub.ledger.audit(f"agent:{client.peer.name}", "agent-back", live.id)
            live.mark(f"agent:{client.peer.name} is back")
            live.tell_user(m.Back(session=live.id, who="agent"))
        client.streams.add(live.id)
        client.send(m.Started(info=live.info(self.hub.config.ice_urls), resumed=True,
                              rid=rid))
        for g in live.grants.live(self.hub.clock.now()):
            client.send(m.GrantAnswer(session=live.id, scope=g.scope, allowed=True,
                                      grant=g.id, expires_at=g.expires_at, restored=True,
                                      rid=rid))
        if live.hidden:
            client.send(m.Hidden(session=live.id, on=True, why=live.hidden, rid=rid))
        if live.user is None:
            until = self.hub.clock.now() + self.hub.config.user_grace
            client.send(m.Away(session=live.id, who="user", until=until, rid=rid))
        live.resync()

    def resume(self, client: Connection, token: str, takeover: bool, rid: int) -> None:
        """A user comes back to a place with its resume token.

        Raises:
            AlreadyWaiting: another connection holds the place and ``takeover``
                is not set (a second ``assist help`` sharing the token file).
            StateError: the token is unknown, someone else's, or its place is gone.
        """
        hub = self.hub
        stored = hub.store.sessions.by_resume(token_hash(token))
        if stored is None:
            raise NotFound("that place in the queue has expired; join again")
        if stored.user != client.peer.name:
            raise NotFound("that place in the queue belongs to someone else; join again")
        if stored.state.final:
            raise NotFound(f"your session {stored.id} ended while you were away "
                           f"({stored.state.value})")
        if stored.id not in hub.waiting and stored.id not in hub.live:
            self.failover.adopt(stored)  # held by a node that is gone: it moves here
        if stored.id not in hub.waiting and stored.id not in hub.live:
            raise NotFound("that place in the queue has expired; join again")
        self.move(client, stored.id, rid, token, takeover, "resume")

    def take_over(self, client: Connection, session_id: str, rid: int) -> None:
        """The same key asks again with ``takeover``: the place moves to this connection."""
        self._check_movable(session_id)
        token = secrets.token_urlsafe(24)
        self.hub.store.sessions.set_resume(session_id, token_hash(token))
        self.move(client, session_id, rid, token, True, "take-over")

    def _check_movable(self, session_id: str) -> None:
        live = self.hub.live.get(session_id)
        if live is not None and live.session.state is State.OFFERED:
            # Transient: the offer is answered or withdrawn within seconds.
            raise StateError("an agent is picking this request up; try again in a moment")

    def move(self, client: Connection, session_id: str, rid: int, token: str,
             takeover: bool, how: str) -> None:
        """Give the place ``session_id`` (waiting or live) to ``client``.

        Everything is checked before anything changes. The connection that
        held the place, if any, is told (:class:`TakenOver`) and let go; it
        keeps its connection but no longer its session.

        Raises:
            AlreadyWaiting: another connection holds the place and ``takeover``
                is not set.
            StateError: an agent is picking the request up right now.
        """
        hub = self.hub
        self._check_movable(session_id)
        live = hub.live.get(session_id)
        old = live.user if live is not None else hub.users.get(session_id)
        if old is not None and old is not client and not takeover:
            raise AlreadyWaiting(hub.holding(session_id), session_id)
        if old is not None and old is not client:
            old.session = None
            old.send(m.TakenOver(session=session_id))
        if live is not None:
            self._user_back(live, client, rid, how, token)
            return
        session = hub.waiting[session_id]
        hub.cancel_grace(session_id)
        hub.queue.set_online(session_id, True)
        client.session = session_id
        hub.users[session_id] = client
        position = hub.queue.position(session_id)
        hub.views.placed(session_id, position)
        hub.views.touch(session_id)
        hub.ledger.audit(f"user:{client.peer.name}", how, session_id)
        client.send(m.Queued(session=session_id, position=position,
                             queued_at=session.queued_at, resume=token, resumed=True, rid=rid))

    def _user_back(self, live: LiveSession, client: Connection, rid: int, how: str,
                   token: str) -> None:
        hub = self.hub
        live.user = client
        client.session = live.id
        live.cancel("user-grace")
        live.evidence = hub.trust.evidence(client)
        live.flush_typed()  # typing under the old grants is in the chain before they go
        if live.grants.live(hub.clock.now()):
            # The user's app says again which grants it still holds (the machine
            # is the authority); until then the agent holds none.
            live.to_agent(m.Revoke(session=live.id, reason="the user's app reconnected"))
        live.grants = GrantTable()
        live.totp_misses = None
        live.asking.clear()  # a new app asks nothing the old one showed
        hidden = live.hidden
        if hidden is not None:
            # Ended here (recorded and audited so); the user's app says again if it
            # still withholds output.
            hub.trust.set_hidden(live, None)
            live.to_agent(m.Hidden(session=live.id, on=False, why=hidden))
        hub.ledger.audit(f"user:{live.session.user}", how, live.id)
        info = live.info(hub.config.ice_urls)
        client.send(m.Started(info=info, resumed=True, resume=token, rid=rid))
        hub.record(live)
        live.mark("the user is back")
        live.to_agent(m.Back(session=live.id, who="user"))
        if how == "take-over":
            # Another terminal of the same key: the agent sees where it runs now.
            live.to_agent(m.Started(info=info, resumed=True))
        live.resync(force=True)

    def audit_presence(self, agent: str, status: str) -> None:
        """Audit an agent's presence change (the report's occupancy is built from these)."""
        if agent in self.relayed:
            return
        self.hub.ledger.audit(f"agent:{agent}", "presence", None, {"status": status})
