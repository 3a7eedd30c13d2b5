"""Opening the database and applying migrations."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from assist.errors import StoreError
from assist.files import create_private
from assist.store.audit import AuditLog
from assist.store.directory import Directory
from assist.store.invites import Invites
from assist.store.schema import MIGRATIONS
from assist.store.seal import Sealer
from assist.store.sessions import SessionRepo
from assist.store.tx import transaction

log = logging.getLogger(__name__)


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database at ``path``.

    Raises:
        StoreError: if the file cannot be opened or is not an assist store.
    """
    where = str(path)
    try:
        if where != ":memory:":
            # 0600 from the first byte: SQLite gives its -wal and -shm files the
            # mode of the database file, so they are private too.
            create_private(Path(where))
        db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        # WAL lets the admin CLI write while the broker reads; NORMAL sync keeps
        # commits off the fsync path without risking corruption.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the store {where}: {exc}") from None
    except OSError as exc:
        raise StoreError(f"cannot create the store {where}: {exc.strerror}") from None
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring ``db`` to the newest schema version; return that version.

    Raises:
        StoreError: if the database is newer than this program.
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the store has schema version {version}, newer than this assist "
            f"({len(MIGRATIONS)}); upgrade assist"
        )
    for number in range(version, len(MIGRATIONS)):
        log.info("migrating store to schema version %d", number + 1)
        with transaction(db):
            for statement in _statements(MIGRATIONS[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers contain ';' inside BEGIN/END)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


class Store:
    """The broker's store: one SQLite database with its repositories.

    Args:
        path: the database file (``:memory:`` for tests).
        key_path: the secret key file that seals TOTP secrets (created on first
            use); without it, reading or storing a sealed secret is an error.

    Attributes:
        directory: users, agents and their keys.
        sessions: sessions and their events.
        audit: the hash-chained audit log.
        invites: codes that enrol a new user's key.
    """

    def __init__(self, path: Path | str, key_path: Path | None = None) -> None:
        self.path = str(path)
        self.db = connect(path)
        self.sealer = Sealer.load_or_create(key_path) if key_path is not None else None
        self.directory = Directory(self.db, self.sealer)
        self.sessions = SessionRepo(self.db)
        self.audit = AuditLog(self.db)
        self.invites = Invites(self.db)
        if self.sealer is not None:
            self.directory.seal_plain()  # a store from before sealing: seal what it holds

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
