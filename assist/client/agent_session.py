"""The agent's side of one live session: what the agent knows of it, and what it may do.

An :class:`AgentSession` owns, for one session on one agent connection: the
:class:`~assist.protocol.messages.SessionInfo`, whether the user is
verified, the grants the user gave by scope (with their expiry), the asks
still waiting for an answer, whether the user's terminal reads a secret,
whether the user is away, the :class:`~assist.client.share.TerminalViewer`
of the user's screen and the marks drawn on it. Every front end stands on
it: the console renders from it, a runbook waits on it::

    live = AgentSession(agent, info)            # or AgentSession.joining(agent, session_id)
    async for msg in agent.events():
        change = live.handle(msg)               # None: not this session's business
        if change is not None and change.screen:
            redraw(live.viewer.emulator)
    await live.ask("control", 300)              # GrantRefused before verification
    await live.type_keys(b"ls\\r")              # StateError without control or run

The rules of what an agent may do are here, once: ``control`` and ``run``
are asked for only once the user is verified
(:func:`~assist.core.grants.check_policy`), typing needs a ``control`` or
``run`` grant, marks need an ``annotate`` grant. They are the agent's own
checks, so a person hears at once why not; the broker and the user's machine
(the authority) check everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assist.client.agent import AgentClient
from assist.client.share import TerminalViewer
from assist.core.grants import KEY_SCOPES, GrantRefused, check_policy
from assist.errors import AssistError, StateError
from assist.protocol import messages as m

MARK_TTL = 30.0
"""Seconds before a mark fades on the user's screen."""
LOST_WITH_KEYS = ("revoked", "expired", "no-grant")
"""Refusals of keystrokes that mean the grant they relied on is gone."""


@dataclass(frozen=True)
class Change:
    """What one event of the session changed, for a front end to show.

    Attributes:
        screen: the picture of the user's screen (:attr:`AgentSession.viewer`).
        trust: verification, grants, asks pending or hidden input.
        presence: the user went away or came back (:attr:`AgentSession.away_until`).
        resumed: the session goes on after a reconnect (:attr:`AgentSession.info` is new).
        ended: the session is over (or the user left before it started).
        granted: the user just allowed this scope (not a grant restored after a reconnect).
        declined: the user (or their machine) said no to this scope.
        lost: grants gone: revoked, or refused as no longer valid.
        cleared: marks the user removed (``()``: all of them), if any.
    """

    screen: bool = False
    trust: bool = False
    presence: bool = False
    resumed: bool = False
    ended: bool = False
    granted: m.Scope | None = None
    declined: m.Scope | None = None
    lost: tuple[m.Scope, ...] = ()
    cleared: tuple[str, ...] | None = None


