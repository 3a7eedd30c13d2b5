"""The broker's live state: who is connected, who waits, who helps whom.

The hub owns the in-memory queue and roster (from :mod:`assist.core`), keeps
the store in step with every change, and speaks the protocol with each
connected client. It knows nothing of SSH: a client is a
:class:`~assist.transport.MessageChannel` plus the authenticated
:class:`~assist.transport.ssh.Peer`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable

from assist.broker.clients import AgentLinks, Client, Handler
from assist.broker.figures import TodayFigures
from assist.broker.relay import Relay
from assist.broker.trust import Trust
from assist.config import BrokerConfig
from assist.core import metrics
from assist.core.queue import Queue, Roster, Waiting
from assist.core.session import Event, Session, State
from assist.errors import AssistError, NotFound, ProtocolError, StateError
from assist.protocol import PROTOCOL_VERSION
from assist.protocol import messages as m
from assist.protocol.codec import DecodeFailure
from assist.store import Store
from assist.transport.channel import ChannelClosed, MessageChannel
from assist.transport.ssh import Peer

log = logging.getLogger(__name__)

WALLBOARD_EVERY = 5.0
"""Seconds between wallboard pushes to connected agents."""
QUEUE_PUSH_DELAY = 0.05
"""Coalesce queue broadcasts: a burst of joins costs one push, not one per join."""
POSITION_SLICE = 100
"""Position updates sent per event-loop turn."""


def _printable(text: str, limit: int = 200) -> str:
    """A client's self-description, kept to one printable line (it is shown to agents)."""
    return "".join(ch for ch in text if ch.isprintable())[:limit]


