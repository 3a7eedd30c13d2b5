"""Sessions and their event timeline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from assist.core.session import Session, State
from assist.errors import Moved, NotFound
from assist.store.engine import Database

_COLUMNS = (
    "id, \"user\", topic, state, queued_at, offered_at, answered_at, ended_at, agent,"
    " requeued, requeues, verified, resolved, root_cause, csat, user_key, registered"
)


def _from_row(row: Any) -> Session:
    return Session(
        id=row["id"],
        user=row["user"],
        topic=row["topic"],
        queued_at=row["queued_at"],
        state=State(row["state"]),
        agent=row["agent"],
        offered_at=row["offered_at"],
        answered_at=row["answered_at"],
        ended_at=row["ended_at"],
        verified=bool(row["verified"]),
        resolved=None if row["resolved"] is None else bool(row["resolved"]),
        root_cause=row["root_cause"],
        requeues=row["requeues"],
        key=row["user_key"],
        registered=bool(row["registered"]),
    )


class SessionRepo:
    """Repository of sessions and session events."""

    def __init__(self, db: Database, node: str = "") -> None:
        self._db = db
        self.node = node
        """The broker node that holds the sessions this repository inserts."""
        self.fenced = False
        """Write only the sessions :attr:`node` holds (set for a node of several)."""

    def insert(self, session: Session, resume_hash: str | None) -> None:
        """Store a new session."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO sessions (id, \"user\", topic, state, queued_at, resume_hash,"
                " user_key, registered, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, session.user, session.topic, session.state, session.queued_at,
                 resume_hash, session.key, int(session.registered), self.node),
            )
            self._event(session.id, session.queued_at, "queued", session.user, {})

    def save(self, session: Session, event: str, actor: str, data: Mapping[str, Any]) -> None:
        """Store a session's new state together with the event that caused it."""
        at = session.history[-1][0] if session.history else session.queued_at
        # A node writes only the sessions it holds: one thought dead that comes back
        # must not overwrite what the node that took them over does.
        fence, args = (" AND node = ?", (self.node,)) if self.fenced else ("", ())
        with self._db.transaction() as db:
            changed = db.execute(
                "UPDATE sessions SET state = ?, offered_at = ?, answered_at = ?, ended_at = ?,"
                " agent = ?, requeued = ?, requeues = ?, verified = ?, resolved = ?,"
                f" root_cause = ? WHERE id = ?{fence}",
                (session.state, session.offered_at, session.answered_at, session.ended_at,
                 session.agent, int(session.state is State.REQUEUED),
                 session.requeues, int(session.verified),
                 None if session.resolved is None else int(session.resolved),
                 session.root_cause, session.id, *args),
            ).rowcount
            if fence and not changed:
                raise Moved(f"session {session.id} is held by node {self.holder(session.id)} "
                            "now, not by this one", session.id)
            self._event(session.id, at, event, actor, data)

    def _event(self, session: str, at: float, kind: str, actor: str,
               data: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO events (session, at, kind, actor, data) VALUES (?, ?, ?, ?, ?)",
            (session, at, kind, actor, json.dumps(data, sort_keys=True)),
        )

    def log(self, session: str, at: float, kind: str, actor: str,
            data: Mapping[str, Any]) -> None:
        """Add an event to a session's timeline without changing its state."""
        with self._db.transaction():
            self._event(session, at, kind, actor, data)

    def root_causes(self, limit: int = 30) -> list[str]:
        """Root-cause tags used so far, most frequent first."""
        rows = self._db.execute(
            "SELECT root_cause, count(*) AS n FROM sessions WHERE root_cause != ''"
            " GROUP BY root_cause ORDER BY n DESC, root_cause LIMIT ?", (limit,))
        return [r["root_cause"] for r in rows]

    def set_csat(self, session: str, score: int, at: float) -> None:
        """Store a user's satisfaction answer (1-5) for an ended session."""
        with self._db.transaction() as db:
            cur = db.execute("UPDATE sessions SET csat = ? WHERE id = ?", (score, session))
            if cur.rowcount == 0:
                raise NotFound(f"no session {session}")
            self._event(session, at, "survey", "user", {"csat": score})

    def get(self, session: str) -> Session:
        """Return one session.

        Raises:
            NotFound: if there is no such session.
        """
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no session {session}")
        return _from_row(row)

    def csat(self, session: str) -> int | None:
        """Return the survey answer of a session, if given."""
        row = self._db.execute("SELECT csat FROM sessions WHERE id = ?", (session,)).fetchone()
        return None if row is None else row["csat"]

    def set_resume(self, session: str, resume_hash: str) -> None:
        """Replace the resume token (by hash) of a session: its place moved to a new client."""
        with self._db.transaction() as db:
            db.execute("UPDATE sessions SET resume_hash = ? WHERE id = ?", (resume_hash, session))

    def by_resume(self, resume_hash: str) -> Session | None:
        """Return the session a resume token (by hash) belongs to."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE resume_hash = ?", (resume_hash,)
        ).fetchone()
        return None if row is None else _from_row(row)

    def unfinished(self, node: str | None = None) -> list[Session]:
        """Sessions not ended or abandoned, in join order (for broker restart).

        With ``node``, only those that node holds (and those of a store from
        before nodes, which held no node).
        """
        where: str = ""
        args: tuple[str, ...] = ()
        if node is not None:
            where, args = " AND node IN (?, '')", (node,)
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE state NOT IN (?, ?){where}"
            " ORDER BY queued_at",
            (State.ENDED, State.ABANDONED, *args),
        )
        return [_from_row(row) for row in rows]

    def holder(self, session: str) -> str:
        """The node that holds ``session`` ("" in a store from before nodes)."""
        row = self._db.execute("SELECT node FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None:
            raise NotFound(f"no session {session}")
        return str(row["node"])

    def claim(self, gone: str, at: float, session: str | None = None) -> list[Session]:
        """Take over the unfinished sessions of node ``gone`` (or just ``session``) for
        this repository's node; return those this node got.

        One conditional update: when several nodes claim at once, each session
        goes to exactly one of them.
        """
        where = "" if session is None else " AND id = ?"
        args: tuple[str, ...] = () if session is None else (session,)
        with self._db.transaction() as db:
            rows = db.execute(
                f"UPDATE sessions SET node = ? WHERE node = ? AND state NOT IN (?, ?){where}"
                " RETURNING id", (self.node, gone, State.ENDED, State.ABANDONED, *args),
            ).fetchall()
            ids = [r["id"] for r in rows]
            for sid in ids:
                self._event(sid, at, "moved", "broker", {"from": gone, "to": self.node})
        claimed = [self.get(sid) for sid in ids]
        return sorted(claimed, key=lambda s: s.queued_at)

    def between(self, since: float, until: float) -> list[Session]:
        """Sessions that joined the queue in ``[since, until)``, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE queued_at >= ? AND queued_at < ?"
            " ORDER BY queued_at",
            (since, until),
        )
        return [_from_row(row) for row in rows]

    def events(self, session: str) -> list[tuple[float, str, str, dict[str, Any]]]:
        """The timeline of one session: ``(at, kind, actor, data)``."""
        rows = self._db.execute(
            "SELECT at, kind, actor, data FROM events WHERE session = ? ORDER BY id", (session,)
        )
        return [(r["at"], r["kind"], r["actor"], json.loads(r["data"])) for r in rows]

    def restore(self, sessions: Iterable[Session]) -> None:
        """Write back sessions whose state the broker changed while restarting."""
        for session in sessions:
            self.save(session, "broker-restart", "broker", {"state": session.state})
