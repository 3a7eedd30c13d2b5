"""Moving a helpdesk from one store to another (SQLite to PostgreSQL, or back).

Every table is copied row for row, keys and sequence numbers included, in one
transaction on the target: the copy is all there or not at all. The audit
chain is copied record by record and verified on the target before the
transaction commits, so a copy whose chain would not verify is never kept.
TOTP secrets stay sealed: the target needs the same secret key file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assist.errors import StoreError
from assist.store.audit import AuditLog
from assist.store.db import check_version, connect
from assist.store.engine import Database, open_database

TABLES: tuple[tuple[str, str], ...] = (
    ("meta", "key"), ("users", "name"), ("agents", "name"), ("keys", "fingerprint"),
    ("sessions", "id"), ("events", "id"), ("audit", "seq"), ("invites", "code_hash"),
    ("recordings", "id"),
)
"""Every table of the store with the key it is read in order of."""

BATCH = 1000
"""Rows read and written at a time: memory stays flat however big the store is."""

Progress = Callable[[str, int, int], None]
"""Told ``(table, rows copied so far, rows in the table)`` as the copy goes."""


@dataclass(frozen=True)
class Copied:
    """What :func:`copy_store` moved."""

    rows: dict[str, int]
    audit_records: int
    audit_head: str


def _count(db: Database, table: str) -> int:
    return int(db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"])


def _quoted(column: str) -> str:
    return f'"{column}"'


def _copy_table(source: Database, target: Database, table: str, key: str,
                progress: Progress) -> int:
    total, done, last = _count(source, table), 0, None
    progress(table, 0, total)
    keep_ids = target.dialect == "postgresql" and table == "events"
    while True:
        args: list[Any] = [] if last is None else [last]
        where = "" if last is None else f"WHERE {_quoted(key)} > ?"
        rows = source.execute(f"SELECT * FROM {table} {where} ORDER BY {_quoted(key)} "
                              f"LIMIT {BATCH}", args).fetchall()
        if not rows:
            break
        columns = list(rows[0].keys())
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("?" * len(columns))
        # Event ids order a timeline: PostgreSQL makes its own unless told not to.
        override = " OVERRIDING SYSTEM VALUE" if keep_ids else ""
        target.executemany(f"INSERT INTO {table} ({names}){override} VALUES ({marks})",
                           [tuple(row[c] for c in columns) for row in rows])
        done += len(rows)
        last = rows[-1][key]
        progress(table, done, total)
    if keep_ids and done:
        target.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), "
                       "(SELECT max(id) FROM events))")
    return done


def _refuse_a_used_target(target: Database) -> None:
    for table, _key in TABLES:
        if table != "meta" and _count(target, table):
            raise StoreError(f"{target.where} already holds a helpdesk ({table} is not "
                             "empty): copy into a new, empty database")


def copy_store(source_location: str, target_location: str,
               progress: Progress | None = None) -> Copied:
    """Copy the whole store at ``source_location`` into the empty one at ``target_location``.

    The target is created (a SQLite file) or migrated (a PostgreSQL database)
    first. Stop the broker that uses the source before copying.

    Raises:
        StoreError: the source is not an assist store or is newer than this
            program, the target is not empty, its audit chain would not
            verify, or either engine refused.
    """
    tell = progress or (lambda table, done, total: None)
    source = open_database(source_location, readonly=True)
    try:
        check_version(source)
        source_version = source.version()
        target = connect(target_location)
        try:
            if target.version() != source_version:
                raise StoreError(
                    f"{source.where} is at schema version {source_version}: open it with "
                    "this assist once (for example `assist audit verify --db ...`) to "
                    "bring it up to date, then copy")
            rows: dict[str, int] = {}
            with target.transaction():
                _refuse_a_used_target(target)
                target.execute("DELETE FROM meta")  # only the audit head lives there
                for table, key in TABLES:
                    rows[table] = _copy_table(source, target, table, key, tell)
                checked = AuditLog(target).verify()
            return Copied(rows, checked.records, checked.head)
        finally:
            target.close()
    finally:
        source.close()


def describe(copied: Copied) -> dict[str, Any]:
    """The copy's outcome as JSON-ready data."""
    return {"rows": copied.rows, "audit": {"records": copied.audit_records,
                                           "head": copied.audit_head}}
