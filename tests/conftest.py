"""Fixtures: keys, a running broker with one registered user and agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from assist.broker.server import Broker
from tests.helpers import KeyPair, broker_config, make_key, register
from tests.xvfb import HEIGHT, PATTERN, WIDTH, XVFB, Xvfb, running


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep config, data and state of every test in its own temp dir."""
    monkeypatch.setenv("ASSIST_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("ASSIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSIST_STATE_DIR", str(tmp_path / "state"))
    for name in ("ASSIST_BROKER", "ASSIST_KEY"):
        monkeypatch.delenv(name, raising=False)


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
