"""Several brokers for one helpdesk: one queue for all, a node that dies is taken over.

Two nodes share one store (PostgreSQL, as a real cluster does; SQLite runs
them too) and one bus: the in-process bus, and a real ``nats-server`` on
127.0.0.1 started for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from assist.broker.bus import Bus, LocalBus, matches
from assist.broker.nats_bus import NatsBus
from assist.broker.server import Broker
from assist.client.link import BrokerError
from assist.core import pubkey
from assist.errors import BusError
from assist.protocol import messages as m
from tests import servers
from tests.conftest import missing
from tests.helpers import KeyPair, agent_client, broker_config, user_client

pytestmark = pytest.mark.stores


@pytest.mark.sqlite_only
def test_subjects_match_as_in_nats() -> None:
    assert matches("assist.node.*", "assist.node.a")
    assert not matches("assist.node.*", "assist.node.a.b")
    assert matches("assist.>", "assist.node.a.b") and not matches("assist.>", "assist")
    assert not matches("assist.to.a", "assist.to.b")


@pytest.fixture(scope="module")
def nats_server() -> Iterator[servers.Nats]:
    if servers.NATS_SERVER is None:
        missing(servers.NATS_MISSING)
    with servers.nats() as server:
        yield server


@dataclass
class Helpdesk:
    """Two nodes, ``a`` and ``b``, of one helpdesk."""

    a: Broker
    b: Broker
    make_bus: Callable[[], Bus]


@pytest.fixture(params=["local", "nats"])
async def helpdesk(request: pytest.FixtureRequest, tmp_path: Path,
                   keys: dict[str, KeyPair]) -> AsyncIterator[Helpdesk]:
    shared = LocalBus()
    if request.param == "nats":
        server: servers.Nats = request.getfixturevalue("nats_server")

        def make_bus() -> Bus:
            return NatsBus(server.url)
    else:
        def make_bus() -> Bus:
            return shared
    nodes = []
    for name in ("a", "b"):
        bus = make_bus()
        await bus.start()
        config = broker_config(tmp_path / "desk", node=name, bus="nats://unused",
                               host_key_path=tmp_path / "desk" / "host_key")
        node = Broker(config, bus=bus)
        await node.start()
        nodes.append(node)
    store = nodes[0].store
    assert store is not None
    for role, name in (("user", "alice"), ("user", "bob"), ("agent", "carol")):
        store.directory.add(role, name, pubkey.load(keys[name].public), time.time())  # type: ignore[arg-type]
    yield Helpdesk(nodes[0], nodes[1], make_bus)
    for node in nodes:
        with contextlib.suppress(Exception):
            await node.stop()
        if isinstance(node.bus, NatsBus):
            await node.bus.close()


async def until(check: Callable[[], object], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_agents_on_any_node_see_one_queue(helpdesk: Helpdesk,
                                                keys: dict[str, KeyPair]) -> None:
    alice = await user_client(helpdesk.a, keys["alice"])
    bob = await user_client(helpdesk.b, keys["bob"])
    carol = await agent_client(helpdesk.b, keys["carol"])
    await alice.join("vpn")
    await asyncio.sleep(0.01)
    joined = await bob.join("printer")
    # bob came later, on another node: he is second in the one queue.
    assert joined.position == 2
    await until(lambda: len(helpdesk.b.hub.queue) == 2)  # type: ignore[union-attr]
    listing = await carol.queue()
    assert [(e.user, e.position) for e in listing.entries] == [("alice", 1), ("bob", 2)]
    # An accept of a place another node holds says where it is.
    with pytest.raises(BrokerError, match="waits at node a"):
        await carol.accept(alice.session)
    await alice.leave()
    await until(lambda: len(helpdesk.b.hub.queue) == 1)  # type: ignore[union-attr]
    listing = await carol.queue()
    assert [e.user for e in listing.entries] == ["bob"]
    position = await bob.link.wait_for(
        lambda msg: isinstance(msg, m.Position) and msg.position == 1, 5)
    assert position is not None
    for client in (alice, bob, carol):
        await client.link.close()


async def test_a_node_that_starts_late_gets_the_whole_queue(
        helpdesk: Helpdesk, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    alice = await user_client(helpdesk.a, keys["alice"])
    await alice.join("vpn")
    bus = helpdesk.make_bus()
    if isinstance(bus, NatsBus):
        await bus.start()
    late = Broker(broker_config(tmp_path / "desk", node="c", bus="nats://unused",
                                host_key_path=tmp_path / "desk" / "host_key"), bus=bus)
    await late.start()
    try:
        await until(lambda: [w.user for w in late.hub.queue] == ["alice"])  # type: ignore[union-attr]
        assert late.hub.queue.get(alice.session or "").node == "a"  # type: ignore[union-attr]
    finally:
        await late.stop()
        if isinstance(bus, NatsBus):
            await bus.close()
        await alice.link.close()


async def test_a_silent_node_is_noticed_and_its_users_keep_their_places(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(helpdesk.a, keys["alice"])
    queued = await alice.join("vpn")
    await until(lambda: len(helpdesk.b.hub.queue) == 1)  # type: ignore[union-attr]
    # Node a dies: no goodbye, no more heartbeats (its sockets are cut).
    a = helpdesk.a
    assert a.cluster is not None and a.hub is not None
    a.cluster.stop()
    a.hub.closed = True
    await a._server.close()  # type: ignore[union-attr]
    died = time.monotonic()
    b = helpdesk.b
    assert b.hub is not None
    await until(lambda: "a" not in b.cluster.seen  # type: ignore[union-attr]
                and queued.session in b.hub.waiting, 10)  # type: ignore[union-attr]
    noticed = time.monotonic() - died
    assert noticed < 5, f"noticed after {noticed:.1f} s"
    place = b.hub.queue.get(queued.session)
    assert place.node == "" and not place.online  # b holds it now, waiting for alice
    # alice comes back to b with her token: the same place, the same session.
    again = await user_client(b, keys["alice"])
    back = await again.join("", resume=queued.resume)
    assert back.session == queued.session and back.position == 1
    assert b.store is not None
    kinds = [e[1] for e in b.store.sessions.events(queued.session)]
    assert kinds.count("queued") == 1 and "moved" in kinds
    assert b.store.sessions.holder(queued.session) == "b"
    assert any(r.action == "node-lost" and r.data["sessions"] == 1
               for r in b.store.audit.records())
    b.store.audit.verify()
    await again.link.close()


async def test_a_resume_reaching_another_node_before_it_knows_waits(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(helpdesk.a, keys["alice"])
    queued = await alice.join("vpn")
    await alice.link.close()
    # Node a is alive and holds alice's place: b must not take it from under it.
    elsewhere = await user_client(helpdesk.b, keys["alice"])
    with pytest.raises(BrokerError, match="held by node a"):
        await elsewhere.join("", resume=queued.resume)
    await elsewhere.link.close()


@pytest.mark.sqlite_only
async def test_a_bus_that_is_not_there_is_a_clear_error() -> None:
    bus = NatsBus(f"nats://127.0.0.1:{servers.free_port()}")
    with pytest.raises(BusError, match="cannot reach the bus"):
        await bus.start()
