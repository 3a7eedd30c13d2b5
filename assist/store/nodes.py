"""The nodes' heartbeats in the store: the arbiter when the bus between them goes quiet.

A node that falls silent on the bus may be dead, or only cut off from the bus
(a network blip, a NATS restart) while it goes on serving its users. Each
node also writes a heartbeat into the store, timed by the database's own
clock (so the machines' clocks need not agree); the others take a node's
sessions over only when it is silent in both. A node cut off from the store
too cannot write anything there, so it cannot act on those sessions either.
"""

from __future__ import annotations

from assist.store.engine import Database

_NOW = {"sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
        "postgresql": "extract(epoch from clock_timestamp())"}
"""The database's time now, in seconds since the epoch."""
_NUMBER = {"sqlite": "REAL", "postgresql": "DOUBLE PRECISION"}


class Nodes:
    """Heartbeats of the helpdesk's nodes (kept in ``meta`` as ``node:NAME``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._now = _NOW[db.dialect]
        self._number = _NUMBER[db.dialect]

    def beat(self, node: str) -> None:
        """``node`` is alive now."""
        self._db.execute(
            f"INSERT INTO meta (key, value) VALUES (?, CAST({self._now} AS TEXT))"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (f"node:{node}",))

    def silent_for(self, node: str) -> float | None:
        """Seconds since ``node`` last beat in the store (``None``: it never did)."""
        row = self._db.execute(
            f"SELECT {self._now} - CAST(value AS {self._number}) AS age FROM meta"
            " WHERE key = ?", (f"node:{node}",)).fetchone()
        return None if row is None else float(row["age"])