def token_hash(token: str) -> str:
    """Resume tokens are stored hashed: the database never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Hub:
    """Queue, routing and session lifecycle for every connected client."""

    def __init__(self, config: BrokerConfig, store: Store,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.queue = Queue()
        self.roster = Roster()
        self.sessions: dict[str, Session] = {}
        self.users: dict[str, Client] = {}  # session id -> user client
        self.agents: dict[str, AgentLinks] = {}  # agent name -> its connections
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._push: asyncio.TimerHandle | None = None
        self._positions: dict[str, int] = {}
        self._position_task: asyncio.Task[None] | None = None
        self._positions_stale = False
        self._wallboard: asyncio.TimerHandle | None = None
        self.today = TodayFigures(store)
        self.relay = Relay(self)
        self.trust = Trust(self)
        self._handlers: dict[str, dict[type[m.Msg], Handler]] = {
            "user": {
                m.Join: self._on_join, m.Leave: self._on_leave, m.Ready: self._on_ready,
                m.End: self._on_user_end, m.Ping: self._on_ping,
            },
            "agent": {
                m.ListQueue: self._on_list, m.SetStatus: self._on_status,
                m.Accept: self._on_accept, m.End: self._on_agent_end, m.Ping: self._on_ping,
                m.Handoff: self._on_handoff,
            },
        }
        for part in (self.relay, self.trust):
            for role, table in part.handlers().items():
                self._handlers[role].update(table)

    # -- lifecycle ---------------------------------------------------------------

    def restore(self) -> int:
        """Load unfinished sessions after a (re)start; return how many wait again.

        Waiting users keep their place; users who were being helped go to the
        front. Everyone is offline until they resume with their token, and
        is abandoned if they do not come back within ``resume_grace``.
        """
        now = self.clock()
        for session in self.store.sessions.unfinished():
            if session.state is State.OFFERED:
                session.apply(Event.DECLINE, now)
                self.store.sessions.save(session, "requeued", "broker", {"why": "restart"})
            elif session.state.live:
                session.apply(Event.REQUEUE, now)
                self.store.sessions.save(session, "requeued", "broker", {"why": "restart"})
            self.sessions[session.id] = session
            self.queue.add(self._waiting(session, online=False))
            self._arm(session.id, self.config.resume_grace, self._expire, session.id)
        return len(self.queue)

    def close(self) -> None:
        """Cancel timers (the store keeps everything needed to restore)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._push:
            self._push.cancel()
        if self._position_task is not None:
            self._position_task.cancel()
        if self._wallboard is not None:
            self._wallboard.cancel()
        self.relay.close()

    async def serve(self, channel: MessageChannel, peer: Peer) -> None:
        """Run one client's control channel until it closes."""
        client = Client(channel, peer)
        client.log = logging.LoggerAdapter(log, {"peer": f"{peer.role}:{peer.name}"})
        client.log.info("connected from %s", peer.address)
        handlers = self._handlers[peer.role]
        try:
            while True:
                try:
                    msg = await channel.recv()
                except ChannelClosed:
                    break
                except ProtocolError as exc:
                    rid = exc.rid if isinstance(exc, DecodeFailure) else 0
                    client.send(m.Error(code=exc.code, message=exc.message, rid=rid))
                    continue
                await self._dispatch(client, handlers, msg)
        finally:
            self._disconnected(client)
            client.log.info("disconnected")

    async def _dispatch(self, client: Client, handlers: dict[type[m.Msg], Handler],
                        msg: m.Msg) -> None:
        try:
            if isinstance(msg, m.Hello):
                self._on_hello(client, msg)
                return
            if not client.hello and not isinstance(msg, m.Ping):
                raise ProtocolError("send hello first")
            handler = handlers.get(type(msg))
            if handler is None:
                kind = msg.__struct_config__.tag
                raise ProtocolError(f"{client.peer.role}s cannot send {kind!r}")
            await handler(client, msg)
        except AssistError as exc:
            client.send(m.Error(code=exc.code, message=exc.message, rid=msg.rid))
        except Exception:
            # A bug must not take the broker (or this connection) down.
            client.log.exception("handler failed for %s", type(msg).__name__)
            client.send(m.Error(code="internal", message="the broker hit an internal error",
                                rid=msg.rid))

    def _on_hello(self, client: Client, msg: m.Hello) -> None:
        if msg.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version {msg.version} is not supported (broker speaks "
                f"{PROTOCOL_VERSION}); upgrade assist on the older side")
        if client.hello:
            raise ProtocolError("hello was already sent")
        client.hello = True
        client.host, client.os_user = _printable(msg.host), _printable(msg.os_user)
        peer = client.peer
        if peer.role == "agent":
            links = self.agents.get(peer.name)
            if links is None:
                links = self.agents[peer.name] = AgentLinks(peer.name)
                self.roster.join(peer.name, self.clock(), status="away")
                self._presence(peer.name, "away")
            links.clients.append(client)
        client.send(m.Welcome(version=PROTOCOL_VERSION, role=peer.role,  # type: ignore[arg-type]
                              name=peer.name, broker=self.config.name,
                              registered=peer.registered, rid=msg.rid))
        if peer.role == "agent":
            client.send(self._queue_list())
            self._push_wallboard()

    async def _on_ping(self, client: Client, msg: m.Ping) -> None:
        client.send(m.Pong(sent=msg.sent, rid=msg.rid))

    # -- user side ---------------------------------------------------------------

    async def _on_join(self, client: Client, msg: m.Join) -> None:
        if client.session is not None:
            raise StateError("this connection already has a session")
        if msg.resume:
            self._resume(client, msg)
            return
        topic = " ".join(msg.topic.split())[:200]
        if not topic:
            raise ProtocolError("say what you need help with (a topic)")
        now = self.clock()
        session = Session(secrets.token_hex(6), client.peer.name, topic, now)
        token = secrets.token_urlsafe(24)
        self.store.sessions.insert(session, token_hash(token))
        self.store.audit.append(now, f"user:{session.user}", "join", session.id,
                                {"topic": topic, "key": client.peer.fingerprint,
                                 "registered": client.peer.registered})
        self.sessions[session.id] = session
        position = self.queue.add(self._waiting(session, registered=client.peer.registered))
        self._attach(client, session.id)
        client.send(m.Queued(session=session.id, position=position, queued_at=now,
                             resume=token, rid=msg.rid))
        self._positions[session.id] = position
        self._changed()

    def _resume(self, client: Client, msg: m.Join) -> None:
        assert msg.resume is not None
        stored = self.store.sessions.by_resume(token_hash(msg.resume))
        session = self.sessions.get(stored.id) if stored else None
        if session is None or not session.state.waiting or session.id not in self.queue:
            raise StateError("that place in the queue has expired; join again")
        if session.user != client.peer.name:
            raise StateError("that place in the queue belongs to someone else")
        old = self.users.get(session.id)
        if old is not None and old is not client:
            old.session = None
            old.channel.close()
        self._cancel(session.id)
        self.queue.set_online(session.id, True)
        self._attach(client, session.id)
        position = self.queue.position(session.id)
        self._positions[session.id] = position
        client.send(m.Queued(session=session.id, position=position,
                             queued_at=session.queued_at, resume=msg.resume, resumed=True,
                             rid=msg.rid))
        self.store.audit.append(self.clock(), f"user:{session.user}", "resume", session.id)
        self._changed()

    async def _on_leave(self, client: Client, msg: m.Leave) -> None:
        session = self._own_session(client, msg.session)
        if session.state.waiting:
            self.queue.remove(session.id)
        elif session.state is not State.OFFERED:
            raise StateError("you are with an agent; end the session instead")
        self._abandon(session, "left")
        client.session = None
        self.users.pop(session.id, None)
        client.send(m.Ok(rid=msg.rid))

    async def _on_ready(self, client: Client, msg: m.Ready) -> None:
        session = self._own_session(client, msg.session)
        if session.state is not State.OFFERED:
            raise StateError(f"session {session.id} is {session.state}, not offered")
        self._cancel(session.id)
        now = self.clock()
        if session.answered_at is None:
            self.today.settle(session.queued_at, now, now)
        session.apply(Event.CONNECT, now)
        self.store.sessions.save(session, "connected", f"user:{session.user}", {})
        self.store.audit.append(now, f"agent:{session.agent}", "connect", session.id)
        info = self._info(session, msg.cols, msg.rows, self._evidence(client))
        client.send(m.Started(info=info, rid=msg.rid))
        agent = self.agents.get(session.agent or "")
        if agent is not None:
            agent.send(m.Started(info=info))
        self.relay.started(session, msg.cols, msg.rows)

    async def _on_user_end(self, client: Client, msg: m.End) -> None:
        session = self._own_session(client, msg.session)
        if not session.state.live:
            raise StateError(f"session {session.id} is {session.state}; nothing to end")
        self._end(session, f"user:{session.user}", "user", resolved=False, root_cause="")
        client.send(m.Ok(rid=msg.rid))

    # -- agent side --------------------------------------------------------------

    async def _on_list(self, client: Client, msg: m.ListQueue) -> None:
        listing = self._queue_list()
        client.send(m.QueueList(entries=listing.entries, now=listing.now, rid=msg.rid))

    async def _on_status(self, client: Client, msg: m.SetStatus) -> None:
        self.roster.set_status(client.peer.name, msg.status, self.clock())
        self._presence(client.peer.name, msg.status)
        client.send(m.Ok(rid=msg.rid))
        self._push_wallboard()  # "agents available" changed

    async def _on_accept(self, client: Client, msg: m.Accept) -> None:
        name = client.peer.name
        agent = self.roster.get(name)
        if agent.session is not None:
            raise StateError(f"you are already helping in session {agent.session}")
        entry = self.queue.take(msg.session)
        now = self.clock()
        session = self.sessions[entry.session]
        session.apply(Event.OFFER, now, agent=name)
        self.roster.assign(name, session.id, now)
        client.streams.add(session.id)  # this connection shows the user's screen
        self._presence(name, "busy")
        self.store.sessions.save(session, "offered", f"agent:{name}", {})
        self.store.audit.append(now, f"agent:{name}", "accept", session.id)
        self._positions.pop(session.id, None)
        self.users[session.id].send(m.Offered(session=session.id, agent=name))
        client.send(m.Ok(rid=msg.rid))
        self._arm(session.id, self.config.offer_timeout, self._offer_expired, session.id)
        self._changed()

    async def _on_agent_end(self, client: Client, msg: m.End) -> None:
        session = self.sessions.get(msg.session)
        if session is None or session.agent != client.peer.name:
            raise NotFound(f"you have no session {msg.session}")
        if not session.state.live:
            raise StateError(f"session {session.id} is {session.state}; it cannot end yet")
        self._end(session, f"agent:{client.peer.name}", "agent", msg.resolved,
                  " ".join(msg.root_cause.split())[:200])
        client.send(m.Ok(rid=msg.rid))

    async def _on_handoff(self, client: Client, msg: m.Handoff) -> None:
        session = self.relay.agent_live(client, msg.session)
        note = " ".join(msg.note.split())[:200] or "no note"
        name = client.peer.name
        self.store.audit.append(self.clock(), f"agent:{name}", "handoff", session.id,
                                {"note": note})
        self._requeue(session, Event.REQUEUE, f"handed off by {name}", note=note)
        client.send(m.Ok(rid=msg.rid))

    # -- transitions shared by several paths ---------------------------------------

    def _end(self, session: Session, actor: str, reason: str, resolved: bool,
             root_cause: str) -> None:
        now = self.clock()
        session.resolved, session.root_cause = resolved, root_cause
        session.apply(Event.END, now)
        self.store.sessions.save(session, "ended", actor, {"reason": reason})
        self.store.audit.append(now, actor, "end", session.id,
                                {"resolved": resolved, "root_cause": root_cause})
        ended = m.Ended(session=session.id, reason=reason, resolved=resolved, survey=True)
        user = self.users.pop(session.id, None)
        if user is not None:
            user.session = None
            user.send(ended)
        agent = self.agents.get(session.agent or "")
        if agent is not None:
            agent.send(m.Ended(session=session.id, reason=reason, resolved=resolved))
        self._release(session.agent, now)
        self.sessions.pop(session.id, None)
        cause = f"; root cause: {root_cause}" if root_cause else ""
        self.relay.forget(session.id, f"session ended by the {reason}{cause}", session.agent)
        self.trust.forget(session.id)

    def _abandon(self, session: Session, why: str) -> None:
        now = self.clock()
        agent = session.agent
        if session.answered_at is None:
            self.today.settle(session.queued_at, None, now)
        session.apply(Event.ABANDON, now)
        self.store.sessions.save(session, "abandoned", f"user:{session.user}", {"why": why})
        self.store.audit.append(now, f"user:{session.user}", "abandon", session.id, {"why": why})
        self.sessions.pop(session.id, None)
        self._positions.pop(session.id, None)
        self._cancel(session.id)
        if agent:
            self._release(agent, now)
            client = self.agents.get(agent)
            if client is not None:
                client.send(m.UserLost(session=session.id))
        self._changed()

    def _requeue(self, session: Session, event: Event, why: str, note: str = "") -> None:
        """Put a session back at the front of the queue (agent dropped, handed on, no answer)."""
        now = self.clock()
        agent = session.agent
        session.apply(event, now)
        self.store.sessions.save(session, "requeued", "broker", {"why": why, "agent": agent})
        self.store.audit.append(now, "broker", "requeue", session.id, {"why": why})
        self._release(agent, now)
        self.relay.forget(session.id, f"agent:{agent} left ({why}); back in the queue", agent)
        self.trust.forget(session.id)
        user = self.users.get(session.id)
        position = self.queue.add(self._waiting(
            session, online=user is not None,
            registered=user.peer.registered if user is not None else True, note=note))
        self._positions[session.id] = position
        if user is not None:
            user.send(m.AgentLost(session=session.id, position=position,
                                  reason=f"{agent} handed you on: {note}" if note else ""))
        else:
            self._arm(session.id, self.config.resume_grace, self._expire, session.id)
        self._changed()

    def _offer_expired(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.state is not State.OFFERED:
            return
        agent = self.agents.get(session.agent or "")
        if agent is not None:
            agent.send(m.UserLost(session=session_id))
        self._requeue(session, Event.DECLINE, "user did not answer the offer")

    def _expire(self, session_id: str) -> None:
        """The resume grace ran out: the user is not coming back."""
        session = self.sessions.get(session_id)
        if session is None or session.id in self.users:
            return
        if session.id in self.queue:
            self.queue.remove(session.id)
        self._abandon(session, "did not come back")

    def _disconnected(self, client: Client) -> None:
        if client.peer.role == "agent":
            links = self.agents.get(client.peer.name)
            if links is not None and client in links.clients:
                links.clients.remove(client)
                if not links.clients:
                    self._agent_gone(client.peer.name)
            return
        session = self.sessions.get(client.session or "")
        if session is None or self.users.get(session.id) is not client:
            return
        del self.users[session.id]
        if session.state.waiting:
            # Keep the place: the client reconnects with its resume token.
            self.queue.set_online(session.id, False)
            self._arm(session.id, self.config.resume_grace, self._expire, session.id)
            self._changed()
        elif session.state is State.OFFERED:
            self._abandon(session, "disconnected while offered")
        elif session.state.live:
            self._end(session, f"user:{session.user}", "user-lost", False, "")

    def _agent_gone(self, name: str) -> None:
        """The agent's last connection closed: its user goes back to the front."""
        agent = self.roster.leave(name)
        self.agents.pop(name, None)
        self._presence(name, "offline")
        session = self.sessions.get(agent.session or "") if agent else None
        if session is None:
            return
        if session.state is State.OFFERED:
            self._cancel(session.id)
            self._requeue(session, Event.DECLINE, "agent disconnected")
        elif session.state.live:
            self._requeue(session, Event.REQUEUE, "agent disconnected")

    # -- helpers -----------------------------------------------------------------

    def _release(self, agent: str | None, now: float) -> None:
        """An agent's session is over: available again (and audited as such)."""
        if agent and agent in self.roster:
            self.roster.release(agent, now)
            self._presence(agent, "available")

    def wallboard(self) -> m.Wallboard:
        """The live figures for agents: queue, longest wait, service level today, agents."""
        now = self.clock()
        board = metrics.wallboard((w.queued_at for w in self.queue), (),
                                  (a.status for a in self.roster), now)
        level = self.today.level(now)
        return m.Wallboard(queue_length=board.queue_length, longest_wait=board.longest_wait,
                           answered_within=level.hits, settled=level.total,
                           agents_available=board.agents_available,
                           target=self.today.target, now=now)

    def _push_wallboard(self) -> None:
        """Send the wallboard to every agent, then again in a few seconds while any is on."""
        if self._wallboard is not None:
            self._wallboard.cancel()
            self._wallboard = None
        if not self.agents:
            return
        try:
            board = self.wallboard()
        except AssistError as exc:  # the store hiccupped: try again next time
            log.warning("wallboard not sent: %s", exc.message)
        else:
            for agent in self.agents.values():
                agent.send(board)
        self._wallboard = asyncio.get_running_loop().call_later(WALLBOARD_EVERY,
                                                                self._push_wallboard)

    def _presence(self, agent: str, status: str) -> None:
        """Audit an agent's presence change (the report's occupancy is built from these)."""
        self.store.audit.append(self.clock(), f"agent:{agent}", "presence", None,
                                {"status": status})

    def _own_session(self, client: Client, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or client.session != session_id:
            raise NotFound(f"you have no session {session_id}")
        return session

    def _attach(self, client: Client, session_id: str) -> None:
        client.session = session_id
        self.users[session_id] = client

    def _waiting(self, session: Session, online: bool = True,
                 registered: bool = True, note: str = "") -> Waiting:
        return Waiting(session.id, session.user, session.topic, session.queued_at,
                       requeued=session.state is State.REQUEUED, online=online,
                       registered=registered, note=note)

    def _evidence(self, user: Client) -> m.Evidence:
        """What the agent is shown of the user's identity before verifying it."""
        peer = user.peer
        totp = peer.registered and bool(self.store.directory.totp_secret(peer.name))
        return m.Evidence(registered=peer.registered, fingerprint=peer.fingerprint,
                          host=user.host, os_user=user.os_user, totp=totp)

    def _info(self, session: Session, cols: int = 80, rows: int = 24,
              evidence: m.Evidence | None = None) -> m.SessionInfo:
        return m.SessionInfo(session=session.id, user=session.user, agent=session.agent or "",
                             topic=session.topic, state=session.state.value,
                             queued_at=session.queued_at, answered_at=session.answered_at,
                             cols=cols, rows=rows, verified=session.verified, evidence=evidence,
                             ice_servers=self.config.ice_urls)

    def _queue_list(self) -> m.QueueList:
        entries = tuple(
            m.QueueEntry(session=w.session, user=w.user, topic=w.topic, queued_at=w.queued_at,
                         position=i, requeued=w.requeued, online=w.online,
                         registered=w.registered, note=w.note)
            for i, w in enumerate(self.queue, 1)
        )
        return m.QueueList(entries=entries, now=self.clock())

    def _arm(self, key: str, delay: float, callback: Callable[[str], None], arg: str) -> None:
        self._cancel(key)
        self._timers[key] = asyncio.get_running_loop().call_later(delay, callback, arg)

    def _cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _changed(self) -> None:
        """Schedule one coalesced push of queue and positions."""
        if self._push is None:
            self._push = asyncio.get_running_loop().call_later(QUEUE_PUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._push = None
        listing = self._queue_list()
        for agent in self.agents.values():
            agent.send(listing)
        if self._position_task is None or self._position_task.done():
            self._position_task = asyncio.get_running_loop().create_task(
                self._push_positions(listing))
        else:
            self._positions_stale = True

    async def _push_positions(self, listing: m.QueueList) -> None:
        """Tell each waiting user their new place, a slice at a time.

        With thousands waiting, one accept moves everybody up by one; sending
        all those messages in one go would stall routing for everyone else.
        """
        while True:
            self._positions_stale = False
            waiting = len(listing.entries)
            for index, entry in enumerate(listing.entries):
                if index % POSITION_SLICE == POSITION_SLICE - 1:
                    await asyncio.sleep(0)
                if self._positions.get(entry.session, 0) in (0, entry.position):
                    continue
                self._positions[entry.session] = entry.position
                user = self.users.get(entry.session)
                if user is not None:
                    user.send(m.Position(session=entry.session, position=entry.position,
                                         waiting=waiting))
            if not self._positions_stale:
                return
            listing = self._queue_list()
