"""The broker's live state: who is connected, who waits, who helps whom.

Ownership, one owner for each live thing:

* the hub owns the waiting queue, the agent roster and the connections of
  waiting users; it makes every transition through the
  :class:`~assist.broker.ledger.Ledger` (apply, save, audit in one place);
* each session an agent holds is a :class:`~assist.broker.live.LiveSession`
  that owns its participants, grants mirror, recording and timers; the
  relay and trust handlers act on the session the hub hands them;
* each connection is a :class:`~assist.broker.connection.Connection` with a
  bounded outbox and a message budget;
* queue, wallboard and position views are built once per tick in
  :class:`~assist.broker.views.Views`.

Either side of a live session may drop and come back (a network blip, a
broker restart): the session waits for the user for ``user_grace`` seconds
and for the agent for ``agent_grace``; an agent who does not come back
leaves the user first in the queue. The hub knows nothing of SSH: a client
is a :class:`~assist.transport.MessageChannel` plus the authenticated
:class:`~assist.transport.peer.Peer`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from assist.broker.authorities import Authorities
from assist.broker.cluster import Cluster
from assist.broker.connection import AgentLinks, Connection
from assist.broker.enrolment import make_invite
from assist.broker.figures import TodayFigures
from assist.broker.forwarding import Forwarding
from assist.broker.gate import Gate
from assist.broker.hello import Greeter
from assist.broker.ledger import Ledger
from assist.broker.live import LiveSession
from assist.broker.presence import Presence, token_hash
from assist.broker.relay import LiveHandler, Relay
from assist.broker.remote import Links, over_link
from assist.broker.trust import Trust
from assist.broker.views import Views
from assist.config import BrokerConfig
from assist.core import metrics
from assist.core.clock import Clock, Timer
from assist.core.queue import Queue, Roster, Waiting
from assist.core.session import Event, Session, State
from assist.core.text import one_line
from assist.errors import AlreadyWaiting, AssistError, NotFound, ProtocolError, StateError
from assist.protocol import messages as m
from assist.store import Store
from assist.transport.channel import MessageChannel
from assist.transport.peer import Peer

log = logging.getLogger(__name__)

Handler = Callable[[Connection, Any], Awaitable[None]]


HELLO_DEADLINE = 10.0
"""Seconds an unregistered key has to show its certificate in a hello."""


class Hub:
    """Queue, routing and session lifecycle for every connected client."""

    def __init__(self, config: BrokerConfig, store: Store, clock: Clock,
                 authorities: Authorities | None = None) -> None:
        self.config = config
        self.authorities = authorities or Authorities()
        self.store = store
        self.clock = clock
        self.ledger = Ledger(store, clock)
        self.queue = Queue()
        self.roster = Roster()
        self.waiting: dict[str, Session] = {}
        """Sessions in the queue."""
        self.users: dict[str, Connection] = {}
        """Waiting session -> its user's connection (online users only)."""
        self.live: dict[str, LiveSession] = {}
        """Sessions an agent holds (offered or live)."""
        self.agents: dict[str, AgentLinks] = {}
        self.by_key: dict[str, set[str]] = {}
        """Key fingerprint -> its unfinished sessions (one request per key)."""
        self._grace: dict[str, Timer] = {}
        self.closed = False
        self.cluster: Cluster | None = None
        """This node among the helpdesk's nodes (set by the broker when it starts)."""
        self.links: Links | None = None
        self.forwarding: Forwarding | None = None
        """Sessions this node's agents hold at other nodes (set with :attr:`cluster`)."""
        self.today = TodayFigures(store, refresh=5.0 if config.bus else None)
        self.views = Views(self.queue, clock, self.wallboard, self.users.get)
        self.presence = Presence(self)
        self.ledger.moved = self.presence.failover.moved_away
        self.gate = Gate(clock, self._dispatch, self._gone, self._resync)
        self.greeter = Greeter(config.name, self.authorities, store.directory, self.ledger,
                               config.allow_unregistered_users, self.gate.admitted,
                               self._agent_hello)
        self.relay = Relay(self.ledger)
        self.trust = Trust(self.ledger, store.directory, config.require_verification)
        self._handlers: dict[str, dict[type[m.Msg], Handler]] = {
            "user": {
                m.Join: self._on_join, m.Leave: self._on_leave, m.Ready: self._on_ready,
                m.End: self._on_user_end, m.Ping: self._on_ping, m.Survey: self._on_survey,
            },
            "agent": {
                m.ListQueue: self._on_list, m.SetStatus: self._on_status,
                m.Accept: self._on_accept, m.End: self._on_agent_end, m.Ping: self._on_ping,
                m.Handoff: self._on_handoff, m.ListRootCauses: self._on_root_causes,
                m.Resync: self._on_agent_resync, m.MakeInvite: self._on_make_invite,
            },
        }
        self._live_handlers: dict[str, dict[type[m.Msg], LiveHandler]] = {"user": {},
                                                                          "agent": {}}
        for part in (self.relay, self.trust):
            for role, table in part.handlers().items():
                self._live_handlers[role].update(table)

    # -- lifecycle ---------------------------------------------------------------

    def restore(self) -> int:
        """Load unfinished sessions after a (re)start; return how many there are.

        Waiting users keep their place, offline until they resume with their
        token. Live sessions go on once both sides are back (see
        :class:`~assist.broker.presence.Presence`).
        """
        # On its own a broker restores every unfinished session; among several, its own
        # (those of a store from before nodes become its own first: one node takes
        # each), and it writes only those.
        node = self.config.node_name if self.config.bus else None
        if node is not None:
            self.store.sessions.fenced = True
            self.store.sessions.claim("", self.clock.now())
        return self.presence.restore(self.store.sessions.unfinished(node))

    def close(self) -> None:
        """Cancel timers and close recordings (the store keeps all that restore needs)."""
        self.closed = True
        for timer in self._grace.values():
            timer.cancel()
        self._grace.clear()
        self.views.close()
        for live in list(self.live.values()):
            live.close("broker stopped")

    async def serve(self, channel: MessageChannel, peer: Peer) -> None:
        """Run one client's control channel until it closes (see :class:`Gate`)."""
        # A key nobody registered (a guest, or one that must show a certificate) has a
        # few seconds for its hello: keys are free to make, connections are not.
        await self.gate.serve(channel, peer, HELLO_DEADLINE
                              if peer.certificate_needed or not peer.registered else 0)

    def _gone(self, client: Connection, silent: bool) -> None:
        if not self.closed:  # a broker that stops keeps every session for its restart
            self.presence.disconnected(client, silent)

    async def _dispatch(self, client: Connection, msg: m.Msg) -> None:
        try:
            if isinstance(msg, m.Hello):
                self.greeter.hello(client, msg)
                return
            if client.peer.certificate_needed:
                # An unregistered key may say nothing but a hello with its certificate.
                client.kick("auth", "send hello with your certificate first", msg.rid)
                return
            if not client.hello and not isinstance(msg, m.Ping):
                raise ProtocolError("send hello first")
            role = client.peer.role
            if role == "agent" and self.forwarding is not None \
                    and not isinstance(msg, m.Accept) \
                    and self.forwarding.forward(client, msg):
                return  # about a session held at another node: that node answers
            handler = self._handlers[role].get(type(msg))
            if handler is not None:
                await handler(client, msg)
                return
            live_handler = self._live_handlers[role].get(type(msg))
            if live_handler is None:
                kind = msg.__struct_config__.tag
                raise ProtocolError(f"{role}s cannot send {kind!r}")
            await live_handler(self._live_of(client, getattr(msg, "session", "")), client, msg)
        except AssistError as exc:
            client.error(exc.code, exc.message, msg.rid)
        except Exception:
            # A bug must not take the broker (or this connection) down.
            client.log.exception("handler failed for %s", type(msg).__name__)
            client.error("internal", "the broker hit an internal error", msg.rid)

    def _live_of(self, client: Connection, session_id: str) -> LiveSession:
        """The live session ``client`` may act in, or a typed error."""
        live = self.live.get(session_id)
        if client.peer.role == "user":
            if live is None or live.user is not client or not live.session.state.live:
                raise StateError(f"session {session_id} is not live on this connection")
        elif live is None or live.session.agent != client.peer.name \
                or not live.session.state.live:
            raise NotFound(f"you have no live session {session_id}")
        return live

    def _agent_hello(self, client: Connection) -> None:
        if client.watch:
            self.views.watch(client)
        self.presence.agent_connected(client)

    async def _on_ping(self, client: Connection, msg: m.Ping) -> None:
        client.send(m.Pong(sent=msg.sent, rid=msg.rid))

    # -- user side ---------------------------------------------------------------

    async def _on_join(self, client: Connection, msg: m.Join) -> None:
        if client.session is not None:
            raise StateError("this connection already has a session")
        if msg.resume:
            self.presence.resume(client, msg.resume, msg.takeover, msg.rid)
            return
        topic = one_line(msg.topic)
        if not topic:
            raise ProtocolError("say what you need help with (a topic)")
        held = self.by_key.get(client.peer.fingerprint, set())
        limit = self.config.requests_per_key
        if limit and len(held) >= limit:
            oldest = min(held, key=lambda s: self.session(s).queued_at)
            if not msg.takeover:
                raise AlreadyWaiting(self.holding(oldest), oldest)
            self.presence.take_over(client, oldest, msg.rid)
            return
        now = self.clock.now()
        session = Session(secrets.token_hex(6), client.peer.name, topic, now,
                          key=client.peer.fingerprint, registered=client.peer.registered)
        token = secrets.token_urlsafe(24)
        self.store.sessions.insert(session, token_hash(token))
        self.ledger.audit(f"user:{session.user}", "join", session.id,
                          {"topic": topic, "key": client.peer.fingerprint,
                           "registered": client.peer.registered})
        self.hold(session)
        position = self.enqueue(session, client)
        client.send(m.Queued(session=session.id, position=position, queued_at=now,
                             resume=token, rid=msg.rid))

    def holding(self, session_id: str) -> str:
        """What the key already holds, in words (for the already-waiting error)."""
        live = self.live.get(session_id)
        if live is not None:
            return (f"this key is already in session {session_id} with "
                    f"{live.session.agent} ({live.session.topic!r})")
        topic = self.waiting[session_id].topic
        return (f"this key already waits for help (session {session_id}, place "
                f"{self.queue.position(session_id)}: {topic!r})")

    async def _on_leave(self, client: Connection, msg: m.Leave) -> None:
        if msg.session in self.waiting and self.users.get(msg.session) is client:
            self.queue.remove(msg.session)
            self.abandon(self.waiting[msg.session], "left")
        else:
            live = self.live.get(msg.session)
            if live is None or live.user is not client:
                raise NotFound(f"you have no session {msg.session}")
            if live.session.state is not State.OFFERED:
                raise StateError("you are with an agent; end the session instead")
            self.abandon(live.session, "left", live)
        client.session = None
        client.send(m.Ok(rid=msg.rid))

    async def _on_ready(self, client: Connection, msg: m.Ready) -> None:
        live = self.live.get(msg.session)
        if live is None or live.user is not client:
            raise NotFound(f"you have no session {msg.session}")
        session = live.session
        if session.state is not State.OFFERED:
            raise StateError(f"session {session.id} is {session.state}, not offered")
        live.cancel("offer")
        now = self.clock.now()
        if session.answered_at is None:
            self.today.settle(session.queued_at, now, now)
        self.ledger.transition(session, Event.CONNECT, f"user:{session.user}", "connected",
                               audit="connect", audit_actor=f"agent:{session.agent}")
        live.size = (msg.cols, msg.rows)
        live.evidence = self.trust.evidence(client)
        info = live.info(self.config.ice_urls)
        client.send(m.Started(info=info, rid=msg.rid))
        live.to_agent(m.Started(info=info))
        self.record(live)
        live.mark(f"agent:{session.agent} joined")
        live.resync(force=True)

    async def _on_user_end(self, client: Connection, msg: m.End) -> None:
        live = self.live.get(msg.session)
        if live is None or live.user is not client:
            raise NotFound(f"you have no session {msg.session}")
        if not live.session.state.live:
            raise StateError(f"session {msg.session} is {live.session.state}; nothing to end")
        self.end(live, f"user:{live.session.user}", "user", resolved=False, root_cause="")
        client.send(m.Ok(rid=msg.rid))

    async def _on_survey(self, client: Connection, msg: m.Survey) -> None:
        stored = self.store.sessions.get(msg.session)
        if stored.user != client.peer.name or not stored.state.final:
            raise NotFound(f"you have no ended session {msg.session}")
        if self.store.sessions.csat(msg.session) is not None:
            raise StateError("this session was already rated")
        self.store.sessions.set_csat(msg.session, msg.score, self.clock.now())
        client.send(m.Ok(rid=msg.rid))

    # -- agent side --------------------------------------------------------------

    async def _on_list(self, client: Connection, msg: m.ListQueue) -> None:
        client.send(self.views.listing(msg.offset, msg.limit, msg.rid))
        if msg.offset == 0 and client.watch:
            self.views.resend(client)  # an agent asking from the top may have seen a gap

    async def _on_status(self, client: Connection, msg: m.SetStatus) -> None:
        self.roster.set_status(client.peer.name, msg.status, self.clock.now())
        self.presence.audit_presence(client.peer.name, msg.status)
        client.send(m.Ok(rid=msg.rid))
        self.views.wallboard_soon()  # "agents available" changed

    async def _on_accept(self, client: Connection, msg: m.Accept) -> None:
        name = client.peer.name
        agent = self.roster.get(name)
        if agent.session is not None:
            raise StateError(f"you are already helping in session {agent.session}")
        mirrored = self.queue.find(msg.session) if msg.session else self.queue.head(True)
        if mirrored is not None and mirrored.node and self.forwarding is not None:
            # The user's node runs the session; this node forwards for its agent.
            if mirrored.session in self.forwarding.sessions:
                raise StateError(f"another agent is taking {mirrored.user} already")
            self.roster.assign(name, mirrored.session, self.clock.now())
            self.presence.audit_presence(name, "busy")
            client.streams.add(mirrored.session)
            self.forwarding.accept(client, mirrored.session, msg.rid, mirrored.node)
            self.views.wallboard_soon()
            return
        entry = self.queue.take(msg.session)
        session = self.waiting[entry.session]
        try:
            self.ledger.transition(session, Event.OFFER, f"agent:{name}", "offered",
                                   agent=name, audit="accept")
        except AssistError:
            if entry.session in self.waiting:  # not let go meanwhile (moved elsewhere)
                self.queue.add(entry)  # not taken after all: the user keeps the place
            raise
        del self.waiting[entry.session]
        user = self.users.pop(session.id)
        self.cancel_grace(session.id)
        self.views.forget(session.id)
        self.views.touch(session.id)
        self.roster.assign(name, session.id, self.clock.now())
        self.presence.audit_presence(name, "busy")
        live = self.new_live(session, user, self.agents[name])
        client.streams.add(session.id)  # this connection shows the user's screen
        user.send(m.Offered(session=session.id, agent=name))
        client.send(m.Ok(rid=msg.rid))
        live.arm("offer", self.config.offer_timeout, self._offer_expired, session.id)
        self.views.wallboard_soon()

    async def _on_agent_end(self, client: Connection, msg: m.End) -> None:
        live = self.live.get(msg.session)
        if live is None or live.session.agent != client.peer.name:
            raise NotFound(f"you have no session {msg.session}")
        if not live.session.state.live:
            raise StateError(f"session {msg.session} is {live.session.state}; it cannot end yet")
        self.end(live, f"agent:{client.peer.name}", "agent", msg.resolved,
                 one_line(msg.root_cause))
        client.send(m.Ok(rid=msg.rid))

    async def _on_handoff(self, client: Connection, msg: m.Handoff) -> None:
        live = self._live_of(client, msg.session)
        note = one_line(msg.note) or "no note"
        name = client.peer.name
        self.ledger.audit(f"agent:{name}", "handoff", live.id, {"note": note})
        self.requeue(live, Event.REQUEUE, f"handed off by {name}", note=note)
        client.send(m.Ok(rid=msg.rid))

    async def _on_agent_resync(self, client: Connection, msg: m.Resync) -> None:
        # A script, a second window or a reconnected console joins a live session
        # midway: the session as it stands, then a fresh picture.
        # Over a link, what it is told carries the request's id: the agent's node
        # gives it to the one of the agent's connections there that asked.
        self.presence.show(self._live_of(client, msg.session), client,
                           msg.rid if over_link(client.peer) else 0)
        client.send(m.Ok(rid=msg.rid))

    async def _on_make_invite(self, client: Connection, msg: m.MakeInvite) -> None:
        code, invite = make_invite(self.store, msg.name, msg.uses, msg.seconds,
                                   f"agent:{client.peer.name}", self.clock.now())
        client.send(m.InviteMade(code=code, uses=msg.uses, expires_at=invite.expires_at,
                                 rid=msg.rid))

    async def _on_root_causes(self, client: Connection, msg: m.ListRootCauses) -> None:
        client.send(m.RootCauses(tags=tuple(self.store.sessions.root_causes()), rid=msg.rid))

    # -- transitions shared by several paths ---------------------------------------

    def end(self, live: LiveSession, actor: str, reason: str, resolved: bool,
            root_cause: str, message: str = "") -> None:
        """End a live session (agent, user, or the user never came back)."""
        session = live.session
        session.resolved, session.root_cause = resolved, root_cause
        self.ledger.transition(session, Event.END, actor, "ended", {"reason": reason},
                               audit="end",
                               audit_data={"resolved": resolved, "root_cause": root_cause})
        if live.user is not None:
            live.user.session = None
            live.user.send(m.Ended(session=session.id, reason=reason, resolved=resolved,
                                   survey=True, message=message))
        live.to_agent(m.Ended(session=session.id, reason=reason, resolved=resolved,
                              message=message))
        self.release(session.agent)
        cause = f"; root cause: {root_cause}" if root_cause else ""
        live.close(f"session ended by the {reason}{cause}")
        del self.live[session.id]
        self.unhold(session)

    def abandon(self, session: Session, why: str, live: LiveSession | None = None) -> None:
        """The user left (or never came back) before anyone helped."""
        if session.answered_at is None:
            self.today.settle(session.queued_at, None, self.clock.now())
        self.ledger.transition(session, Event.ABANDON, f"user:{session.user}", "abandoned",
                               {"why": why}, audit="abandon", audit_data={"why": why})
        self.let_go(session, f"the user left ({why})", live)

    def let_go(self, session: Session, why: str, live: LiveSession | None = None) -> None:
        """Nothing of ``session`` stays on this node (it ended, or another node holds it):
        its agent is told the user left, its place and its live session are dropped."""
        if live is not None:
            live.to_agent(m.UserLost(session=session.id))
            self.release(session.agent)
            live.close(why)
            del self.live[session.id]
        else:
            self.waiting.pop(session.id, None)
            self.users.pop(session.id, None)
            if session.id in self.queue:
                self.queue.remove(session.id)
            self.views.touch(session.id)
            self.views.forget(session.id)
            self.cancel_grace(session.id)
        self.unhold(session)
        self.views.wallboard_soon()

    def requeue(self, live: LiveSession, event: Event, why: str, note: str = "",
                lost: str = "") -> None:
        """Put a session back at the front of the queue (agent gone, handed on, no answer).

        ``lost`` is what the agent is told when it comes back.
        """
        session = live.session
        agent = session.agent
        self.ledger.transition(session, event, "broker", "requeued",
                               {"why": why, "agent": agent}, audit="requeue",
                               audit_data={"why": why})
        self.release(agent)
        live.close(f"agent:{agent} left ({why}); back in the queue")
        del self.live[session.id]
        if lost and agent:
            told = m.Ended(session=session.id, reason="requeued", message=lost[: m.MAX_NOTE])
            links = self.agents.get(agent)
            if links is not None:
                links.send(told)  # still connected elsewhere: told now
            else:
                self.presence.lost[agent] = told
        user = live.user
        position = self.enqueue(session, user, note=note)
        if user is not None:
            user.send(m.AgentLost(session=session.id, position=position,
                                  reason=f"{agent} handed you on: {note}"[: m.MAX_NOTE]
                                  if note else ""))

    def enqueue(self, session: Session, user: Connection | None, note: str = "") -> int:
        """Put a waiting session in its place; ``user`` is its connection if online."""
        self.waiting[session.id] = session
        position = self.queue.add(Waiting(
            session.id, session.user, session.topic, session.queued_at,
            requeued=session.state is State.REQUEUED, online=user is not None,
            registered=session.registered, note=note))
        if user is not None:
            user.session = session.id
            self.users[session.id] = user
            self.views.placed(session.id, position)
        else:
            self.arm_grace(session.id)
        self.views.touch(session.id)
        return position

    def _offer_expired(self, session_id: str) -> None:
        live = self.live.get(session_id)
        if live is None or live.session.state is not State.OFFERED:
            return
        live.to_agent(m.UserLost(session=session_id))
        self.requeue(live, Event.DECLINE, "user did not answer the offer")

    def arm_grace(self, session_id: str) -> None:
        """A waiting user is offline: their place is kept for ``resume_grace`` seconds."""
        self.cancel_grace(session_id)
        self._grace[session_id] = self.clock.call_later(self.config.resume_grace,
                                                        self._expire, session_id)

    def cancel_grace(self, session_id: str) -> None:
        """The waiting user is back (or the session no longer waits)."""
        timer = self._grace.pop(session_id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, session_id: str) -> None:
        """The resume grace ran out: the user is not coming back."""
        self._grace.pop(session_id, None)
        session = self.waiting.get(session_id)
        if session is None or session_id in self.users:
            return
        self.abandon(session, "did not come back")

    # -- helpers -----------------------------------------------------------------

    def session(self, session_id: str) -> Session:
        """An unfinished session, waiting or held by an agent.

        Raises:
            NotFound: if there is no such unfinished session.
        """
        live = self.live.get(session_id)
        if live is not None:
            return live.session
        try:
            return self.waiting[session_id]
        except KeyError:
            raise NotFound(f"no unfinished session {session_id}") from None

    def new_live(self, session: Session, user: Connection | None = None,
                 agent: AgentLinks | None = None) -> LiveSession:
        """The owner of a session an agent now holds (or held before a restart)."""
        live = LiveSession(session, self.clock, user=user, agent=agent)
        live.on_typed = self.trust.typed(live)
        self.live[session.id] = live
        return live

    def hold(self, session: Session) -> None:
        """Count ``session`` against its key's limit."""
        self.by_key.setdefault(session.key, set()).add(session.id)

    def unhold(self, session: Session) -> None:
        """The session is over: its key may ask again."""
        held = self.by_key.get(session.key)
        if held is not None:
            held.discard(session.id)
            if not held:
                del self.by_key[session.key]

    def released(self, agent: str, session: str) -> None:
        """A session held at another node is over for this node's agent."""
        self.release(agent)
        links = self.agents.get(agent)
        if links is not None:
            links.unwatch(session)
        self.views.wallboard_soon()

    def release(self, agent: str | None) -> None:
        """An agent's session is over: available again (and audited as such)."""
        if agent and agent in self.roster:
            self.roster.release(agent, self.clock.now())
            self.presence.audit_presence(agent, "available")

    def record(self, live: LiveSession) -> None:
        """Start (or continue) recording a live session, if the broker records."""
        if not self.config.record or live.recorder is not None:
            return
        session = live.session
        error = live.record_start(self.config.recordings, f"{session.user}: {session.topic}")
        if live.recorder is not None:  # where it is, for `assist replay SESSION`
            self.store.recordings.note(session.id, self.config.node_name,
                                       str(live.recorder.path.resolve()), self.clock.now())
        if error:
            # The session goes on unrecorded; the audit log says so.
            self.ledger.audit("broker", "record-failed", session.id, {"error": error})

    def _resync(self, session_id: str) -> None:
        """A watcher of ``session_id`` dropped frames and caught up: send it a fresh picture."""
        live = self.live.get(session_id)
        if live is not None:
            live.resync()
        elif self.forwarding is not None:
            self.forwarding.resync(session_id)

    def wallboard(self) -> m.Wallboard:
        """The live figures for agents: queue, longest wait, service level today, agents."""
        now = self.clock.now()
        board = metrics.wallboard((w.queued_at for w in self.queue), (),
                                  (a.status for a in self.roster), now)
        elsewhere = self.cluster.available if self.cluster is not None else 0
        level = self.today.level(now)
        return m.Wallboard(queue_length=board.queue_length, longest_wait=board.longest_wait,
                           answered_within=level.hits, settled=level.total,
                           agents_available=board.agents_available + elsewhere,
                           target=self.today.target, now=now)
