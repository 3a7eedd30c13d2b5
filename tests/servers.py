"""Private PostgreSQL and NATS servers on 127.0.0.1, for tests and benchmarks.

Each server gets its own temporary folder and a free port and listens on the
loopback only. PostgreSQL refuses to run as root, so as root the cluster is
made and run by the ``postgres`` account; as anyone else, by that user.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_PG_DIRS = ("/usr/lib/postgresql",)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for root in _PG_DIRS:
        versions = sorted(Path(root).glob(f"*/bin/{name}"), reverse=True)
        if versions:
            return str(versions[0])
    return None


INITDB = _pg_bin("initdb")
PG_CTL = _pg_bin("pg_ctl")
NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)

POSTGRES_MISSING = "PostgreSQL is not installed (Debian package postgresql)"
NATS_MISSING = "nats-server is not installed (Debian package nats-server)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class Postgres:
    """A running private cluster; :meth:`database` makes an empty database in it."""

    port: int
    folder: Path
    user: str = "assist"
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, name: str = "postgres") -> str:
        """The URL of database ``name`` for the cluster's superuser."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def database(self, prefix: str = "t") -> str:
        """Create a new empty database and return its URL."""
        import psycopg

        name = f"{prefix}{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, closing whatever still uses it."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _account() -> tuple[int | None, int | None]:
    """The ids to run PostgreSQL as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None, None
    account = pwd.getpwnam("postgres")
    return account.pw_uid, account.pw_gid


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """Run a private PostgreSQL cluster for the duration of the block."""
    if INITDB is None or PG_CTL is None:
        raise RuntimeError(POSTGRES_MISSING)
    uid, gid = _account()
    folder = Path(tempfile.mkdtemp(prefix="assist-pg-"))
    data = folder / "data"
    if uid is not None:
        os.chown(folder, uid, gid or -1)

    def run(args: list[str]) -> None:
        result = subprocess.run(args, capture_output=True, text=True, user=uid, group=gid,
                                cwd=folder, check=False)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()[-800:]}")

    port = free_port()
    run([INITDB, "-D", str(data), "-U", "assist", "-A", "trust", "-E", "UTF8",
         "--no-sync", "--no-instructions"])
    # Loopback only, a socket folder of its own, no fsync: a throwaway cluster.
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
               f"-c unix_socket_directories={folder} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    run([PG_CTL, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w",
         "-t", "30", "start"])
    try:
        _wait_port(port, "PostgreSQL")
        yield Postgres(port, folder)
    finally:
        with contextlib.suppress(RuntimeError):
            run([PG_CTL, "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Nats:
    """A running private ``nats-server``."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The server's URL."""
        return f"nats://127.0.0.1:{self.port}"


@contextlib.contextmanager
def nats() -> Iterator[Nats]:
    """Run a private ``nats-server`` on 127.0.0.1 for the duration of the block."""
    if NATS_SERVER is None:
        raise RuntimeError(NATS_MISSING)
    port = free_port()
    process = subprocess.Popen(
        [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, "nats-server")
        yield Nats(port, process)
    finally:
        process.kill()
        process.wait()
