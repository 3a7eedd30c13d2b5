"""Opening the store and applying migrations."""

from __future__ import annotations

import logging
from pathlib import Path

from assist.errors import StoreError
from assist.store.audit import AuditLog
from assist.store.directory import Directory, stored_secrets
from assist.store.engine import Database, open_database
from assist.store.invites import Invites
from assist.store.nodes import Nodes
from assist.store.recordings import Recordings
from assist.store.schema import MIGRATIONS, VERSION
from assist.store.seal import Sealer, is_sealed
from assist.store.sessions import SessionRepo

log = logging.getLogger(__name__)


def connect(location: Path | str) -> Database:
    """Open (creating if needed) and migrate the store at ``location``.

    ``location`` is a SQLite file (``:memory:`` for tests) or a
    ``postgresql://`` URL.

    Raises:
        StoreError: if it cannot be opened or is not an assist store.
    """
    db = open_database(location)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: Database) -> int:
    """Bring ``db`` to the newest schema version; return that version.

    Several brokers may start at once on one PostgreSQL database: each
    migration runs in a transaction under a lock, and re-reads the version
    inside it, so it is applied once.

    Raises:
        StoreError: if the database is newer than this program.
    """
    while True:
        with db.transaction():
            db.lock("migrate")
            version = db.version()
            if version > VERSION:
                raise StoreError(
                    f"the store has schema version {version}, newer than this assist "
                    f"({VERSION}); upgrade assist")
            if version == VERSION:
                return VERSION
            log.info("migrating store to schema version %d", version + 1)
            db.script(MIGRATIONS[db.dialect][version])
            db.set_version(version + 1)


def check_version(db: Database) -> None:
    """Refuse a database that is not an assist store, or is newer than this program.

    Raises:
        StoreError: saying which.
    """
    version = db.version()
    if version == 0:
        raise StoreError(f"{db.where} is not an assist store (no schema)")
    if version > VERSION:
        raise StoreError(f"the store {db.where} has schema version {version}, newer than "
                         f"this assist ({VERSION}); upgrade assist")


class Store:
    """The broker's store: one database (SQLite or PostgreSQL) with its repositories.

    Args:
        location: a SQLite file (``:memory:`` for tests) or a
            ``postgresql://`` URL.
        key_path: the secret key file that seals TOTP secrets (created on first
            use); without it, reading or storing a sealed secret is an error.
        node: the broker node that holds the sessions it starts (several
            brokers on one PostgreSQL database).

    Attributes:
        directory: users, agents and their keys.
        sessions: sessions and their events.
        audit: the hash-chained audit log.
        invites: codes that enrol a new user's key.
        recordings: where each session's recordings are.
    """

    def __init__(self, location: Path | str, key_path: Path | None = None,
                 node: str = "") -> None:
        self.db = connect(location)
        self.path = str(location)
        try:
            if key_path is not None and not key_path.exists() and self._holds_sealed():
                # A fresh key could open none of them, and what it sealed next no
                # broker could open: the key file is elsewhere (another account, -E).
                raise StoreError(
                    f"the store {location} holds TOTP secrets sealed with a secret key "
                    f"file that is not at {key_path}: point secret_key_path (broker.toml, "
                    "or ASSIST_BROKER_SECRET_KEY_PATH) at the broker's own")
            self.sealer = Sealer.load_or_create(key_path) if key_path is not None else None
        except BaseException:
            self.db.close()
            raise
        self.directory = Directory(self.db, self.sealer)
        self.sessions = SessionRepo(self.db, node)
        self.audit = AuditLog(self.db)
        self.nodes = Nodes(self.db)
        self.invites = Invites(self.db)
        self.recordings = Recordings(self.db)
        if self.sealer is not None:
            self.directory.seal_plain()  # a store from before sealing: seal what it holds

    def _holds_sealed(self) -> bool:
        return any(is_sealed(value) for _, value in stored_secrets(self.db))

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
