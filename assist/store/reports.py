"""Loading what the metrics need from the store, read-only.

``assist report`` may run while ``assist serve`` writes, and must never
create or migrate a store by mistake, so it opens the database read-only
(:func:`open_readonly`) instead of through :class:`~assist.store.Store`.

:func:`load` returns a superset of the sessions in the window: the
:mod:`assist.core.metrics` functions pick what each figure needs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assist.core.metrics import REPEAT_WINDOW, Contact, Presence, Segment
from assist.core.session import State
from assist.store.db import check_version
from assist.store.engine import Database, existing, open_database

_COLUMNS = ("id, \"user\", topic, state, queued_at, answered_at, ended_at, agent, resolved,"
            " root_cause, csat")
_CHUNK = 500
"""Session ids per ``IN (...)`` query, well under SQLite's variable limit."""
_ALL_OFFLINE = ("start", "stop")
"""Broker audit actions after which no agent is connected."""
_CLOSING = frozenset({"requeued", "ended", "abandoned"})
"""Session events that end an agent's connected stretch."""


@dataclass(frozen=True)
class ReportData:
    """Everything :func:`assist.core.metrics.build_report` needs.

    Attributes:
        sessions: contacts in the window and their neighbours (see :func:`load`).
        presence: presence records in log order.
    """

    sessions: tuple[Contact, ...]
    presence: tuple[Presence, ...]


def open_readonly(location: Path | str) -> Database:
    """Open an existing store (a SQLite file or a PostgreSQL URL) for reading only.

    Raises:
        StoreError: if there is no store at ``location``, it is not an assist
            store, or it is newer than this program.
    """
    db = open_database(existing(location), readonly=True)
    try:
        check_version(db)
    except BaseException:
        db.close()
        raise
    return db


def _query(db: Database, sql: str, args: Sequence[Any]) -> list[Any]:
    return db.execute(sql, args).fetchall()


def _rows(db: Database, where: str, args: Sequence[Any]) -> list[Any]:
    return _query(db, f"SELECT {_COLUMNS} FROM sessions WHERE {where}", args)


def window_rows(db: Database, since: float, until: float) -> list[Any]:
    """Sessions that joined in ``[since, until)``."""
    return _rows(db, "queued_at >= ? AND queued_at < ?", (since, until))


def running_into(db: Database, since: float) -> list[Any]:
    """Sessions that joined before ``since`` and were still open at ``since`` (occupancy)."""
    return _rows(db, "queued_at < ? AND (ended_at IS NULL OR ended_at > ?)", (since, since))


def waiting_rows(db: Database) -> list[Any]:
    """Sessions waiting for an agent now (the backlog)."""
    return _rows(db, "state IN (?, ?, ?)", (State.QUEUED, State.REQUEUED, State.OFFERED))


def neighbours(db: Database, users: Iterable[str], since: float,
               latest: float) -> list[Any]:
    """Other contacts of ``users`` that can be repeats of, or repeated by, the window's.

    An earlier contact matters if it ended (or, unfinished, joined) at most
    :data:`REPEAT_WINDOW` before ``since``; a later one if it joined at most
    that long after ``latest``, the last end (or join) in the window.
    """
    names = sorted(set(users))
    rows: list[Any] = []
    for i in range(0, len(names), _CHUNK):
        chunk = names[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows += _rows(
            db,
            f"\"user\" IN ({marks}) AND queued_at <= ?"
            " AND coalesce(ended_at, queued_at) >= ?",
            (*chunk, latest + REPEAT_WINDOW, since - REPEAT_WINDOW),
        )
    return rows


def timeline(
    events: Iterable[tuple[float, str, str, Mapping[str, Any]]],
) -> tuple[tuple[str, ...], tuple[Segment, ...]]:
    """Read who was offered a session and who was connected when, from its events.

    ``events`` are ``(at, kind, actor, data)`` in order, as the store keeps
    them: ``offered`` names the agent in its actor (``agent:NAME``);
    ``connected`` starts a segment with that agent; ``requeued``, ``ended``
    and ``abandoned`` close it. Returns ``(offered_to, segments)``.
    """
    offered: list[str] = []
    segments: list[Segment] = []
    agent: str | None = None
    start: float | None = None
    for at, kind, actor, _data in events:
        if kind == "offered" and actor.startswith("agent:"):
            agent = actor.removeprefix("agent:")
            offered.append(agent)
        elif kind == "connected" and agent is not None:
            start = at
        elif kind in _CLOSING:
            if start is not None and agent is not None:
                segments.append(Segment(agent, start, at))
            agent, start = None, None
    if start is not None and agent is not None:
        segments.append(Segment(agent, start, None))
    return tuple(offered), tuple(segments)


def _timelines(db: Database,
               ids: Sequence[str]) -> dict[str, list[tuple[float, str, str, dict[str, Any]]]]:
    events: dict[str, list[tuple[float, str, str, dict[str, Any]]]] = defaultdict(list)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for r in _query(db, f"SELECT session, at, kind, actor, data FROM events"
                            f" WHERE session IN ({marks}) ORDER BY id", chunk):
            events[r["session"]].append((r["at"], r["kind"], r["actor"], json.loads(r["data"])))
    return events


def contacts(db: Database, rows: Iterable[Any]) -> list[Contact]:
    """Turn session rows into :class:`Contact` records with their timelines."""
    unique = {r["id"]: r for r in rows}
    events = _timelines(db, list(unique))
    out = []
    for sid, r in unique.items():
        offered, segments = timeline(events.get(sid, []))
        out.append(Contact(
            id=sid, user=r["user"], state=State(r["state"]), queued_at=r["queued_at"],
            answered_at=r["answered_at"], ended_at=r["ended_at"], agent=r["agent"],
            resolved=None if r["resolved"] is None else bool(r["resolved"]),
            root_cause=r["root_cause"], csat=r["csat"], topic=r["topic"],
            offered_to=offered, segments=segments,
        ))
    return out


def presence(db: Database, since: float, until: float) -> list[Presence]:
    """Presence records that decide each agent's status in ``[since, until)``.

    That is every record in the window plus, per agent, the last one before
    it (the status the agent was in when the window opened). Broker start and
    stop records appear as "every agent offline".
    """
    rows = _query(
        db,
        "SELECT seq, at, actor, action, data FROM audit"
        " WHERE at < ? AND (action = 'presence' OR (actor = 'broker' AND action IN (?, ?)))"
        " AND (at >= ? OR seq IN (SELECT max(seq) FROM audit WHERE at < ?"
        "   AND (action = 'presence' OR (actor = 'broker' AND action IN (?, ?)))"
        "   GROUP BY actor))"
        " ORDER BY seq",
        (until, *_ALL_OFFLINE, since, since, *_ALL_OFFLINE),
    )
    out = []
    for r in rows:
        if r["action"] == "presence":
            status = json.loads(r["data"]).get("status")
            if r["actor"].startswith("agent:") and isinstance(status, str):
                out.append(Presence(r["at"], r["actor"].removeprefix("agent:"), status))
        else:
            out.append(Presence(r["at"], None, "offline"))
    return out


def load(db: Database, since: float, until: float) -> ReportData:
    """Load the sessions and presence records a report on ``[since, until)`` needs."""
    window = window_rows(db, since, until)
    latest = max((r["ended_at"] or r["queued_at"] for r in window), default=until)
    rows = [*window, *running_into(db, since), *waiting_rows(db),
            *neighbours(db, (r["user"] for r in window), since, latest)]
    return ReportData(tuple(contacts(db, rows)), tuple(presence(db, since, until)))