class AgentSession:
    """One live session as the agent sees it, and the agent's actions in it.

    Nothing reads the connection here: the owner of the connection's events
    passes each to :meth:`handle` (so one connection can serve a console, a
    runbook or a script alike).

    Args:
        agent: the agent's client, said hello.
        info: the session as the broker announced it (``Started``), or only its
            id, for a session to join (see :meth:`joining`).
        mark_prefix: ids of the marks this session draws start with it.
        require_verification: ask ``control``/``run`` only once verified
            (the broker's policy ``require_verification``; the user's machine
            always requires it).
    """

    def __init__(self, agent: AgentClient, info: m.SessionInfo | str,
                 mark_prefix: str = "m", require_verification: bool = True) -> None:
        self.agent = agent
        known = info if isinstance(info, m.SessionInfo) else None
        self.id = known.session if known is not None else str(info)
        self.info: m.SessionInfo | None = known
        """``None`` until the broker announced the session (see :meth:`joining`)."""
        self.verified = known is not None and known.verified
        self.grants: dict[m.Scope, m.GrantAnswer] = {}
        """The grants the user gave, by scope (the newest of each)."""
        self.answers: dict[m.Scope, m.GrantAnswer] = {}
        """The user's last answer to an ask, by scope (restored grants are no answer)."""
        self.pending: set[m.Scope] = set()
        """Scopes asked for and not answered yet."""
        self.verifying: m.VerifyMethod | None = None
        """A verification started and not concluded yet."""
        self.verification: m.Verified | None = None
        """The last verification outcome."""
        self.away_until: float | None = None
        """While the user's connection is down: when the session gives up on them."""
        self.ended = False
        cols, rows = (known.cols, known.rows) if known is not None else (80, 24)
        self.viewer = TerminalViewer(self.id, cols, rows)
        self.marks: dict[str, m.Annotation] = {}
        """Marks drawn and not cleared (they also fade on their own)."""
        self.require_verification = require_verification
        self._mark_ids = (f"{mark_prefix}{n}" for n in itertools.count(1))
        self._changed = asyncio.Event()

    @classmethod
    def joining(cls, agent: AgentClient, session: str, mark_prefix: str = "m"
                ) -> AgentSession:
        """A session of this agent that another connection started (a script, a bot).

        :attr:`info` and the grants still held arrive once :meth:`resync` is
        answered (the broker replays them as a resumed ``Started`` and
        restored ``GrantAnswer`` events for :meth:`handle`).
        """
        return cls(agent, session, mark_prefix)

    # -- what the agent knows ----------------------------------------------------------

    @property
    def user(self) -> str:
        """The user's name ("the user" before the session is announced)."""
        return self.info.user if self.info is not None else "the user"

    @property
    def hidden(self) -> bool:
        """The user's terminal reads a secret (echo off): their output is withheld."""
        return self.viewer.hidden

    @property
    def paused(self) -> bool:
        """The user paused sharing (privacy pause): nothing of their screen comes,
        and they take no keys, until they resume."""
        return self.viewer.paused

    @property
    def away(self) -> bool:
        """The user's connection dropped and the session waits for them."""
        return self.away_until is not None

    def holds(self, scope: m.Scope) -> bool:
        """True if the user's grant of ``scope`` is held (as far as the agent knows)."""
        return scope in self.grants

    def expire(self, now: float | None = None) -> list[m.Scope]:
        """Retire the grants that ran out; return their scopes."""
        now = time.time() if now is None else now
        gone = [scope for scope, g in self.grants.items()
                if g.expires_at is not None and g.expires_at <= now]
        for scope in gone:
            del self.grants[scope]
        return gone

    def grant_for(self, scopes: tuple[m.Scope, ...], now: float | None = None
                  ) -> m.GrantAnswer | None:
        """The held grant of the first of ``scopes`` that has one not run out.

        Expired grants are left for :meth:`expire` to retire (and its caller to tell).
        """
        now = time.time() if now is None else now
        for scope in scopes:
            g = self.grants.get(scope)
            if g is not None and (g.expires_at is None or g.expires_at > now):
                return g
        return None

    # -- events ------------------------------------------------------------------------

    def handle(self, msg: m.Msg) -> Change | None:
        """Update from one event of the connection; ``None`` if it is none of ours.

        Takes the session's screen stream (via the viewer), verification,
        grant answers (restored ones too), revokes, refused keys, cleared
        marks, the user's presence, a resumed ``Started`` and the end.
        """
        change = self._apply(msg)
        if change is not None:
            self._changed.set()
        return change

    def _apply(self, msg: m.Msg) -> Change | None:
        if isinstance(msg, m.Started):
            return self._started(msg) if msg.info.session == self.id else None
        if getattr(msg, "session", None) != self.id:
            return None
        if self.viewer.handle(msg):
            return Change(screen=True, trust=isinstance(msg, m.Hidden))
        handler = _HANDLERS.get(type(msg))
        return handler(self, msg) if handler is not None else None

    def _started(self, msg: m.Started) -> Change | None:
        if not msg.resumed and self.info is not None:
            return None  # a new start of a session we know: not ours to follow
        self.info = msg.info
        self.verified = msg.info.verified
        # The broker says again which grants still hold (restored answers follow).
        self.grants.clear()
        return Change(trust=True, resumed=True)

    def _on_verified(self, msg: m.Verified) -> Change:
        self.verifying = None
        self.verification = msg
        self.verified = self.verified or msg.ok
        return Change(trust=True)

    def _on_grant(self, msg: m.GrantAnswer) -> Change:
        if msg.allowed:
            self.grants[msg.scope] = msg
        if msg.restored:
            return Change(trust=True)
        self.pending.discard(msg.scope)
        self.answers[msg.scope] = msg
        if msg.allowed:
            return Change(trust=True, granted=msg.scope)
        return Change(trust=True, declined=msg.scope)

    def _on_revoke(self, msg: m.Revoke) -> Change:
        lost = tuple(scope for scope, g in self.grants.items()
                     if not msg.grants or g.grant in msg.grants)
        return self._lose(lost)

    def _on_refused(self, msg: m.KeysRefused) -> Change:
        lost: tuple[m.Scope, ...] = ()
        if msg.reason in LOST_WITH_KEYS:
            lost = tuple(scope for scope, g in self.grants.items()
                         if scope in KEY_SCOPES and g.grant == msg.grant)
        return self._lose(lost)

    def _lose(self, lost: tuple[m.Scope, ...]) -> Change:
        for scope in lost:
            del self.grants[scope]
        return Change(trust=bool(lost), lost=lost)

    def _on_clear(self, msg: m.ClearAnnotations) -> Change:
        self._forget_marks(msg.ids)
        return Change(cleared=msg.ids)

    def _on_away(self, msg: m.Away) -> Change | None:
        if msg.who != "user":
            return None
        self.away_until = msg.until
        return Change(presence=True)

    def _on_back(self, msg: m.Back) -> Change | None:
        if msg.who != "user":
            return None
        self.away_until = None
        return Change(presence=True)

    def _on_end(self, msg: m.Ended | m.UserLost) -> Change:
        self.ended = True
        self.grants.clear()
        self.pending.clear()
        self.verifying = None
        self.away_until = None
        return Change(trust=True, ended=True)

    async def until(self, predicate: Callable[[], object]) -> None:
        """Wait until ``predicate()`` holds, looking again after every event handled.

        Someone must be passing the connection's events to :meth:`handle`;
        bound the wait with ``asyncio.timeout``.
        """
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    # -- actions -----------------------------------------------------------------------

    async def verify(self, method: m.VerifyMethod, note: str = "") -> None:
        """Start verifying the user; the outcome comes as a ``Verified`` event.

        Raises:
            BrokerError: if the broker refuses (e.g. the user is not enrolled for TOTP).
        """
        self.verifying = method
        try:
            await self.agent.verify(self.id, method, note)
        except BaseException:
            self.verifying = None
            raise

    def may_ask(self, scope: m.Scope) -> None:
        """Check, before asking anything of the agent (a duration), that ``scope`` may
        be asked for now.

        Raises:
            GrantRefused: ``not-verified`` for control or run before verification.
        """
        check_policy(scope, self.verified, self.require_verification)

    async def decline_media(self, msg: m.Msg) -> bool:
        """Say no to a media offer of this session (agents without a console have no
        voice or camera); return whether ``msg`` was one. The user's side is told at once
        instead of waiting for an answer that never comes."""
        if not (isinstance(msg, m.Signal) and msg.session == self.id and msg.kind == "offer"):
            return False
        with contextlib.suppress(AssistError):  # a dropped link: the user's side times out
            await self.agent.link.send(m.Signal(session=self.id, kind="bye", line=msg.line))
        return True

    async def ask(self, scope: m.Scope, seconds: float = 0.0) -> None:
        """Ask the user for ``scope`` (``seconds`` 0: until revoked); the answer is an event.

        Raises:
            GrantRefused: ``not-verified`` for control or run before verification.
            BrokerError: if the broker refuses.
        """
        self.may_ask(scope)
        self.pending.add(scope)
        try:
            await self.agent.ask_grant(self.id, scope, seconds)
        except BaseException:
            self.pending.discard(scope)
            raise

    async def type_keys(self, data: bytes, under: tuple[m.Scope, ...] = KEY_SCOPES) -> None:
        """Type ``data`` into the user's terminal under the first of ``under`` held.

        A refusal on the way (hidden input, a revoke the agent has not heard
        of yet) comes back as a ``KeysRefused`` event.

        Raises:
            GrantRefused: ``no-grant`` if no control or run grant is held,
                ``paused`` while the user paused sharing.
        """
        if not set(under) <= set(KEY_SCOPES):
            raise StateError(f"keys go only under {' or '.join(KEY_SCOPES)} grants")
        if self.paused:
            raise GrantRefused("paused", f"{self.user} paused sharing: wait until they "
                                         "resume")
        grant = self.grant_for(under)
        if grant is None:
            raise GrantRefused("no-grant", f"typing needs the user's {' or '.join(under)} "
                                           "permission: ask for it first")
        await self.agent.send_keys(self.id, grant.grant, data)

    async def annotate(self, kind: m.AnnotationKind, start: tuple[int, int],
                       end: tuple[int, int] | None = None, text: str = "",
                       ttl: float = MARK_TTL, surface: m.Surface = "terminal",
                       relative: bool = False) -> m.Annotation:
        """Draw a mark from ``start`` to ``end`` (``(x, line)``: cells or desktop pixels).

        ``relative``: lines are rows of the user's screen as it is (for scripts).

        Returns:
            The mark as sent, with its id (to draw it locally too).

        Raises:
            GrantRefused: ``no-grant`` without an annotate grant.
            BrokerError: if the broker refuses.
        """
        grant = self.grant_for(("annotate",))
        if grant is None:
            raise GrantRefused("no-grant", "marks need the user's annotate permission: "
                                           "ask for it first")
        (x, line), (x2, line2) = start, end or start
        mark = m.Annotation(id=next(self._mark_ids), kind=kind, x=x, line=line, x2=x2,
                            line2=line2, text=text, ttl=ttl, surface=surface,
                            relative=relative)
        await self.agent.annotate(self.id, grant.grant, mark)
        self.marks[mark.id] = mark
        return mark

    async def clear_marks(self, ids: tuple[str, ...] = ()) -> None:
        """Remove marks from the user's screen (all when ``ids`` is empty)."""
        self._forget_marks(ids)
        await self.agent.clear_annotations(self.id, ids)

    def _forget_marks(self, ids: tuple[str, ...]) -> None:
        if not ids:
            self.marks.clear()
        for mark in ids:
            self.marks.pop(mark, None)

    async def chat(self, text: str) -> None:
        """Send a chat line to the user."""
        await self.agent.chat(self.id, text)

    async def resync(self) -> None:
        """Ask for the session as it stands: a resumed ``Started``, grants, a snapshot.

        Raises:
            BrokerError: ``not-found`` if it is not a live session of this agent.
        """
        await self.agent.resync(self.id)

    async def end(self, root_cause: str, resolved: bool = True) -> None:
        """End the session, tagging its root cause."""
        await self.agent.end(self.id, root_cause, resolved)

    async def handoff(self, note: str) -> None:
        """Hand the user back to the front of the queue for another agent."""
        await self.agent.handoff(self.id, note)

    async def root_causes(self) -> tuple[str, ...]:
        """Root-cause tags used before, most frequent first."""
        return await self.agent.root_causes()


_HANDLERS: dict[type[m.Msg], Callable[[AgentSession, Any], Change | None]] = {
    m.Verified: AgentSession._on_verified,
    m.GrantAnswer: AgentSession._on_grant,
    m.Revoke: AgentSession._on_revoke,
    m.KeysRefused: AgentSession._on_refused,
    m.ClearAnnotations: AgentSession._on_clear,
    m.Away: AgentSession._on_away,
    m.Back: AgentSession._on_back,
    m.Ended: AgentSession._on_end,
    m.UserLost: AgentSession._on_end,
}
"""The session's events besides its screen stream, and what each does."""
