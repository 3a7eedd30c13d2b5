"""Relaying a live session: terminal stream, resize, chat, survey.

The user's pty bytes pass through untouched. Each viewer's SSH channel has a
send buffer; when it grows past :data:`LAG_LIMIT` the viewer is lagging, its
output is dropped instead of queued without bound, and once it has drained
the user's client is asked for a screen snapshot that replaces what was
missed. The user's shell never waits for a slow agent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from assist.broker.recording import Recorder
from assist.errors import AssistError, NotFound, ProtocolError, StateError
from assist.protocol import messages as m

if TYPE_CHECKING:
    from assist.broker.clients import AgentLinks, Client, Handler
    from assist.broker.hub import Hub
    from assist.core.session import Session

LAG_LIMIT = 512 * 1024
"""A viewer with this much unsent output is lagging: drop, then resync."""
RESUME_BELOW = 64 * 1024
"""A lagging viewer is resynced once its buffer is back under this."""
log = logging.getLogger(__name__)

RESYNC_POLL = 0.05
"""How often a lagging viewer's buffer is checked once output has stopped."""
MAX_CHAT = 2000


class Relay:
    """Handlers for messages inside a live session."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.lagging: set[str] = set()
        self.sizes: dict[str, tuple[int, int]] = {}
        self._polls: dict[str, asyncio.TimerHandle] = {}
        self.recorders: dict[str, Recorder] = {}

    def handlers(self) -> dict[str, dict[type[m.Msg], Handler]]:
        """Handlers by role, merged into the hub's dispatch table."""
        return {
            "user": {m.Output: self._on_output, m.Snapshot: self._on_snapshot,
                     m.Resize: self._on_resize, m.Chat: self._on_user_chat,
                     m.Survey: self._on_survey, m.Signal: self._on_user_signal},
            "agent": {m.Chat: self._on_agent_chat, m.ListRootCauses: self._on_root_causes,
                      m.Signal: self._on_agent_signal, m.Resync: self._on_agent_resync},
        }

    # -- helpers -------------------------------------------------------------------

    def user_live(self, client: Client, session_id: str) -> Session:
        session = self.hub.sessions.get(session_id)
        if session is None or client.session != session_id or not session.state.live:
            raise StateError(f"session {session_id} is not live on this connection")
        return session

    def agent_live(self, client: Client, session_id: str) -> Session:
        session = self.hub.sessions.get(session_id)
        if session is None or session.agent != client.peer.name or not session.state.live:
            raise NotFound(f"you have no live session {session_id}")
        return session

    def _agent_of(self, session: Session) -> AgentLinks | None:
        return self.hub.agents.get(session.agent or "")

    def started(self, session: Session, cols: int, rows: int) -> None:
        """A session went live: start recording, ask the user for a first full frame."""
        self.sizes[session.id] = (cols, rows)
        config = self.hub.config
        if config.record and session.id not in self.recorders:
            try:
                self.recorders[session.id] = Recorder.open(
                    config.recordings, session.id, cols, rows, started_at=session.queued_at,
                    title=f"{session.user}: {session.topic}", at=self.hub.clock())
            except AssistError as exc:
                # The session goes on unrecorded; the audit log says so.
                log.error("session %s is not recorded: %s", session.id, exc.message)
                self.hub.store.audit.append(self.hub.clock(), "broker", "record-failed",
                                            session.id, {"error": exc.message})
        self.mark(session.id, f"agent:{session.agent} joined")
        user = self.hub.users.get(session.id)
        if user is not None:
            user.send(m.Resync(session=session.id))

    def forget(self, session_id: str, why: str = "", agent: str | None = None) -> None:
        """A session is over (or went back to the queue): close its recording.

        ``agent`` is the agent who was with the user; their connections stop
        watching the session.
        """
        links = self.hub.agents.get(agent or "")
        if links is not None:
            links.unwatch(session_id)
        self.lagging.discard(session_id)
        self.sizes.pop(session_id, None)
        poll = self._polls.pop(session_id, None)
        if poll is not None:
            poll.cancel()
        recorder = self.recorders.pop(session_id, None)
        if recorder is not None:
            now = self.hub.clock()
            if why:
                recorder.marker(why, now)
            recorder.close(at=now)

    def close(self) -> None:
        """The broker stops: flush and close every recording."""
        for session_id in list(self.recorders):
            self.forget(session_id, "broker stopped")

    # -- recording -------------------------------------------------------------------

    def mark(self, session_id: str, label: str) -> None:
        """Add a marker to a session's recording (if it is recorded)."""
        recorder = self.recorders.get(session_id)
        if recorder is not None:
            recorder.marker(label, self.hub.clock())

    def record_input(self, session_id: str, agent: str, data: bytes) -> None:
        """Record keystrokes the agent sent, attributed to the agent."""
        recorder = self.recorders.get(session_id)
        if recorder is not None:
            recorder.agent_input(agent, data, self.hub.clock())

    def record_hidden(self, session_id: str, on: bool) -> None:
        """The user's terminal started or stopped reading a secret."""
        recorder = self.recorders.get(session_id)
        if recorder is not None:
            recorder.hidden(on, self.hub.clock())

    # -- terminal stream -------------------------------------------------------------

    async def _on_output(self, client: Client, msg: m.Output) -> None:
        session = self.user_live(client, msg.session)
        recorder = self.recorders.get(session.id)
        if recorder is not None:
            recorder.output(msg.data, self.hub.clock())
        agent = self._agent_of(session)
        if agent is None:
            return
        if session.id in self.lagging:
            self._check_lag(session.id)
            return
        if agent.buffered(session.id) > LAG_LIMIT:
            self.lagging.add(session.id)
            self._poll_lag(session.id)
            return
        agent.send_stream(session.id, msg)

    async def _on_agent_resync(self, client: Client, msg: m.Resync) -> None:
        # A script (or a second window) of the agent joins a live session midway.
        session = self.agent_live(client, msg.session)
        client.streams.add(session.id)
        user = self.hub.users.get(session.id)
        if user is not None:
            user.send(m.Resync(session=session.id))
        client.send(m.Ok(rid=msg.rid))

    def _check_lag(self, session_id: str) -> bool:
        """Resync a lagging viewer whose buffer drained; return True if it did."""
        session = self.hub.sessions.get(session_id)
        agent = self._agent_of(session) if session is not None else None
        user = self.hub.users.get(session_id)
        if agent is None or user is None or session_id not in self.lagging:
            self.lagging.discard(session_id)
            return True
        if agent.buffered(session_id) >= RESUME_BELOW:
            return False
        self.lagging.discard(session_id)
        user.send(m.Resync(session=session_id))
        return True

    def _poll_lag(self, session_id: str) -> None:
        # Output may stop while the viewer still lags: check again without it.
        old = self._polls.pop(session_id, None)
        if old is not None:
            old.cancel()
        if not self._check_lag(session_id):
            self._polls[session_id] = asyncio.get_running_loop().call_later(
                RESYNC_POLL, self._poll_lag, session_id)

    async def _on_snapshot(self, client: Client, msg: m.Snapshot) -> None:
        session = self.user_live(client, msg.session)
        self.sizes[session.id] = (msg.cols, msg.rows)
        recorder = self.recorders.get(session.id)
        if recorder is not None:
            recorder.snapshot(msg.data, msg.cols, msg.rows, self.hub.clock())
        agent = self._agent_of(session)
        if agent is not None:
            agent.send_stream(session.id, msg)

    async def _on_resize(self, client: Client, msg: m.Resize) -> None:
        session = self.user_live(client, msg.session)
        if not (1 <= msg.cols <= 1000 and 1 <= msg.rows <= 1000):
            raise ProtocolError(f"unreasonable terminal size {msg.cols}x{msg.rows}")
        self.sizes[session.id] = (msg.cols, msg.rows)
        recorder = self.recorders.get(session.id)
        if recorder is not None:
            recorder.resize(msg.cols, msg.rows, self.hub.clock())
        agent = self._agent_of(session)
        if agent is not None:
            agent.send_stream(session.id, msg)

    # -- media signalling ---------------------------------------------------------------

    async def _on_user_signal(self, client: Client, msg: m.Signal) -> None:
        session = self.user_live(client, msg.session)
        agent = self._agent_of(session)
        if agent is None:
            raise StateError("the agent is not connected")
        agent.send(msg)

    async def _on_agent_signal(self, client: Client, msg: m.Signal) -> None:
        session = self.agent_live(client, msg.session)
        user = self.hub.users.get(session.id)
        if user is None:
            raise StateError("the user is not connected")
        user.send(msg)

    # -- chat and survey ---------------------------------------------------------------

    def _chat(self, session: Session, sender: str, role: str, text: str) -> None:
        text = text.strip()[:MAX_CHAT]
        if not text:
            return
        now = self.hub.clock()
        line = m.Chat(session=session.id, text=text, sender=sender, at=now)
        self.hub.store.sessions.log(session.id, now, "chat", f"{role}:{sender}", {"text": text})
        for peer in (self.hub.users.get(session.id), self._agent_of(session)):
            if peer is not None:
                peer.send(line)

    async def _on_user_chat(self, client: Client, msg: m.Chat) -> None:
        session = self.user_live(client, msg.session)
        self._chat(session, client.peer.name, "user", msg.text)

    async def _on_agent_chat(self, client: Client, msg: m.Chat) -> None:
        session = self.agent_live(client, msg.session)
        self._chat(session, client.peer.name, "agent", msg.text)

    async def _on_survey(self, client: Client, msg: m.Survey) -> None:
        if not 1 <= msg.score <= 5:
            raise ProtocolError("the survey answer is a number from 1 to 5")
        stored = self.hub.store.sessions.get(msg.session)
        if stored.user != client.peer.name or not stored.state.final:
            raise NotFound(f"you have no ended session {msg.session}")
        if self.hub.store.sessions.csat(msg.session) is not None:
            raise StateError("this session was already rated")
        self.hub.store.sessions.set_csat(msg.session, msg.score, self.hub.clock())
        client.send(m.Ok(rid=msg.rid))

    async def _on_root_causes(self, client: Client, msg: m.ListRootCauses) -> None:
        client.send(m.RootCauses(tags=tuple(self.hub.store.sessions.root_causes()),
                                 rid=msg.rid))
