"""One live session and everything that belongs to it, in one owner.

A :class:`LiveSession` exists from the moment an agent takes a user (offered)
until the session ends or goes back to the queue. It holds the session's
participants and their connections (either may be away for a while: a
dropped network, a broker restart), the broker's advisory mirror of the
grants, verification in progress, the echo-off flag, the recording, the
terminal size and the session's timers. Relay and trust act on the session
they are handed; every way out of a session calls :meth:`LiveSession.close`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assist.broker.connection import AgentLinks, Connection
from assist.broker.recording import Recorder
from assist.core.clock import Clock, Timer
from assist.core.grants import GrantTable
from assist.core.session import Session
from assist.errors import AssistError, StateError
from assist.protocol import encode
from assist.protocol import messages as m

log = logging.getLogger(__name__)

KEYS_BATCH = 1.0
"""Seconds of an agent's typing audited as one record."""
RESYNC_WAIT = 2.0
"""Seconds a request for a full picture is given before another may go out."""


@dataclass(eq=False)
class LiveSession:
    """The broker's whole state of one session an agent holds.

    Attributes:
        session: the session record (state machine and timestamps).
        user: the user's connection, ``None`` while the user is away.
        agent: the agent's connections, ``None`` while the agent is away.
        grants: the broker's advisory copy of the user's grants.
        totp_misses: wrong authenticator codes so far, ``None`` when no code is asked.
        asking: the scopes the user is being asked for and has not answered yet,
            with when they were asked.
        hidden: why the user's output is withheld (a secret is read, the user
            paused sharing), ``None`` while it is shared.
        recorder: the session's recording, if it is recorded.
        size: the user's terminal size.
        evidence: what the agent is shown of the user's identity.
    """

    session: Session
    clock: Clock
    user: Connection | None = None
    agent: AgentLinks | None = None
    grants: GrantTable = field(default_factory=GrantTable)
    totp_misses: int | None = None
    asking: dict[str, float] = field(default_factory=dict)
    hidden: m.HiddenWhy | None = None
    recorder: Recorder | None = None
    size: tuple[int, int] = (80, 24)
    evidence: m.Evidence | None = None
    agent_away: bool = False
    """Nothing of the agent holds the session (its grace runs)."""
    closed: bool = False
    on_typed: Callable[[str, str, int, int, float], None] | None = None
    """Writes one audit record for a batch of keystrokes: agent, grant, bytes,
    messages, time of the first."""
    _timers: dict[str, Timer] = field(default_factory=dict)
    _asked_at: float | None = None
    _typed: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The session id."""
        return self.session.id

    @property
    def registered(self) -> bool:
        """The user logged in with a key registered in the directory."""
        return self.session.registered

    def info(self, ice_servers: tuple[str, ...]) -> m.SessionInfo:
        """The session as both sides see it."""
        session = self.session
        cols, rows = self.size
        return m.SessionInfo(session=session.id, user=session.user, agent=session.agent or "",
                             topic=session.topic, state=session.state.value,
                             queued_at=session.queued_at, answered_at=session.answered_at,
                             cols=cols, rows=rows, verified=session.verified,
                             evidence=self.evidence, ice_servers=ice_servers)

    # -- participants --------------------------------------------------------------------

    def to_user(self, msg: m.Msg) -> None:
        """Send to the user.

        Raises:
            StateError: if the user is not connected (reconnecting).
        """
        if self.user is None:
            raise StateError("the user is not connected (reconnecting); try again shortly")
        self.user.send(msg)

    def tell_user(self, msg: m.Msg) -> None:
        """Send to the user if connected (events nobody waits on)."""
        if self.user is not None:
            self.user.send(msg)

    def to_agent(self, msg: m.Msg) -> None:
        """Send to every connection of the agent, if any is connected."""
        if self.agent is not None:
            self.agent.send(msg)

    def relay_to_user(self, msg: m.Msg) -> None:
        """Send the user what the agent sent.

        Raises:
            StateError: if the user is not connected, or far behind (see
                :data:`~assist.broker.connection.PEER_LIMIT`): the agent is told,
                the user keeps the connection.
        """
        self.room("user")
        self.to_user(msg)

    def relay_to_agent(self, msg: m.Msg) -> None:
        """Send the agent (every connection) what the user sent.

        Raises:
            StateError: if one of the agent's connections is far behind.
        """
        self.room("agent")
        self.to_agent(msg)

    def room(self, party: str) -> None:
        """Check that ``party`` (``user`` or ``agent``) can take what the other sends.

        Raises:
            StateError: if not (the user not connected, or a connection far behind).
        """
        if party == "user" and self.user is None:
            raise StateError("the user is not connected (reconnecting); try again shortly")
        if self.behind(party):
            raise StateError(f"the {party}'s side is not keeping up with what you send; "
                             "wait a moment, then send again")

    def behind(self, party: str) -> bool:
        """Whether ``party`` (``user`` or ``agent``, any of its connections) has more
        waiting than it may be sent by the other (see ``Outbox.behind``)."""
        if party == "user":
            return self.user is not None and self.user.outbox.behind
        return self.agent is not None and any(c.outbox.behind for c in self.agent.clients)

    def stream(self, msg: m.Msg) -> None:
        """Send a terminal-stream frame to the agent connections that watch it.

        Encoded once; a watcher that lags drops it and is resynced later.
        """
        if self.agent is None:
            return
        watchers = self.agent.watchers(self.id)
        if not watchers:
            return
        line = encode(msg)
        for watcher in watchers:
            watcher.outbox.stream(self.id, line)

    def resync(self, force: bool = False) -> None:
        """Ask the user's machine for a full picture of the screen.

        One request at a time: while one is out (for :data:`RESYNC_WAIT`
        seconds, or until the picture arrives) more are not sent, so viewers
        and scripts asking at once cost the user one snapshot. ``force``: a new
        user connection, whose picture nobody has asked for yet.
        """
        now = self.clock.now()
        if not force and self._asked_at is not None and now - self._asked_at < RESYNC_WAIT:
            return
        if self.user is not None:
            self._asked_at = now
            self.user.send(m.Resync(session=self.id))

    def pictured(self) -> None:
        """A full picture arrived: the next request goes out."""
        self._asked_at = None

    # -- timers --------------------------------------------------------------------------

    def arm(self, name: str, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        """(Re)arm the session's timer ``name``; it dies with the session."""
        self.cancel(name)
        self._timers[name] = self.clock.call_later(delay, callback, *args)

    def cancel(self, name: str) -> None:
        """Cancel the timer ``name`` if armed."""
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    # -- keystroke batches ---------------------------------------------------------------

    def typed(self, agent: str, grant: str, size: int) -> None:
        """Count keystrokes the agent sent under ``grant``; audited as one batch.

        A batch is what one agent typed under one grant within
        :data:`KEYS_BATCH` seconds; it is written when that time is up, or at
        once when anything about the grants or the session changes
        (:meth:`flush_typed`), so the audit chain never lags behind a revoke.
        """
        batch = self._typed.get((agent, grant))
        if batch is None:
            self._typed[(agent, grant)] = [float(size), 1.0, self.clock.now()]
            if len(self._typed) == 1:
                self.arm("keys-batch", KEYS_BATCH, self.flush_typed)
        else:
            batch[0] += size
            batch[1] += 1

    def flush_typed(self) -> None:
        """Write the keystroke batches not audited yet."""
        self.cancel("keys-batch")
        typed, self._typed = self._typed, {}
        if self.on_typed is not None:
            for (agent, grant), (size, count, since) in typed.items():
                self.on_typed(agent, grant, int(size), int(count), since)

    # -- recording -----------------------------------------------------------------------

    def record_start(self, directory: Path, title: str) -> str:
        """Open (or continue) the recording; return an error message, "" on success."""
        if self.recorder is not None:
            return ""
        try:
            self.recorder = Recorder.open(directory, self.id, *self.size,
                                          started_at=self.session.queued_at, title=title,
                                          at=self.clock.now())
        except AssistError as exc:
            log.error("session %s is not recorded: %s", self.id, exc.message)
            return exc.message
        return ""

    def mark(self, label: str) -> None:
        """Add a marker to the recording (if recorded)."""
        if self.recorder is not None:
            self.recorder.marker(label, self.clock.now())

    def record_output(self, data: bytes) -> None:
        """The user's terminal output."""
        if self.recorder is not None:
            self.recorder.output(data, self.clock.now())

    def record_snapshot(self, data: bytes, cols: int, rows: int) -> None:
        """A full picture of the user's screen."""
        if self.recorder is not None:
            self.recorder.snapshot(data, cols, rows, self.clock.now())

    def record_resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size."""
        if self.recorder is not None:
            self.recorder.resize(cols, rows, self.clock.now())

    def record_input(self, agent: str, data: bytes) -> None:
        """Keystrokes the agent sent, attributed to the agent."""
        if self.recorder is not None:
            self.recorder.agent_input(agent, data, self.clock.now())

    def record_hidden(self, why: m.HiddenWhy | None) -> None:
        """The user's output is withheld now (``why``), or shared again (``None``)."""
        if self.recorder is not None:
            self.recorder.hidden(why is not None, self.clock.now(), why or "secret")

    # -- the end -------------------------------------------------------------------------

    def close(self, reason: str = "") -> None:
        """Release everything the session holds; every exit path calls this once.

        The state transition itself is the caller's (through the ledger):
        closing only lets go of timers, watchers, grants and the recording.
        """
        if self.closed:
            return
        self.flush_typed()
        self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.agent is not None:
            self.agent.unwatch(self.id)
        self.grants = GrantTable()
        self.totp_misses = None
        self.hidden = None
        if self.recorder is not None:
            now = self.clock.now()
            if reason:
                self.recorder.marker(reason, now)
            self.recorder.close(at=now)
            self.recorder = None
