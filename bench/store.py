"""What one broker transition costs in each store, engine and driver.

A transition is what the broker writes when a session changes state: the
session row updated and its event inserted in one transaction, then one audit
record appended (under the audit lock). Measured on a private PostgreSQL
cluster on 127.0.0.1 (started here) and a SQLite file, in one run::

    python -m bench.store [--n 2000]

Rows: SQLite (the embedded default), PostgreSQL through assist's store
(psycopg 3, synchronous: the broker's calls), the same SQL through psycopg's
async connection, and through asyncpg (if installed), each with the median,
p99 and the ratio to psycopg's median. The async drivers are timed from the
``await`` to its result on an otherwise idle event loop, which is their
best case.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from assist.core.session import Event, Session
from assist.store import Store
from bench.stats import percentile
from tests.servers import postgres

UPDATE = ("UPDATE sessions SET state = $1, agent = $2, offered_at = $3 WHERE id = $4")
EVENT = "INSERT INTO events (session, at, kind, actor, data) VALUES ($1, $2, $3, $4, '{}')"


def through_store(location: str, n: int) -> list[float]:
    """Transitions through assist's own store (the code the broker runs)."""
    samples = []
    with Store(location) as store:
        for i in range(n):
            session = Session(f"s{i}", "alice", "vpn", float(i))
            store.sessions.insert(session, None)
            started = time.perf_counter()
            session.apply(Event.OFFER, i + 0.5, agent="carol")
            store.sessions.save(session, "offered", "agent:carol", {})
            store.audit.append(i + 0.5, "agent:carol", "offer", session.id, {})
            samples.append(time.perf_counter() - started)
    return samples


def _pyformat(sql: str) -> str:
    """asyncpg's ``$1`` placeholders as psycopg's ``%s``."""
    return re.sub(r"\$\d+", "%s", sql)


async def _timed(n: int, one: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await one(i)
        samples.append(time.perf_counter() - started)
    return samples


async def psycopg_async(url: str, n: int) -> list[float]:
    """The same two statements and an audit-shaped insert through psycopg's async API."""
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_audit (seq BIGINT PRIMARY KEY, "
                       "hash TEXT)")

    async def one(i: int) -> None:
        async with conn.transaction():
            await conn.execute(_pyformat(UPDATE), ("offered", "carol", i + 0.5, f"s{i}"))
            await conn.execute(_pyformat(EVENT), (f"s{i}", i + 0.5, "offered", "agent:carol"))
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(1)")
            await conn.execute("SELECT seq FROM bench_audit ORDER BY seq DESC LIMIT 1")
            await conn.execute("INSERT INTO bench_audit VALUES (%s, 'x')", (i,))

    try:
        return await _timed(n, one)
    finally:
        await conn.close()


async def asyncpg_driver(url: str, n: int) -> list[float] | None:
    """The same work through asyncpg, if it is installed."""
    try:
        import asyncpg  # type: ignore[import-not-found]
    except ImportError:
        return None
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_audit2 (seq BIGINT PRIMARY KEY, "
                       "hash TEXT)")

    async def one(i: int) -> None:
        async with conn.transaction():
            await conn.execute(UPDATE, "offered", "carol", i + 0.5, f"s{i}")
            await conn.execute(EVENT, f"s{i}", i + 0.5, "offered", "agent:carol")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(1)")
            await conn.fetch("SELECT seq FROM bench_audit2 ORDER BY seq DESC LIMIT 1")
            await conn.execute("INSERT INTO bench_audit2 VALUES ($1, 'x')", i)

    try:
        return await _timed(n, one)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="transitions per row")
    args = parser.parse_args()
    console = Console(width=110)
    rows: list[tuple[str, list[float] | None]] = []
    with tempfile.TemporaryDirectory() as folder, postgres() as cluster:
        console.print(f"PostgreSQL on 127.0.0.1:{cluster.port}; {args.n} transitions each")
        rows.append(("SQLite file (assist store)", through_store(
            str(Path(folder) / "bench.db"), args.n)))
        url = cluster.database("bench")
        rows.append(("PostgreSQL, psycopg 3 sync (assist store)", through_store(url, args.n)))
        rows.append(("PostgreSQL, psycopg 3 async", asyncio.run(psycopg_async(url, args.n))))
        rows.append(("PostgreSQL, asyncpg", asyncio.run(asyncpg_driver(url, args.n))))
    base = statistics.median(rows[1][1] or [1.0])
    table = Table(title="One broker transition (session row + event, then an audit record)")
    for column in ("store and driver", "median ms", "p99 ms", "vs psycopg sync"):
        table.add_column(column, justify="left" if column == "store and driver" else "right")
    for name, samples in rows:
        if samples is None:
            table.add_row(name, "-", "-", "not installed")
            continue
        median = statistics.median(samples)
        table.add_row(name, f"{median * 1000:.3f}", f"{percentile(samples, 99) * 1000:.3f}",
                      f"{median / base:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
