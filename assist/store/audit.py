"""The append-only, hash-chained audit log.

Each record stores the hash of the record before it and its own hash over its
content and that link, so changing or deleting any record breaks the chain
from that point on. Triggers refuse UPDATE and DELETE on the table; the chain
catches edits made behind the program's back (triggers dropped, file edited).
The newest sequence number and hash are also kept in ``meta`` so a cut-off
tail is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assist.errors import AuditError
from assist.store.engine import Database

GENESIS = "0" * 64
"""The ``prev`` of the first record."""


@dataclass(frozen=True)
class AuditRecord:
    """One audit record."""

    seq: int
    at: float
    actor: str
    action: str
    session: str | None
    data: dict[str, Any]
    prev: str
    hash: str


def record_hash(
    seq: int, at: float, actor: str, action: str, session: str | None, data: str, prev: str
) -> str:
    """Return the hash that chains a record to ``prev``."""
    content = json.dumps([seq, repr(at), actor, action, session, data, prev], separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`."""

    records: int
    head: str


class AuditLog:
    """Append and verify audit records."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def append(
        self,
        at: float,
        actor: str,
        action: str,
        session: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Add a record at the end of the chain and return it.

        ``data`` must never hold secrets (keys, TOTP codes, typed passwords).
        """
        at = float(at)  # the store keeps a float, and the hash must be of what it keeps
        payload = json.dumps(dict(data or {}), sort_keys=True, separators=(",", ":"))
        with self._db.transaction() as db:
            # Several brokers may append at once: in turn, each after the last.
            db.lock("audit")
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row["seq"] + 1, row["hash"]) if row else (1, GENESIS)
            digest = record_hash(seq, at, actor, action, session, payload, prev)
            db.execute(
                "INSERT INTO audit (seq, at, actor, action, session, data, prev, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, action, session, payload, prev, digest),
            )
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('audit_head', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"{seq}:{digest}",),
            )
        return AuditRecord(seq, at, actor, action, session, json.loads(payload), prev, digest)

    def records(self, session: str | None = None) -> list[AuditRecord]:
        """All records (or those of one session), oldest first."""
        where, args = ("WHERE session = ?", (session,)) if session else ("", ())
        rows = self._db.execute(f"SELECT * FROM audit {where} ORDER BY seq", args)
        return [
            AuditRecord(r["seq"], r["at"], r["actor"], r["action"], r["session"],
                        json.loads(r["data"]), r["prev"], r["hash"])
            for r in rows
        ]

    def verify(self) -> VerifyResult:
        """Check the whole chain, while brokers may go on appending to it.

        The head is read first and the records up to it are checked against it;
        what was appended meanwhile (a record past the head, and a head that
        moved on with it, written together) is then checked the same way. A
        record past a head that did not move was put there behind its back.

        Raises:
            AuditError: naming the first record that was changed, removed or
                inserted out of order.
        """
        head = self._head()
        prev, expected = GENESIS, 1
        while True:
            last = head[0] if head else 0
            prev, expected = self._walk(prev, expected, last)
            count = expected - 1
            if head is None and count:
                raise AuditError("the audit head is missing: the log was tampered with")
            if head is not None and head != (count, prev):
                raise AuditError(
                    f"the audit log ends at record {count} but its head says "
                    f"{head[0]}: records were removed from the end")
            beyond = self._db.execute("SELECT MIN(seq) AS seq FROM audit WHERE seq > ?",
                                      (count,)).fetchone()
            if beyond["seq"] is None:  # MIN over no rows: nothing past the head
                return VerifyResult(count, prev)
            moved = self._head()
            if moved is None:
                raise AuditError("the audit head is missing: the log was tampered with")
            if moved == head:
                raise AuditError(f"audit record {beyond['seq']} is past the audit head: "
                                 "it was added behind the log's back")
            head = moved

    def _head(self) -> tuple[int, str] | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if row is None:
            return None
        count, _, digest = str(row["value"]).partition(":")
        try:
            return int(count), digest
        except ValueError:
            raise AuditError("the audit head is not valid: the log was tampered with") from None

    def _walk(self, prev: str, expected: int, last: int) -> tuple[str, int]:
        """Check records ``expected`` to ``last`` (chained to ``prev``); return the
        hash of the last one checked and the number of the next."""
        for row in self._db.execute("SELECT * FROM audit WHERE seq >= ? AND seq <= ? "
                                    "ORDER BY seq", (expected, last)):
            seq = row["seq"]
            if seq != expected:
                raise AuditError(f"audit record {expected} is missing (next found is {seq})")
            if row["prev"] != prev:
                raise AuditError(f"audit record {seq} does not link to record {seq - 1}")
            digest = record_hash(seq, row["at"], row["actor"], row["action"], row["session"],
                                 row["data"], row["prev"])
            if digest != row["hash"]:
                raise AuditError(f"audit record {seq} was changed after it was written")
            prev, expected = digest, seq + 1
        return prev, expected
