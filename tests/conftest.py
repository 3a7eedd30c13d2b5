"""Fixtures: keys, a running broker with one registered user and agent, the stores.

Every test that runs a broker (the ``broker`` fixture) or is marked
``stores`` runs twice, once on SQLite and once on a private PostgreSQL
cluster started for the test run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from assist.broker.server import Broker
from tests import servers
from tests.helpers import KeyPair, Stores, broker_config, make_key, register
from tests.xvfb import HEIGHT, PATTERN, WIDTH, XVFB, Xvfb, running

STORES = ("sqlite", "postgresql")
REQUIRE_SERVERS = os.environ.get("ASSIST_REQUIRE_SERVERS") == "1"
"""CI sets this: a missing PostgreSQL or NATS fails the run instead of skipping."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stores: run on SQLite and on PostgreSQL")
    config.addinivalue_line("markers",
                            "sqlite_only: runs once, on SQLite (about its files, or no store)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker
    uses = "broker" in metafunc.fixturenames or marked("stores")
    if uses and not marked("sqlite_only") and "store_engine" in metafunc.fixturenames:
        metafunc.parametrize("store_engine", STORES, indirect=True)


def missing(reason: str) -> None:
    """Skip for lack of a server binary, or fail where CI promised to have it."""
    if REQUIRE_SERVERS:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[servers.Postgres]:
    """One private PostgreSQL cluster for the whole run (127.0.0.1, a free port)."""
    if servers.INITDB is None or servers.PG_CTL is None:
        missing(servers.POSTGRES_MISSING)
    with servers.postgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def nats_server() -> Iterator[servers.Nats]:
    """One private nats-server for the whole run (127.0.0.1, a free port)."""
    if servers.NATS_SERVER is None:
        missing(servers.NATS_MISSING)
    with servers.nats() as server:
        yield server


@pytest.fixture(autouse=True)
def store_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine of this test's stores (see :class:`tests.helpers.Stores`)."""
    engine = getattr(request, "param", "sqlite")
    Stores.engine, Stores.made = engine, {}
    cluster: servers.Postgres | None = None
    if engine == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        Stores.make = cluster.database
    try:
        yield engine
    finally:
        if cluster is not None:
            for url in Stores.made.values():
                cluster.drop(url)
        Stores.engine, Stores.make, Stores.made = "sqlite", None, {}



@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep config, data and state of every test in its own temp dir."""
    monkeypatch.setenv("ASSIST_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("ASSIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSIST_STATE_DIR", str(tmp_path / "state"))
    for name in ("ASSIST_BROKER", "ASSIST_KEY", "ASSIST_CAMERA", "ASSIST_VOICE_FILE",
                 "ASSIST_GRAPHICS"):
        monkeypatch.delenv(name, raising=False)
    # Processes the tests start: media on loopback only, no sound device, and no call
    # unless a test asks for one (the call tests do).
    monkeypatch.setenv("ASSIST_MEDIA_HOSTS", "127.0.0.1")
    monkeypatch.setenv("ASSIST_AUDIO", "none")
    monkeypatch.setenv("ASSIST_VOICE", "0")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, KeyPair]:
    """Key pairs named alice, bob (users), carol, dave (agents) and mallory (unregistered)."""
    return {n: make_key(tmp_path / "keys", n)
            for n in ("alice", "bob", "carol", "dave", "mallory")}


@pytest.fixture
async def broker(tmp_path: Path, keys: dict[str, KeyPair]) -> AsyncIterator[Broker]:
    """A real broker on 127.0.0.1 port 0 with users alice, bob and agents carol, dave."""
    server = Broker(broker_config(tmp_path / "broker"))
    await server.start()
    register(server, "user", "alice", keys["alice"])
    register(server, "user", "bob", keys["bob"])
    register(server, "agent", "carol", keys["carol"])
    register(server, "agent", "dave", keys["dave"])
    yield server
    await server.stop()


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Xvfb]:
    """A private Xvfb showing :data:`tests.xvfb.PATTERN`; ``DISPLAY`` points at it."""
    if XVFB is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    with running(WIDTH, HEIGHT) as x:
        monkeypatch.setenv("DISPLAY", x.display)
        x.paint(PATTERN, background=0x303030)
        yield x
