"""A broker's claim on its store: a broker on its own serves a store alone.

A second broker started on a store that one already serves would restore the
same queue and end, as abandoned, the users the first one still serves. So
every broker claims its store for as long as it runs: a broker on its own
claims it alone, and the nodes of one helpdesk (``--bus``) claim it together,
so a node and a lone broker refuse each other as two lone brokers do.

On SQLite the claim is a lock on a file beside the store; on PostgreSQL it is
an advisory lock held by a connection kept open for the broker's lifetime.
Either is let go by the operating system or the server when the process
ends, even by ``kill -9``, so a crash never leaves a stale claim.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from assist.errors import ConfigError
from assist.files import hold_lock, unreadable
from assist.store.engine import PostgresDatabase, is_url, lock_number, shown, sqlite_path


class Claim:
    """A held claim on a store; :meth:`release` lets go of it (once)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Let go of the claim; a second call does nothing."""
        release, self._release = self._release, None
        if release is not None:
            release()


def claim_store(location: str, *, shared: bool) -> Claim:
    """Claim the store at ``location``: alone, or ``shared`` with other nodes.

    Raises:
        ConfigError: if another broker holds a claim this one cannot share.
        StoreError: if a PostgreSQL store cannot be reached.
    """
    if is_url(location):
        claim = _claim_postgres(location, shared)
    else:
        claim = _claim_sqlite(location, shared)
    if claim is None:
        raise ConfigError(_refusal(location, shared))
    return claim


def _claim_sqlite(location: str, shared: bool) -> Claim | None:
    import os

    lock = Path(f"{sqlite_path(location)}.serving")
    try:
        fd = hold_lock(lock, shared=shared)
    except OSError as exc:
        raise ConfigError(unreadable(lock, "the store's lock", exc)) from None
    return None if fd is None else Claim(lambda: os.close(fd))


def _claim_postgres(location: str, shared: bool) -> Claim | None:
    db = PostgresDatabase(location)
    take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    try:
        held = db.execute(f"SELECT {take}(?) AS held", (lock_number("serving"),)).fetchone()
    except BaseException:
        db.close()
        raise
    if not held["held"]:
        db.close()
        return None
    return Claim(db.close)  # the lock lasts as long as this connection


def _refusal(location: str, shared: bool) -> str:
    where = shown(location)
    if shared:
        return (f"a broker on its own (without --bus) already uses the store {where}: stop "
                "it, then start it again with --bus so it joins this helpdesk's nodes")
    return (f"another assist serve already uses the store {where}: stop it first, or give "
            "this broker its own --db (several brokers on one store need PostgreSQL and "
            "--bus: see 'A helpdesk on several machines' in the README)")
