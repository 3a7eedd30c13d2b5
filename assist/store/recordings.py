"""Where each session's recordings are: the node that wrote each file, and its path.

A session is recorded by the node that holds it; one that moved to another
node (its node died) goes on in a new file there. ``assist replay SESSION``
finds them here.
"""

from __future__ import annotations

from dataclasses import dataclass

from assist.store.engine import Database


@dataclass(frozen=True)
class RecordingFile:
    """One recording file of a session."""

    session: str
    node: str
    path: str
    started: float


class Recordings:
    """Repository of recording files."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def note(self, session: str, node: str, path: str, at: float) -> None:
        """Remember that ``node`` records ``session`` into ``path`` (once per file)."""
        with self._db.transaction() as db:
            db.execute("INSERT INTO recordings (id, session, node, path, started)"
                       " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                       (f"{node}:{path}", session, node, path, at))

    def of(self, session: str) -> list[RecordingFile]:
        """The files of ``session``, oldest first."""
        rows = self._db.execute("SELECT session, node, path, started FROM recordings"
                                " WHERE session = ? ORDER BY started", (session,)).fetchall()
        return [RecordingFile(r["session"], r["node"], r["path"], r["started"]) for r in rows]
