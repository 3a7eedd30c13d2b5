"""The two database engines behind the store: SQLite (embedded) and PostgreSQL.

The repositories speak one SQL, written with ``?`` placeholders and the
subset both engines share; a :class:`Database` runs it on its engine, turns
driver errors into :class:`StoreError` and keeps the schema version. The store
location picks the engine: a ``postgresql://`` URL or a file path.

The broker's store calls are synchronous on purpose: one transition is
applied, saved and audited without an ``await`` in between, so no other event
of the broker can slip between a state change and its record (see
``bench/store.py`` for what a statement costs on each engine and driver).
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from assist.core.urls import masked
from assist.errors import StoreError
from assist.files import create_private

if TYPE_CHECKING:
    import psycopg

Dialect = Literal["sqlite", "postgresql"]
_URL = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return bool(_URL.match(str(location)))


def shown(location: str | Path) -> str:
    """``location`` fit to print: a URL's password is replaced by ``***``."""
    return masked(str(location))


class Cursor(Protocol):
    """What a statement returns: rows that are read by column name."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""

    def fetchone(self) -> Any:
        """The next row, or ``None``."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""

    def __iter__(self) -> Iterator[Any]:
        """The remaining rows one by one."""


class Database(ABC):
    """One connection to the store's database, on either engine.

    Attributes:
        dialect: ``sqlite`` or ``postgresql``.
        where: the location, fit to print (no password).
    """

    dialect: Dialect
    where: str

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` placeholders).

        Raises:
            StoreError: whatever the engine refused, in its words.
        """

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once for each row of parameters."""

    @abstractmethod
    def script(self, sql: str) -> None:
        """Run several statements (a migration), inside the current transaction."""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Run the block as one write transaction; roll back if it raises."""

    def lock(self, name: str) -> None:
        """Make writers that take the same ``name`` wait for this transaction.

        SQLite already has one writer at a time; PostgreSQL takes an advisory
        lock held until the transaction ends, so several brokers append to one
        audit chain in turn.
        """
        del name

    @abstractmethod
    def version(self) -> int:
        """The schema version the database is at (0 for an empty one)."""

    @abstractmethod
    def set_version(self, version: int) -> None:
        """Record the schema version (inside the migration's transaction)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""


WAL_TRIES = 100
"""Tries (0.05 s apart) to switch a new SQLite file to WAL while others open it too."""


class SqliteDatabase(Database):
    """A SQLite file (or ``:memory:``), in WAL mode, private from the first byte."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.where = str(path)
        self._depth = 0
        try:
            if readonly:
                file = Path(self.where).expanduser()
                self._db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True,
                                           isolation_level=None, check_same_thread=False)
            else:
                if self.where != ":memory:":
                    # SQLite gives its -wal and -shm files the database file's mode,
                    # so creating it 0600 keeps all three private.
                    create_private(Path(self.where))
                self._db = sqlite3.connect(self.where, isolation_level=None,
                                           check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=5000")
            if not readonly:
                # WAL lets the admin CLI write while the broker reads; NORMAL sync
                # keeps commits off the fsync path without risking corruption.
                self._wal()
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA user_version")  # reads the header: is it a database?
        except sqlite3.DatabaseError as exc:
            verb = "read" if readonly else "open"
            raise StoreError(f"cannot {verb} the store {self.where}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot create the store {self.where}: {exc.strerror}") from None

    def _wal(self) -> None:
        """Put the file in WAL mode (it stays so), once, whoever else opens it now.

        Switching needs the file to itself, and SQLite answers "locked" at once,
        without waiting, when several processes open a new store together (nodes
        started side by side); so it is tried again for a few seconds.
        """
        for attempt in itertools.count():
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt >= WAL_TRIES:
                    raise
                time.sleep(0.05)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the store {self.where} refused: {exc}") from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the store {self.where} refused: {exc}") from None

    def script(self, sql: str) -> None:
        current = ""
        # Split by statement: triggers hold ';' inside BEGIN ... END.
        for line in sql.splitlines(keepends=True):
            current += line
            if sqlite3.complete_statement(current):
                self.execute(current.strip())
                current = ""
        if current.strip():
            self.execute(current.strip())

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        # Inside another: a savepoint, so that what fails there is undone there even if
        # the outer one goes on (as PostgreSQL's nested transactions do).
        inner = f"inner{self._depth}" if self._depth else ""
        self.execute(f"SAVEPOINT {inner}" if inner else "BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            self.execute(f"ROLLBACK TO {inner}" if inner else "ROLLBACK")
            if inner:
                self.execute(f"RELEASE {inner}")
            raise
        self._depth -= 1
        self.execute(f"RELEASE {inner}" if inner else "COMMIT")

    def version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def close(self) -> None:
        self._db.close()


@functools.lru_cache(maxsize=512)
def _to_format(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


_LOCKS = {"audit": 0x617564, "migrate": 0x6D6967, "serving": 0x736572}
"""Advisory lock numbers (a PostgreSQL lock is named by a number)."""


def lock_number(name: str) -> int:
    """The number of the PostgreSQL advisory lock called ``name``."""
    return _LOCKS[name]


class PostgresDatabase(Database):
    """A PostgreSQL database by URL, through psycopg 3."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        import psycopg

        self.where = shown(url)
        self._url = url
        self._readonly = readonly
        self._psycopg = psycopg
        self._depth = 0
        try:
            self._db = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the store {self.where}: "
                             f"{_first_line(exc)}") from None

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        from psycopg.rows import dict_row

        db = self._psycopg.connect(self._url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=10, application_name="assist")
        if self._readonly:
            db.execute("SET default_transaction_read_only = on")
        return db

    def _ready(self) -> None:
        """Connect again if the connection was lost (a server restart, a failover).

        Only between transactions: what failed with the old connection failed
        (the caller was told); what comes next runs on the new one.
        """
        if self._depth or not (self._db.closed or self._db.broken):
            return
        try:
            self._db = self._connect()
        except self._psycopg.Error as exc:
            raise StoreError(f"the store {self.where} is out of reach (connecting again): "
                             f"{_first_line(exc)}") from None

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        """What PostgreSQL refuses, as a :class:`StoreError` in its words."""
        self._ready()
        try:
            yield
        except self._psycopg.Error as exc:
            raise StoreError(f"the store {self.where} refused: {_first_line(exc)}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with self._refusals():
            return self._db.execute(_to_format(sql), _keepable(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._refusals(), self._db.cursor() as cursor:
            cursor.executemany(_to_format(sql), [_keepable(row) for row in rows])

    def script(self, sql: str) -> None:
        with self._refusals():
            self._db.execute(sql.encode())  # no parameters: several statements in one go

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self._refusals(), self._db.transaction():
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1

    def lock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (lock_number(name),))

    def version(self) -> int:
        if self.execute("SELECT to_regclass('assist_schema') AS t").fetchone()["t"] is None:
            return 0
        row = self.execute("SELECT max(version) AS v FROM assist_schema").fetchone()
        return int(row["v"] or 0)

    def set_version(self, version: int) -> None:
        self.execute("CREATE TABLE IF NOT EXISTS assist_schema (version INTEGER NOT NULL)")
        self.execute("DELETE FROM assist_schema")
        self.execute("INSERT INTO assist_schema (version) VALUES (?)", (version,))

    def close(self) -> None:
        self._db.close()


def _keepable(params: Sequence[Any]) -> Sequence[Any]:
    """``params`` with any NUL in text as U+FFFD: PostgreSQL text cannot hold NUL,
    and a name or topic must not fail to save because a peer put one in it."""
    if not any(isinstance(p, str) and "\x00" in p for p in params):
        return params
    return [p.replace("\x00", "\ufffd") if isinstance(p, str) else p for p in params]


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def existing(location: str | Path) -> str | Path:
    """``location`` if a store may be there: a URL, or a SQLite file that exists.

    Raises:
        StoreError: if the SQLite file is missing (a command that only reads or
            changes a store must not leave a new empty one behind a typo).
    """
    if is_url(location):
        return location
    where = Path(sqlite_path(location))
    if not where.is_file():
        raise StoreError(f"no store at {where}: start `assist serve` first, or pass "
                         "--db PATH")
    return where


def open_database(location: str | Path, *, readonly: bool = False) -> Database:
    """Open the database at ``location`` (a file path or a ``postgresql://`` URL).

    Raises:
        StoreError: if it cannot be opened.
    """
    if is_url(location):
        return PostgresDatabase(str(location), readonly=readonly)
    return SqliteDatabase(sqlite_path(location), readonly=readonly)


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def sqlite_path(location: str | Path) -> str:
    """The file of a SQLite location, written as a path or as ``sqlite:PATH``.

    Raises:
        StoreError: for a URL of a kind of database assist does not speak (it
            would otherwise become a folder named after its scheme).
    """
    text = str(location)
    if _SCHEME.match(text) and not text.lower().startswith(("sqlite://", "postgres")):
        raise StoreError(f"{shown(text)} is not a store assist can use: give a SQLite "
                         "file (PATH or sqlite:PATH) or a postgresql://USER@HOST/DB URL")
    text = text.removeprefix("sqlite://") if text.startswith("sqlite://") else (
        text.removeprefix("sqlite:"))
    return text if text == ":memory:" else str(Path(text).expanduser())
