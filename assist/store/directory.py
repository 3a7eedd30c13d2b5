"""The directory: users and agents and the SSH keys they authenticate with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from assist.core.pubkey import PublicKey
from assist.errors import ConfigError, Duplicate, NotFound, StoreError
from assist.store.engine import Database
from assist.store.seal import Sealer, is_sealed

Role = Literal["user", "agent"]
_TABLE: dict[Role, str] = {"user": "users", "agent": "agents"}
# \Z, not $: "$" also matches before a final newline, which would let "alice\n" in.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")


@dataclass(frozen=True)
class KeyRow:
    """A registered key."""

    fingerprint: str
    kind: str
    comment: str


@dataclass(frozen=True)
class Person:
    """A user or agent with their keys."""

    role: Role
    name: str
    created: float
    keys: tuple[KeyRow, ...]
    totp: bool = False


@dataclass(frozen=True)
class Identity:
    """Who a key belongs to."""

    role: Role
    name: str
    fingerprint: str


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid directory name.

    Raises:
        ConfigError: if it has characters other than letters, digits and ``._@-``.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def stored_secrets(db: Database) -> list[tuple[str, str]]:
    """Each enrolled user's name and TOTP secret as stored (sealed or not). Never log it."""
    rows = db.execute(
        "SELECT name, totp_secret FROM users WHERE totp_secret IS NOT NULL").fetchall()
    return [(row["name"], row["totp_secret"]) for row in rows]


class Directory:
    """Repository of users, agents and keys."""

    def __init__(self, db: Database, sealer: Sealer | None = None) -> None:
        self._db = db
        self._sealer = sealer

    def add(self, role: Role, name: str, key: PublicKey | None, now: float) -> Person:
        """Register a new user or agent, optionally with a key.

        Raises:
            Duplicate: if the name exists in this role, or the key is already
                registered to anyone (in either role).
        """
        check_name(name)
        with self._db.transaction() as db:
            if db.execute(f"SELECT 1 FROM {_TABLE[role]} WHERE name = ?", (name,)).fetchone():
                raise Duplicate(f"{role} {name!r} already exists")
            db.execute(f"INSERT INTO {_TABLE[role]} (name, created) VALUES (?, ?)", (name, now))
            if key is not None:
                self._insert_key(role, name, key, now)
        return self.get(role, name)

    def add_key(self, role: Role, name: str, key: PublicKey, now: float) -> None:
        """Register one more key for an existing user or agent."""
        self.get(role, name)
        with self._db.transaction():
            self._insert_key(role, name, key, now)

    def _insert_key(self, role: Role, name: str, key: PublicKey, now: float) -> None:
        owner = self.lookup(key.fingerprint)
        if owner is not None:
            raise Duplicate(
                f"key {key.fingerprint} is already registered to {owner.role} {owner.name!r}"
            )
        self._db.execute(
            "INSERT INTO keys (fingerprint, role, owner, public_key, comment, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key.fingerprint, role, name, key.openssh, key.comment, now),
        )

    def remove(self, role: Role, name: str) -> None:
        """Delete a user or agent and their keys.

        Raises:
            NotFound: if there is no such user or agent.
        """
        with self._db.transaction() as db:
            cur = db.execute(f"DELETE FROM {_TABLE[role]} WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f"no {role} named {name!r}")
            db.execute("DELETE FROM keys WHERE role = ? AND owner = ?", (role, name))

    def get(self, role: Role, name: str) -> Person:
        """Return one user or agent.

        Raises:
            NotFound: if there is no such user or agent.
        """
        found = [p for p in self.list(role, name) if p.name == name]
        if not found:
            raise NotFound(f"no {role} named {name!r}")
        return found[0]

    def list(self, role: Role, name: str | None = None) -> list[Person]:
        """Return all users or agents (or the one named), sorted by name."""
        table = _TABLE[role]
        totp = "totp_secret IS NOT NULL" if role == "user" else "0"
        where, args = ("WHERE name = ?", (name,)) if name else ("", ())
        people = self._db.execute(
            f"SELECT name, created, {totp} AS totp FROM {table} {where} ORDER BY name", args
        ).fetchall()
        keys: dict[str, list[KeyRow]] = {}
        for row in self._db.execute(
            "SELECT owner, fingerprint, public_key, comment FROM keys WHERE role = ?"
            " ORDER BY created",
            (role,),
        ):
            keys.setdefault(row["owner"], []).append(
                KeyRow(row["fingerprint"], row["public_key"].split()[0], row["comment"])
            )
        return [
            Person(role, p["name"], p["created"], tuple(keys.get(p["name"], ())), bool(p["totp"]))
            for p in people
        ]

    def lookup(self, fingerprint: str) -> Identity | None:
        """Return whose key has ``fingerprint``, or ``None`` if nobody's."""
        row = self._db.execute(
            "SELECT role, owner FROM keys WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return Identity(row["role"], row["owner"], fingerprint) if row else None

    def set_totp(self, name: str, secret: str | None) -> None:
        """Store (sealed) or clear a user's TOTP secret.

        Raises:
            NotFound: if there is no such user.
            StoreError: if the store was opened without its secret key.
        """
        stored = None if secret is None else self._sealer_for(name).seal(secret, name)
        with self._db.transaction() as db:
            cur = db.execute("UPDATE users SET totp_secret = ? WHERE name = ?", (stored, name))
            if cur.rowcount == 0:
                raise NotFound(f"no user named {name!r}")

    def totp_secret(self, name: str) -> str | None:
        """Return a user's TOTP secret, if enrolled. Never log it.

        Raises:
            StoreError: if the secret is sealed and the key to open it is missing.
        """
        row = self._db.execute("SELECT totp_secret FROM users WHERE name = ?", (name,)).fetchone()
        value = row["totp_secret"] if row else None
        if value is None:
            return None
        if not is_sealed(value):
            return str(value)
        return self._sealer_for(name).open(value, name)

    def _sealer_for(self, name: str) -> Sealer:
        if self._sealer is None:
            raise StoreError(f"the TOTP secret of {name} is sealed: open the store with the "
                             "broker's secret key file (secret_key_path in broker.toml)")
        return self._sealer

    def seal_plain(self) -> int:
        """Seal every TOTP secret still stored in the clear; return how many there were."""
        sealer = self._sealer_for("the users")
        plain = [(name, value) for name, value in stored_secrets(self._db) if not is_sealed(value)]
        with self._db.transaction() as db:
            for name, secret in plain:
                db.execute("UPDATE users SET totp_secret = ? WHERE name = ?",
                           (sealer.seal(secret, name), name))
        return len(plain)

    def reseal(self, sealer: Sealer) -> int:
        """Seal every TOTP secret again with ``sealer``'s newest key (a key rotation)."""
        current = self._sealer_for("the users")
        stored = stored_secrets(self._db)
        with self._db.transaction() as db:
            for name, value in stored:
                db.execute("UPDATE users SET totp_secret = ? WHERE name = ?",
                           (sealer.seal(current.open(value, name), name), name))
        self._sealer = sealer
        return len(stored)
