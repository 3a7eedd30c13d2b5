"""Invites: codes that let a new user's key in, once (or N times), until they expire.

``assist invite`` makes one; the join string it prints carries the code to
the user, whose ``assist help --join`` enrols their key with it. Only a hash
of each code is stored: a copy of the database lets nobody in. A code that
was used up stays (with no uses left) so that a second use is told so rather
than "unknown".
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from assist.errors import InviteRefused
from assist.store.engine import Database


def new_code() -> str:
    """A fresh invite code: 128 random bits in 22 URL-safe characters."""
    return secrets.token_urlsafe(16)


def code_hash(code: str) -> str:
    """What is stored of a code (it carries 128 random bits: a plain hash suffices)."""
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class Invite:
    """An invite as stored.

    Attributes:
        name: the user the key is enrolled as ("" lets the user's client propose one).
        uses_left: how many more keys it may enrol.
        expires_at: when it stops working (epoch seconds).
        made_by: who made it (``admin`` or ``agent:NAME``).
    """

    name: str
    uses_left: int
    expires_at: float
    made_by: str
    made_at: float


class Invites:
    """Repository of invites."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def make(self, code: str, name: str, uses: int, expires_at: float, by: str,
             now: float) -> Invite:
        """Store a new invite for ``code``."""
        with self._db.transaction() as db:
            db.execute("INSERT INTO invites (code_hash, name, uses_left, expires_at, made_by,"
                       " made_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (code_hash(code), name, uses, expires_at, by, now))
        return Invite(name, uses, expires_at, by, now)

    def find(self, code: str) -> Invite | None:
        """The invite of ``code`` as it stands, or ``None``."""
        row = self._db.execute("SELECT name, uses_left, expires_at, made_by, made_at FROM "
                               "invites WHERE code_hash = ?", (code_hash(code),)).fetchone()
        return Invite(row["name"], row["uses_left"], row["expires_at"], row["made_by"],
                      row["made_at"]) if row else None

    def check(self, code: str, now: float) -> Invite:
        """``code``'s invite if it is still good (nothing is spent).

        Raises:
            InviteRefused: the code is unknown, used up or expired (the message
                says what to do).
        """
        invite = self.find(code)
        if invite is None:
            raise InviteRefused("this invite is not known to the helpdesk: check that "
                                "you pasted the whole line, or ask for a new one")
        if invite.uses_left <= 0:
            raise InviteRefused("this invite was already used; ask your helpdesk for "
                                "a new one")
        if invite.expires_at <= now:
            raise InviteRefused("this invite has expired; ask your helpdesk for a new one")
        return invite

    def use(self, code: str, now: float) -> Invite:
        """Take one use of ``code``'s invite, at once and only if it is still good.

        Raises:
            InviteRefused: the code is unknown, used up or expired (the message
                says what to do).
        """
        with self._db.transaction() as db:
            invite = self.check(code, now)
            # One conditional update, so two brokers cannot both spend the last use.
            spent = db.execute("UPDATE invites SET uses_left = uses_left - 1 WHERE code_hash = ?"
                               " AND uses_left > 0 AND expires_at > ?",
                               (code_hash(code), now)).rowcount
            if spent != 1:
                self.check(code, now)  # raises: another broker took the last use
        return Invite(invite.name, invite.uses_left - 1, invite.expires_at, invite.made_by,
                      invite.made_at)

    def pending(self, now: float) -> list[Invite]:
        """Invites that still work, newest first."""
        rows = self._db.execute("SELECT name, uses_left, expires_at, made_by, made_at FROM "
                                "invites WHERE uses_left > 0 AND expires_at > ? "
                                "ORDER BY made_at DESC", (now,)).fetchall()
        return [Invite(r["name"], r["uses_left"], r["expires_at"], r["made_by"], r["made_at"])
                for r in rows]
