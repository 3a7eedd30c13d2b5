"""Shared test helpers: keys, a real broker on 127.0.0.1 port 0, connected clients."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import asyncssh

from assist.broker.server import Broker
from assist.client import AgentClient, Link, UserClient
from assist.config import BrokerConfig
from assist.core import pubkey
from assist.protocol import messages as m
from assist.store.engine import is_url, open_database
from assist.transport import ssh


@dataclass(frozen=True)
class KeyPair:
    """A private key file and its public key file."""

    private: Path
    public: Path

    @property
    def fingerprint(self) -> str:
        return pubkey.load(self.public).fingerprint


def make_key(directory: Path, name: str) -> KeyPair:
    """Write a fresh Ed25519 key pair into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@test")
    private = directory / name
    key.write_private_key(str(private))
    private.chmod(0o600)
    key.write_public_key(str(private.with_suffix(".pub")))
    return KeyPair(private, private.with_suffix(".pub"))


class Stores:
    """Where the test's stores are: SQLite files, or databases of a private PostgreSQL.

    The ``store_engine`` fixture picks the engine for each test; a test asks
    :func:`store_at` for the store of a file path and gets that file, or (on
    PostgreSQL) a database of its own for each distinct path.
    """

    engine: str = "sqlite"
    make: Callable[[], str] | None = None
    made: ClassVar[dict[str, str]] = {}


def store_at(path: Path) -> str:
    """The store location a test uses where it would use the SQLite file ``path``."""
    if Stores.engine == "sqlite" or Stores.make is None:
        return str(path)
    if str(path) not in Stores.made:
        Stores.made[str(path)] = Stores.make()
    return Stores.made[str(path)]


def raw_sql(location: str, *statements: str) -> list[Any]:
    """Run SQL on a store behind the program's back; the last statement's rows."""
    db = open_database(location)
    try:
        rows: list[Any] = []
        for statement in statements:
            cursor = db.execute(statement)
            rows = cursor.fetchall() if statement.lstrip().upper().startswith("SELECT") else []
        return rows
    finally:
        db.close()


def tamper(location: str, *statements: str) -> None:
    """Change the audit table as an intruder would: its guard triggers off first."""
    unguard = (("DROP TRIGGER IF EXISTS audit_no_update", "DROP TRIGGER IF EXISTS audit_no_delete")
               if not is_url(location) else ("ALTER TABLE audit DISABLE TRIGGER USER",))
    raw_sql(location, *unguard, *statements)


def broker_config(directory: Path, **changes: object) -> BrokerConfig:
    """A broker config on 127.0.0.1, port 0, with its files in ``directory``."""
    settings: dict[str, object] = {
        "host": "127.0.0.1", "port": 0, "db": store_at(directory / "broker.db"),
        "host_key_path": directory / "host_key", "name": "test-broker",
        "recordings": directory / "recordings",
        "resume_grace": 30.0, "offer_timeout": 5.0,
        # An agent's dropped connection sends its user back to the front quickly.
        "agent_grace": 0.2,
    }
    settings.update(changes)
    return BrokerConfig(**settings)  # type: ignore[arg-type]


def register(broker: Broker, role: str, name: str, key: KeyPair) -> None:
    """Add a user or agent with ``key`` to the running broker's directory."""
    assert broker.store is not None
    broker.store.directory.add(role, name, pubkey.load(key.public), time.time())  # type: ignore[arg-type]


async def link_to(broker: Broker, role: str, key: KeyPair) -> Link:
    """Open a started link to ``broker`` as ``role`` with the pinned host key."""
    conn = await ssh.connect("127.0.0.1", broker.port, role, broker.public_key, key.private)
    link = Link(conn.channel, on_close=conn.close)
    link.start()
    return link


async def user_client(broker: Broker, key: KeyPair) -> UserClient:
    """A user client that has said hello."""
    client = UserClient(await link_to(broker, "user", key))
    await client.hello(host="testhost", os_user="tester")
    return client


async def agent_client(broker: Broker, key: KeyPair) -> AgentClient:
    """An agent client that has said hello."""
    client = AgentClient(await link_to(broker, "agent", key))
    await client.hello()
    return client


async def started_session(broker: Broker, keys: dict[str, KeyPair], topic: str,
                          cols: int = 80, rows: int = 24) -> tuple[UserClient, AgentClient, str]:
    """alice asks for help about ``topic`` and carol takes her: a live session."""
    alice = await user_client(broker, keys["alice"])
    carol = await agent_client(broker, keys["carol"])
    queued = await alice.join(topic)
    offered = asyncio.ensure_future(alice.link.wait_for(
        lambda msg: isinstance(msg, m.Offered), 10))
    accepting = asyncio.ensure_future(carol.accept())
    await offered
    await alice.ready(cols, rows)
    await accepting
    return alice, carol, queued.session


async def until(predicate: Callable[[], object], timeout: float = 15.0,
                what: str = "condition", every: float = 0.02) -> None:
    """Wait until ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _controlling_tty() -> None:
    # `asciinema cat` opens /dev/tty: make the pty on stdin this child's terminal.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def asciinema_cat(path: Path, config_home: Path) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``asciinema cat`` on a recording, with a terminal of its own."""
    master, slave = os.openpty()
    try:
        return subprocess.run(
            ["asciinema", "cat", str(path)], stdin=slave, capture_output=True,
            preexec_fn=_controlling_tty,  # setsid and one ioctl: takes no locks
            env={**os.environ, "ASCIINEMA_CONFIG_HOME": str(config_home)},
            timeout=60, check=False)
    finally:
        os.close(slave)
        os.close(master)
