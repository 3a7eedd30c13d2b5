"""Permission grants inside a live session, and the policy around them.

The user decides every grant in their own app; the table on the user's
machine is the authority (the broker keeps an advisory copy). A grant has a
scope, an optional expiry, and dies with a revoke::

    table = GrantTable()
    g = table.grant("g1", "control", agent="carol", now=t, seconds=300)
    table.check("g1", "control", now=t + 10)     # ok
    table.revoke()                               # all of them (or some: revoke(("g1",)))
    table.check("g1", "control", now=t + 21)     # GrantRefused("revoked")

Pure: ids and times come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from assist.errors import StateError
from assist.protocol import messages
from assist.protocol.vocabulary import SCOPES

Scope: TypeAlias = messages.Scope
"""What a grant allows: the protocol's own scopes (:data:`SCOPES`)."""

NEEDS_VERIFIED: frozenset[str] = frozenset({"control", "run"})
"""Scopes that act on the user's machine: impossible before identity is verified."""

Reason = Literal["no-grant", "revoked", "expired", "wrong-scope", "not-verified",
                 "secret-input", "paused", "user-away", "input-full",
                 "user-behind"]


class GrantRefused(StateError):
    """An action was refused by the grant rules; ``reason`` says which rule."""

    code = "grant-refused"

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


EXPLAIN: dict[Reason, str] = {
    "no-grant": "the user has not granted this",
    "revoked": "the user revoked the permission",
    "expired": "the permission ran out; ask again",
    "wrong-scope": "that permission does not cover this action",
    "not-verified": "verify the user's identity first",
    "secret-input": "the user's terminal is reading a secret (echo off)",
    "paused": "the user paused sharing their screen",
    "user-away": "the user's connection dropped; they are reconnecting",
    "input-full": "the user's program is not reading what was typed; wait, then type again",
    "user-behind": "the user's side is not keeping up with what you send; wait, then type "
                   "again",
}
"""What each refusal means, for the person who was refused."""


def explain(reason: str) -> str:
    """What a refusal reason (as it came over the wire) means; unknown ones as they are."""
    return next((words for known, words in EXPLAIN.items() if known == reason), reason)


def refuse(reason: Reason) -> GrantRefused:
    """A :class:`GrantRefused` with the standard explanation."""
    return GrantRefused(reason, EXPLAIN[reason])


@dataclass(frozen=True)
class Grant:
    """One permission the user gave."""

    id: str
    scope: Scope
    agent: str
    granted_at: float
    expires_at: float | None = None

    def remaining(self, now: float) -> float | None:
        """Seconds left, or ``None`` for a grant that lasts until revoked."""
        return None if self.expires_at is None else max(0.0, self.expires_at - now)


@dataclass
class GrantTable:
    """The grants of one session."""

    _live: dict[str, Grant] = field(default_factory=dict)
    _dead: dict[str, Reason] = field(default_factory=dict)
    _order: list[Grant] = field(default_factory=list)

    def grant(self, grant_id: str, scope: Scope, agent: str, now: float,
              seconds: float = 0.0) -> Grant:
        """Record a new grant; ``seconds`` 0 means until revoked.

        Raises:
            StateError: for an unknown scope or a reused id.
        """
        if scope not in SCOPES:
            raise StateError(f"unknown permission {scope!r}")
        if grant_id in self._live or grant_id in self._dead:
            raise StateError(f"grant id {grant_id} was already used")
        granted = Grant(grant_id, scope, agent, now, now + seconds if seconds > 0 else None)
        self._live[grant_id] = granted
        self._order.append(granted)
        return granted

    def check(self, grant_id: str, scope: Scope, now: float) -> Grant:
        """Return the live grant ``grant_id`` covering ``scope``.

        Raises:
            GrantRefused: with the reason it cannot be used.
        """
        granted = self._live.get(grant_id)
        if granted is None:
            raise refuse(self._dead.get(grant_id, "no-grant"))
        if granted.scope != scope:
            raise refuse("wrong-scope")
        if granted.expires_at is not None and now >= granted.expires_at:
            del self._live[grant_id]
            self._dead[grant_id] = "expired"
            raise refuse("expired")
        return granted

    def revoke(self, grant_ids: tuple[str, ...] = ()) -> list[Grant]:
        """Revoke the given grants (all when empty); return those that were live."""
        ids = list(grant_ids) if grant_ids else list(self._live)
        gone = [self._live.pop(i) for i in ids if i in self._live]
        for g in gone:
            self._dead[g.id] = "revoked"
        return gone

    def live(self, now: float) -> list[Grant]:
        """Grants usable now, oldest first (expired ones are retired on the way)."""
        for g in list(self._live.values()):
            if g.expires_at is not None and now >= g.expires_at:
                del self._live[g.id]
                self._dead[g.id] = "expired"
        return list(self._live.values())

    def newest(self, scopes: tuple[Scope, ...]) -> str:
        """The id of the newest grant of one of ``scopes``, live or not ("" if none).

        Used for actions that name no grant: checking that id then reports
        why it no longer works (revoked, expired) instead of "no grant".
        """
        now_live = [g for g in reversed(self._order)
                    if g.scope in scopes and g.id in self._live]
        if now_live:
            return now_live[0].id
        return next((g.id for g in reversed(self._order) if g.scope in scopes), "")

    def current(self, scope: Scope, now: float) -> Grant | None:
        """The newest live grant of ``scope``, if any."""
        found = [g for g in self.live(now) if g.scope == scope]
        return found[-1] if found else None


KEY_SCOPES: tuple[Scope, ...] = ("control", "run")
"""Grants under which keystrokes may reach the user's terminal."""


def check_keys(table: GrantTable, grant_id: str, now: float) -> Grant:
    """Return the live ``control`` or ``run`` grant that keystrokes rely on.

    Raises:
        GrantRefused: if ``grant_id`` is no such grant.
    """
    try:
        return table.check(grant_id, "control", now)
    except GrantRefused as exc:
        if exc.reason != "wrong-scope":
            raise
    return table.check(grant_id, "run", now)


def check_policy(scope: str, verified: bool, require_verification: bool = True) -> None:
    """Refuse asking for a scope that acts on the machine before verification.

    Raises:
        GrantRefused: ``not-verified`` for control/run while the user is unverified.
    """
    if require_verification and scope in NEEDS_VERIFIED and not verified:
        raise refuse("not-verified")
