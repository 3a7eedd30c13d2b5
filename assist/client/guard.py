"""The user's side of trust: grants, agent keystrokes, annotations, verification.

:class:`Guard` is the authority on the user's machine. It keeps the session's
:class:`~assist.core.grants.GrantTable`, decides every keystroke message
against it (and against echo-off password prompts and identity verification)
before a single byte reaches the pty, and revokes every grant locally, at
once, before telling anyone. The broker's copy of the grants is advisory.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec

from assist.core.grants import (
    KEY_SCOPES,
    NEEDS_VERIFIED,
    GrantRefused,
    GrantTable,
    Scope,
    check_keys,
    refuse,
)
from assist.errors import ConnectionFailed
from assist.protocol import messages as m
from assist.transport.channel import ChannelClosed, Outlet

log = logging.getLogger(__name__)

Notify = Callable[[m.Msg], None]


class Guard:
    """Decide what the agent may do on this machine, in one session.

    Args:
        channel: where messages to the broker go (the link, which outlives
            reconnects, or a channel).
        session: the live session id.
        write: types the agent's bytes into the user's pty (only ever called for
            allowed keys), e.g. ``lambda data: pty.write(data, agent=True)``.
        secret: True while the pty reads a secret (echo off).
        clock: wall-clock time (grants expire by it).
        require_verification: no control before the agent verified the user.
        on_ask: the agent asks for a permission (or the user's authenticator
            code): show the question; answer with :meth:`decide` / :meth:`code`.
        on_annotation: an allowed ``Annotate`` or a ``ClearAnnotations`` to show.
        on_change: grants or verification changed (refresh what is shown).
        top: the line number of the screen's first row, to anchor marks that
            scripts place by screen row (``Annotation.relative``).
        drop: forgets agent keystrokes still queued for the pty (on a revoke,
            they must not arrive later); see ``PtyProcess.drop_agent_input``.
        verified: the session was verified before this guard began (an app
            taking a live session over from another terminal).
        room: bytes of agent keystrokes the pty may still queue; keys past it are
            refused (``input-full``) while the program does not read.
    """

    def __init__(
        self,
        channel: Outlet,
        session: str,
        write: Callable[[bytes], None],
        secret: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        require_verification: bool = True,
        on_ask: Notify | None = None,
        on_annotation: Notify | None = None,
        on_change: Callable[[], None] | None = None,
        top: Callable[[], int] | None = None,
        drop: Callable[[], object] | None = None,
        verified: bool = False,
        room: Callable[[], int] | None = None,
    ) -> None:
        self.channel = channel
        self.session = session
        self.write = write
        self.secret = secret
        self.clock = clock
        self.require_verification = require_verification
        self.on_ask = on_ask or (lambda msg: None)
        self.on_annotation = on_annotation or (lambda msg: None)
        self.on_change = on_change or (lambda: None)
        self.top = top or (lambda: 0)
        self.drop = drop or (lambda: None)
        self.room = room or (lambda: 1 << 62)
        self.table = GrantTable()
        self.verified = verified
        self.typed = 0
        self.refused = 0
        self.active = True
        self.paused = False
        """The user paused sharing: every keystroke is refused until they resume."""

    # -- messages from the broker ------------------------------------------------------

    def handle(self, msg: m.Msg) -> bool:
        """Handle a trust message of this session; return True if it was one."""
        if getattr(msg, "session", None) != self.session or not self.active:
            return False
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            return False
        handler(self, msg)
        return True

    def _ask(self, msg: m.AskGrant) -> None:
        if self.require_verification and msg.scope in NEEDS_VERIFIED and not self.verified:
            # Policy, enforced here too: never even ask the user.
            self._send(m.GrantAnswer(session=self.session, scope=msg.scope, allowed=False,
                                     reason="not-verified"))
            return
        self.on_ask(msg)

    def _keys(self, msg: m.Keys) -> None:
        try:
            self.allow_keys(msg.grant)
            if len(msg.data) > self.room():
                raise refuse("input-full")
        except GrantRefused as exc:
            self.refused += 1
            log.info("refused agent keystrokes: %s", exc.reason)
            self._send(m.KeysRefused(session=self.session, grant=msg.grant, reason=exc.reason))
            return
        self.typed += len(msg.data)
        self.write(msg.data)

    def allow_keys(self, grant_id: str) -> None:
        """Check that keystrokes under ``grant_id`` may reach the pty now.

        Raises:
            GrantRefused: no live control (or run) grant, not verified, sharing is
                paused or a secret is being read.
        """
        check_keys(self.table, grant_id, self.clock())
        if self.require_verification and not self.verified:
            raise refuse("not-verified")
        if self.paused:
            raise refuse("paused")
        if self.secret():
            raise refuse("secret-input")

    def _annotate(self, msg: m.Annotate) -> None:
        try:
            self.table.check(msg.grant, "annotate", self.clock())
        except GrantRefused:
            return  # Nothing is drawn without the user's say-so.
        a = msg.annotation
        if a.relative:
            top = self.top()
            a = msgspec.structs.replace(a, line=a.line + top, line2=a.line2 + top,
                                        relative=False)
            msg = msgspec.structs.replace(msg, annotation=a)
        self.on_annotation(msg)

    def _clear(self, msg: m.ClearAnnotations) -> None:
        self.on_annotation(msg)

    def _verified(self, msg: m.Verified) -> None:
        if msg.ok:
            self.verified = True
        self.on_change()

    def _ask_code(self, msg: m.AskCode) -> None:
        self.on_ask(msg)

    # -- the user's decisions -------------------------------------------------------------

    def decide(self, ask: m.AskGrant, allowed: bool, seconds: float | None = None) -> str:
        """Answer a request; return the new grant id ("" when refused).

        ``seconds`` overrides the duration the agent asked for (0: until revoked).
        """
        scope: Scope = ask.scope
        grant_id = ""
        expires: float | None = None
        if allowed:
            grant_id = secrets.token_hex(6)
            granted = self.table.grant(grant_id, scope, ask.agent, self.clock(),
                                       ask.seconds if seconds is None else seconds)
            expires = granted.expires_at
        self._send(m.GrantAnswer(session=self.session, scope=scope, allowed=allowed,
                                 grant=grant_id, expires_at=expires))
        self.on_change()
        return grant_id

    def revoke_all(self) -> int:
        """Revoke every grant, locally first; return how many were live."""
        gone = self.table.revoke()
        self.drop()
        self._send(m.Revoke(session=self.session, grants=tuple(g.id for g in gone)))
        self.on_change()
        return len(gone)

    def reannounce(self) -> int:
        """Tell the broker again which grants are live (after a reconnect); return how many.

        The broker forgets its copy when the user's connection comes back;
        this table is the authority, so it says what still holds.
        """
        live = self.table.live(self.clock())
        for g in live:
            self._send(m.GrantAnswer(session=self.session, scope=g.scope, allowed=True,
                                     grant=g.id, expires_at=g.expires_at, restored=True))
        return len(live)

    def code(self, code: str) -> None:
        """Send the authenticator code the user typed (it is never logged)."""
        self._send(m.Code(session=self.session, code=code.strip()))

    def clear_annotations(self) -> None:
        """The user clears the agent's marks (the agent is told)."""
        self._send(m.ClearAnnotations(session=self.session))

    def stop(self) -> None:
        """The session is over: every grant dies with it."""
        self.table.revoke()
        self.drop()
        self.active = False

    def allows(self, scope: m.Scope) -> bool:
        """A grant of ``scope`` is live now and the session is not paused."""
        return self.active and not self.paused and \
            self.table.current(scope, self.clock()) is not None

    def keys_allowed(self) -> bool:
        """Agent keystrokes still waiting for the pty may be delivered now.

        Asked again at delivery, since keys may wait while the program does not
        read: once every control and run grant has run out (or the user paused,
        or the session ended) they are dropped, not typed late.
        """
        if self.require_verification and not self.verified:
            return False
        return any(self.allows(scope) for scope in KEY_SCOPES)

    def summary(self) -> str:
        """The live grants in a few words, e.g. ``control 4:32 left, annotate``."""
        now = self.clock()
        parts = []
        for g in self.table.live(now):
            left = g.remaining(now)
            parts.append(g.scope if left is None else
                         f"{g.scope} {int(left) // 60}:{int(left) % 60:02d} left")
        return ", ".join(parts)

    def _send(self, msg: m.Msg) -> None:
        with contextlib.suppress(ChannelClosed, ConnectionFailed):
            self.channel.send_nowait(msg)


_HANDLERS: dict[type[m.Msg], Callable[[Guard, Any], None]] = {
    m.AskGrant: Guard._ask,
    m.Keys: Guard._keys,
    m.Annotate: Guard._annotate,
    m.ClearAnnotations: Guard._clear,
    m.Verified: Guard._verified,
    m.AskCode: Guard._ask_code,
}
