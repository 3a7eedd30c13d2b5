"""Several brokers for one helpdesk: one queue for all, a node that dies is taken over.

Two nodes share one store (PostgreSQL, as a real cluster does; SQLite runs
them too) and one bus: the in-process bus, and a real ``nats-server`` on
127.0.0.1 started for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from assist.broker import nats_bus
from assist.broker.bus import Bus, LocalBus, Subscription, matches
from assist.broker.cluster import LOST
from assist.broker.connection import Connection
from assist.broker.forwarding import MAX_ASKED, Forwarding
from assist.broker.nats_bus import NatsBus
from assist.broker.remote import INBOUND_LIMIT, BusStream, Links, subject
from assist.broker.server import Broker
from assist.client import AgentClient
from assist.client.bot import Bot, Outcome, load_flows
from assist.client.link import BrokerError
from assist.client.runbook import RunbookRunner, parse_runbook
from assist.core import metrics, pubkey
from assist.errors import BusError
from assist.protocol import encode
from assist.protocol import messages as m
from assist.store import reports
from assist.transport.channel import MessageChannel
from assist.transport.peer import Peer
from tests import servers
from tests.helpers import (
    KeyPair,
    agent_client,
    broker_config,
    link_to,
    make_key,
    until,
    user_client,
)
from tests.test_bot import FLOWS
from tests.test_runbook import BOOK, answering
from tests.user_side import live_session, waiting_user

pytestmark = pytest.mark.stores


@pytest.mark.sqlite_only
def test_subjects_match_as_in_nats() -> None:
    assert matches("assist.node.*", "assist.node.a")
    assert not matches("assist.node.*", "assist.node.a.b")
    assert matches("assist.>", "assist.node.a.b") and not matches("assist.>", "assist")
    assert not matches("assist.to.a", "assist.to.b")


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
    for role, name in (("user", "alice"), ("user", "bob"), ("agent", "carol"),
                       ("agent", "dave")):
        store.directory.add(role, name, pubkey.load(keys[name].public), time.time())  # type: ignore[arg-type]
    yield Helpdesk(nodes[0], nodes[1], make_bus)
    for node in nodes:
        with contextlib.suppress(Exception):
            await node.stop()
        if isinstance(node.bus, NatsBus):
            await node.bus.close()


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
    await until(lambda: len(helpdesk.b.hub.queue) == 2, 8.0)  # type: ignore[union-attr]
    listing = await carol.queue()
    assert [(e.user, e.position) for e in listing.entries] == [("alice", 1), ("bob", 2)]
    await alice.leave()
    await until(lambda: len(helpdesk.b.hub.queue) == 1, 8.0)  # type: ignore[union-attr]
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
        await until(lambda: [w.user for w in late.hub.queue] == ["alice"], 8.0)  # type: ignore[union-attr]
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
    await until(lambda: len(helpdesk.b.hub.queue) == 1, 8.0)  # type: ignore[union-attr]
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


class CutBus(Bus):
    """A node's view of a shared in-process bus that the test can cut and mend."""

    def __init__(self, shared: LocalBus) -> None:
        self.shared = shared
        self.cut = False

    async def start(self) -> None:
        await self.shared.start()

    def publish(self, subject: str, payload: bytes) -> None:
        if not self.cut:
            self.shared.publish(subject, payload)

    async def subscribe(self, subject: str, handler: Callable[[str, bytes], None]
                        ) -> Subscription:
        def heard(subject_: str, payload: bytes) -> None:
            if not self.cut:
                handler(subject_, payload)

        return await self.shared.subscribe(subject, heard)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("helpdesk", ["local"], indirect=True)
async def test_a_node_cut_off_from_the_bus_a_while_keeps_its_sessions(
        helpdesk: Helpdesk, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    # A third node, c, whose bus the test cuts (the store it shares with a and b).
    assert isinstance(helpdesk.a.bus, LocalBus)
    bus = CutBus(helpdesk.a.bus)
    config = broker_config(tmp_path / "desk", node="c", bus="nats://unused",
                           host_key_path=tmp_path / "desk" / "host_key")
    c = Broker(config, bus=bus)
    await c.start()
    try:
        assert c.store is not None
        alice = await user_client(helpdesk.a, keys["alice"])
        on_a = await alice.join("vpn")
        bob = await user_client(c, keys["bob"])
        on_c = await bob.join("printer")
        a, b = helpdesk.a.hub, helpdesk.b.hub
        assert a is not None and b is not None and c.hub is not None
        await until(lambda: len(a.queue) == 2 and len(c.hub.queue) == 2, 8)  # type: ignore[union-attr]
        bus.cut = True  # c hears nothing and says nothing on the bus for a while
        await asyncio.sleep(LOST + 1.5)
        assert helpdesk.a.cluster is not None and "c" in helpdesk.a.cluster.cut_off
        bus.cut = False
        await asyncio.sleep(1.5)
        # Nobody took anybody's sessions: each is where it was, once.
        assert c.store.sessions.holder(on_c.session) == "c"
        assert c.store.sessions.holder(on_a.session) == "a"
        assert on_c.session in c.hub.waiting and on_c.session not in a.waiting
        assert on_a.session in a.waiting and on_a.session not in c.hub.waiting
        for session in (on_a.session, on_c.session):
            assert "moved" not in [e[1] for e in c.store.sessions.events(session)]
        assert helpdesk.a.cluster is not None and "c" not in helpdesk.a.cluster.cut_off
        assert "c" in helpdesk.a.cluster.seen and "a" in c.cluster.seen  # type: ignore[union-attr]
        await alice.link.close()
        await bob.link.close()
    finally:
        await c.stop()


@pytest.mark.parametrize("helpdesk", ["local"], indirect=True)
async def test_a_node_taken_for_dead_writes_nothing_to_what_moved_and_lets_it_go(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a, b = helpdesk.a, helpdesk.b
    assert a.hub is not None and b.hub is not None and b.store is not None
    alice = await user_client(a, keys["alice"])
    queued = await alice.join("vpn")
    # Node b took a for dead (a was cut off from the bus and the store) and took
    # alice's session over; a does not know yet.
    assert b.cluster is not None
    b.cluster._gone("a")
    assert b.store.sessions.holder(queued.session) == "b" and queued.session in b.hub.waiting
    carol = await agent_client(a, keys["carol"])
    with pytest.raises(BrokerError) as info:
        await carol.accept(queued.session)
    assert info.value.code == "moved"
    # a wrote nothing over b's session and let it go: alice is told to connect again.
    assert b.store.sessions.holder(queued.session) == "b"
    assert b.store.sessions.get(queued.session).state.value == "queued"
    assert "offered" not in [e[1] for e in b.store.sessions.events(queued.session)]
    assert queued.session not in a.hub.waiting and a.hub.queue.find(queued.session) is None
    assert a.hub.roster.get("carol").session is None
    await until(alice.link.closed.is_set, 5, what="alice's connection closed")
    await carol.link.close()


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
async def test_nats_payloads_go_straight_out_when_nothing_waits_and_stay_in_order(
        nats_server: servers.Nats, monkeypatch: pytest.MonkeyPatch) -> None:
    sender, receiver = NatsBus(nats_server.url), NatsBus(nats_server.url)
    await sender.start()
    await receiver.start()
    got: list[bytes] = []
    try:
        await receiver.subscribe("order.test", lambda subject, data: got.append(data))
        await receiver.flush()
        sent = []
        for n in range(3000):
            if n in (1000, 2000):
                # The middle third as if the socket were full: queued, then straight
                # out again once the queue and nats-py's own buffer have drained.
                monkeypatch.setattr(nats_bus, "DIRECT_BELOW", 0 if n == 1000 else 64 * 1024)
            sent.append(f"{n:05}".encode() + b"x" * 200)
            sender.publish("order.test", sent[-1])
            if n % 250 == 0:
                await asyncio.sleep(0)  # the queue and nats-py's flusher get turns
        await sender.flush()
        await until(lambda: len(got) == len(sent), 10.0)
        assert got == sent, "straight to the socket or queued, the order holds"
        assert 1000 <= sender.direct < 2000
        quiet = sender.direct
        sender.publish("order.test", b"one key")
        assert sender.direct == quiet + 1, "with nothing waiting, no task switch"
        await until(lambda: got[-1] == b"one key", 5.0)
    finally:
        await sender.close()
        await receiver.close()


@pytest.mark.sqlite_only
async def test_a_bus_that_is_not_there_is_a_clear_error() -> None:
    bus = NatsBus(f"nats://127.0.0.1:{servers.free_port()}")
    with pytest.raises(BusError, match="cannot reach the bus"):
        await bus.start()


async def test_an_agent_on_another_node_sees_verifies_is_granted_and_types(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a, b = helpdesk.a, helpdesk.b
    assert a.hub is not None and b.hub is not None
    async with live_session(a, keys, agent_at=b) as live:
        # One owner: the session lives at alice's node; carol's node forwards.
        assert live.session in a.hub.live and live.session not in b.hub.live
        assert b.hub.forwarding is not None and live.session in b.hub.forwarding.sessions
        live.pty.write(b"echo shown-$((20+3))\r")
        await until(lambda: any("shown-23" in line for line in live.viewer.emulator.text()), 8.0)
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await live.carol.send_keys(live.session, grant, b"echo typed-$((6*7))\r")
        await live.wait_pty(b"typed-42")
        await until(lambda: any("typed-42" in line for line in live.viewer.emulator.text()), 8.0)
        # A revoke on alice's machine stops carol's keys at once, across the nodes too.
        assert live.guard.revoke_all() == 1
        await live.carol.send_keys(live.session, grant, b"echo after-$((2+3))\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused)
        assert b"after-5" not in live.pty_out
        await live.carol.end(live.session, "printer queue", resolved=True)
        await until(lambda: live.session not in b.hub.forwarding.sessions, 8.0)  # type: ignore[union-attr]
        # carol is free again on her node.
        assert b.hub.roster.get("carol").session is None
    # The store has one contact, one chain.
    assert a.store is not None
    stored = a.store.sessions.get(live.session)
    assert stored.state.value == "ended" and stored.agent == "carol"
    kinds = [e[1] for e in a.store.sessions.events(live.session)]
    assert kinds.count("connected") == 1 and kinds.count("ended") == 1
    assert a.store.audit.verify().records > 5
    presence = [r.data["status"] for r in a.store.audit.records()
                if r.action == "presence" and r.actor == "agent:carol"]
    assert presence == ["away", "busy", "available", "offline"]  # once, by carol's node


async def die(node: Broker) -> None:
    """``node`` stops as a killed process does: no goodbye on the bus, sockets cut."""
    assert node.hub is not None and node.cluster is not None
    node.hub.closed = True
    if isinstance(node.bus, NatsBus):
        await node.bus.close()  # its connection to NATS drops: nothing more from it
    node.cluster.stop()
    if node.links is not None:
        node.links.served.clear()
        node.links.opened.clear()
    await node._server.close()  # type: ignore[union-attr]


async def test_the_users_node_dies_mid_session_and_it_goes_on_through_the_other(
        helpdesk: Helpdesk, keys: dict[str, KeyPair], request: pytest.FixtureRequest) -> None:
    if "local" in request.node.callspec.id:
        pytest.skip("a node of the in-process bus cannot die alone (they share one bus)")
    a, b = helpdesk.a, helpdesk.b
    assert b.hub is not None and b.store is not None
    async with live_session(a, keys, agent_at=b) as live:
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await live.carol.send_keys(live.session, grant, b"echo before-$((1+1))\r")
        await live.wait_pty(b"before-2")
        await die(a)
        died = time.monotonic()
        # alice's client fails over to b, which takes the session over; carol, on b
        # all along, has it back; the grant is still alice's to give, and she gave it.
        await until(lambda: any(isinstance(e, m.Started) and e.resumed
                                for e in live.agent_events), 20)
        assert live.session in b.hub.live and b.store.sessions.holder(live.session) == "b"
        await until(lambda: b.hub.live[live.session].user is not None, 20)  # type: ignore[union-attr]
        took = time.monotonic() - died
        await until(lambda: any(g.scope == "control" for g in
                                b.hub.live[live.session].grants.live(time.time())), 10)  # type: ignore[union-attr]
        await live.carol.send_keys(live.session, grant, b"echo after-$((2+3))\r")
        await live.wait_pty(b"after-5", 10)
        await live.carol.end(live.session, "failover", resolved=True)
    assert took < 15, f"back after {took:.1f} s"
    stored = b.store.sessions.get(live.session)
    assert stored.state.value == "ended" and stored.requeues == 0
    kinds = [e[1] for e in b.store.sessions.events(live.session)]
    assert kinds.count("queued") == 1 and kinds.count("connected") == 1
    assert kinds.count("ended") == 1 and "moved" in kinds
    b.store.audit.verify()


async def test_a_forged_link_is_refused_and_one_that_floods_is_bounded(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a = helpdesk.a
    assert a.links is not None and a.hub is not None
    peer_bus = helpdesk.make_bus()  # another node's bus connection, as a peer would have
    if isinstance(peer_bus, NatsBus):
        await peer_bus.start()
    hello = b"D" + encode(m.Hello(watch=False))

    def opening(fingerprint: str) -> bytes:
        return b'O{"agent":"carol","fingerprint":"%s","node":"x"}' % fingerprint.encode()

    try:
        # A link for carol's name with mallory's key is refused before the hub sees it.
        peer_bus.publish(subject("a", "forged1"), opening(keys["mallory"].fingerprint))
        peer_bus.publish(subject("a", "forged1"), hello)
        await asyncio.sleep(0.5)
        assert "carol" not in a.hub.agents
        # With carol's own key it is carol (the check above can see her).
        peer_bus.publish(subject("a", "flood1"), opening(keys["carol"].fingerprint))
        peer_bus.publish(subject("a", "flood1"), hello)
        await until(lambda: "carol" in a.hub.agents, 8.0)  # type: ignore[union-attr]
        # Then it pours bytes without end: bounded, and the node goes on.
        link = a.links.served["flood1"]
        junk = b"D" + b"x" * (256 * 1024)  # no newline: one line that never ends
        for _ in range(INBOUND_LIMIT // len(junk) + 8):
            peer_bus.publish(subject("a", "flood1"), junk)
        await asyncio.sleep(0.5)
        # Either the reader kept up (the endless line is refused as too large, a
        # megabyte at a time) or the link hit its bound and was closed.
        assert "flood1" not in a.links.served or len(link.stream._in) <= INBOUND_LIMIT
        alice = await user_client(a, keys["alice"])
        assert (await alice.join("still here")).position >= 1
        await alice.link.close()
    finally:
        if isinstance(peer_bus, NatsBus):
            await peer_bus.close()


@pytest.mark.sqlite_only
async def test_a_link_stream_is_closed_at_its_bound() -> None:
    bus = LocalBus()
    stream = BusStream(bus, "assist.to.x.link.l")
    chunk = b"y" * (1024 * 1024)
    for _ in range(INBOUND_LIMIT // len(chunk)):
        stream.feed(chunk)
    assert len(stream._in) == INBOUND_LIMIT
    stream.feed(b"one byte too many")
    assert await stream.read(10) == b"y" * 10  # what came before is still there to read
    assert stream._closed  # and nothing more comes in


class _Asker:
    """Stands in for an agent's connection: keeps the errors it is sent."""

    def __init__(self) -> None:
        self.peer = Peer("agent", "carol", "SHA256:carol", True, "127.0.0.1")
        self.closed = False
        self.errors: list[int] = []

    def error(self, code: str, message: str, rid: int = 0) -> None:
        self.errors.append(rid)


async def test_requests_waiting_on_a_silent_owner_are_bounded() -> None:
    async def never(channel: MessageChannel, peer: Peer) -> None:
        await asyncio.Event().wait()

    # Node a never answers (nobody listens there): carol's requests pile up to the bound.
    forwarding = Forwarding(Links("b", LocalBus(), never), lambda name: None,
                            lambda agent, session: None)
    asker = _Asker()
    client = cast(Connection, asker)
    forwarding.accept(client, "s1", 1, "a")
    for rid in range(2, MAX_ASKED + 10):
        assert forwarding.forward(client, m.Resync(session="s1", rid=rid))
    asked = forwarding.sessions["s1"].asked
    assert len(asked) == MAX_ASKED
    # The oldest were forgotten; nobody was refused.
    assert [a.rid for a in asked.values()] == list(range(10, MAX_ASKED + 10))
    assert asker.errors == []


async def test_the_wallboard_counts_the_agents_ready_on_every_node(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    dave = await agent_client(helpdesk.a, keys["dave"])
    carol = await agent_client(helpdesk.b, keys["carol"])
    await carol.set_status("available")
    board = await dave.link.wait_for(
        lambda msg: isinstance(msg, m.Wallboard) and msg.agents_available == 1, 10)
    assert board is not None  # carol, on the other node; dave himself is away
    await carol.set_status("away")
    await dave.link.wait_for(
        lambda msg: isinstance(msg, m.Wallboard) and msg.agents_available == 0, 10)
    for client in (carol, dave):
        await client.link.close()


async def test_the_users_node_restarts_and_the_agent_elsewhere_goes_on(
        helpdesk: Helpdesk, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    a, b = helpdesk.a, helpdesk.b
    assert b.hub is not None
    port = a.port
    async with live_session(a, keys, agent_at=b) as live:
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await a.stop()  # a restart: the node goes, and comes back on the same port
        bus = helpdesk.make_bus()
        if isinstance(bus, NatsBus):
            await bus.start()
        again = Broker(broker_config(tmp_path / "desk", node="a", bus="nats://unused",
                                     port=port, host_key_path=tmp_path / "desk" / "host_key",
                                     agent_grace=30.0),
                       bus=bus)
        await again.start()
        try:
            assert again.hub is not None
            await until(lambda: live.session in again.hub.live  # type: ignore[union-attr]
                        and again.hub.live[live.session].user is not None  # type: ignore[union-attr]
                        and again.hub.live[live.session].agent is not None, 20)  # type: ignore[union-attr]
            await until(lambda: any(g.scope == "control" for g in
                                    again.hub.live[live.session].grants.live(time.time())), 10)  # type: ignore[union-attr]
            await live.carol.send_keys(live.session, grant, b"echo back-$((3+4))\r")
            await live.wait_pty(b"back-7", 10)
            await until(lambda: any("back-7" in line for line in live.viewer.emulator.text()), 8.0)
            await live.carol.end(live.session, "restart", resolved=True)
        finally:
            await again.stop()
            if isinstance(bus, NatsBus):
                await bus.close()



async def test_a_bot_on_one_node_serves_users_waiting_on_another(
        helpdesk: Helpdesk, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    a, b = helpdesk.a, helpdesk.b
    assert a.store is not None and a.hub is not None
    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(FLOWS)
    outcomes: list[Outcome] = []

    async def connect(watch: bool) -> AgentClient:
        client = AgentClient(await link_to(b, "agent", keys["dave"]))
        await client.hello(client="assist bot", watch=watch)
        return client

    erin = make_key(tmp_path / "keys", "erin")
    a.store.directory.add("user", "erin", pubkey.load(erin.public), time.time())  # type: ignore[arg-type]
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        # The users wait on node a; the bot works from node b.
        bot = asyncio.ensure_future(Bot(connect, load_flows(flows_file), outcomes.append,
                                        timeout=10).run(stop))
        stack.callback(bot.cancel)  # a failing check below must not leave it running
        alice = await stack.enter_async_context(
            waiting_user(a, keys["alice"], "disk full", allow=True, also=(b,)))
        await until(lambda: len(outcomes) == 1, 20)
        assert outcomes[0].handled and outcomes[0].user == "alice", outcomes[0].reason
        assert b"cleaned-42" in alice.pty_out
        await until(lambda: alice.statuses[-1].phase == "ended", 10)
        # A user who declines is handed on to the humans, first in the one queue.
        declined = await stack.enter_async_context(
            waiting_user(a, erin, "disk is slow", allow=False, also=(b,)))
        await until(lambda: len(outcomes) == 2, 20)
        assert not outcomes[1].handled and "declined run" in outcomes[1].reason
        await until(lambda: "handed you on" in declined.statuses[-1].message, 10)
        for node in (a, b):
            assert node.hub is not None
            await until(lambda node=node: [w.user for w in node.hub.queue] == ["erin"], 10)  # type: ignore[union-attr,misc]
            head = next(iter(node.hub.queue))
            assert head.requeued and "clean temp files" in head.note
        stop.set()
        await asyncio.wait_for(bot, 10)
    # One store: the report counts what the bot resolved, whichever node it used.
    data = reports.load(a.store.db, 0, 4e9)
    automated = metrics.automation(data.sessions, ("dave",))
    assert automated is not None and (automated.hits, automated.total) == (1, 2)
    a.store.audit.verify()


async def test_a_runbook_on_another_node_types_only_after_the_grant(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a, b = helpdesk.a, helpdesk.b
    book = parse_runbook({**BOOK, "steps": [{"ask": "annotate"}, *BOOK["steps"]]}, "book")
    async with live_session(a, keys, agent_at=b) as live:
        await live.wait_pty(b"$ ")
        # A second connection of carol's, on her node, as `assist agent run` opens.
        agent = AgentClient(await link_to(b, "agent", keys["carol"]))
        await agent.hello(client="assist agent run")
        before: dict[str, bytes] = {}
        async with answering(live, allow=True, before=before):
            result = await asyncio.wait_for(RunbookRunner(agent, live.session, book).run(), 30)
        assert result.ok, result.reason
        assert result.ended and result.done == len(book.steps)
        assert any("queue-42" in line for line in result.collected["queue"])
        # Nothing typed before the run grant was asked: the command is not in the pty yet.
        assert set(before) == {"annotate", "run"}
        assert b"queue-$((40+2))" not in before["run"]
        assert b"queue-$((40+2))" in live.pty_out
        # The annotation (placed by screen row) crossed the nodes to alice's side.
        assert any(isinstance(x, m.Annotate) and x.annotation.text == "done"
                   for x in live.annotations)
        await agent.link.close()
    assert a.store is not None
    stored = a.store.sessions.get(live.session)
    assert stored.root_cause == "printer queue stuck" and stored.resolved
    chat = [e[3]["text"] for e in a.store.sessions.events(live.session) if e[1] == "chat"]
    assert "Hello, I will check your printer queue." in chat


async def test_each_connection_of_an_agent_elsewhere_gets_only_its_own_answers(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a, b = helpdesk.a, helpdesk.b
    async with live_session(a, keys, agent_at=b) as live:
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        seen = len(live.agent_events)
        # A second connection of carol's on her node (a script) joins the session
        # midway; it numbers its requests from 1, as carol's console does.
        script = AgentClient(await link_to(b, "agent", keys["carol"]))
        await script.hello(client="assist agent run")
        started = asyncio.ensure_future(script.link.wait_for(
            lambda x: isinstance(x, m.Started) and x.resumed, 5))
        restored = asyncio.ensure_future(script.link.wait_for(
            lambda x: isinstance(x, m.GrantAnswer) and x.restored, 5))
        await script.resync(live.session)
        shown = await started
        assert isinstance(shown, m.Started) and shown.info.session == live.session
        answer = await restored
        assert isinstance(answer, m.GrantAnswer) and answer.grant == grant
        # From its own Ok on, it watches the stream.
        printed = asyncio.ensure_future(script.link.wait_for(
            lambda x: isinstance(x, m.Output) and b"both-4" in x.data, 5))
        live.pty.write(b"echo both-$((2+2))\r")
        await printed
        # carol's console was told none of it: no second start, no answer to another's
        # request (which could settle a request of its own with the same number).
        await asyncio.sleep(0.2)
        stray = [e for e in live.agent_events[seen:]
                 if isinstance(e, m.Started | m.Ok | m.GrantAnswer | m.Error)]
        assert not stray
        await live.carol.send_keys(live.session, grant, b"echo still-$((3+4))\r")
        await live.wait_pty(b"still-7")
        await script.link.close()


async def test_an_agent_elsewhere_who_hands_a_user_on_is_free_again(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a, b = helpdesk.a, helpdesk.b
    assert b.hub is not None and b.hub.forwarding is not None
    async with live_session(a, keys, agent_at=b) as live:
        await live.carol.handoff(live.session, "needs the network team")
        hub, forwarding = b.hub, b.hub.forwarding
        await until(lambda: live.session not in forwarding.sessions, 8,
                    what="carol's node to let the session go")
        assert hub.roster.get("carol").session is None
        links = hub.agents["carol"]
        assert not any(live.session in client.streams for client in links.clients)
        # alice is first in the one queue again, and carol may take her again.
        await until(lambda: (head := hub.queue.head(True)) is not None
                    and head.session == live.session, 8, what="alice back at the front")
        info = await live.carol.accept(live.session)
        assert info.session == live.session
        assert live.session in forwarding.sessions


async def test_echo_off_and_redaction_hold_for_an_agent_on_another_node(
        helpdesk: Helpdesk, keys: dict[str, KeyPair]) -> None:
    a, b = helpdesk.a, helpdesk.b
    async with live_session(a, keys, agent_at=b, redact=(r"tok-[0-9]+",)) as live:
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await live.carol.send_keys(
            live.session, grant, b"read -s -p 'Password: ' pw; echo; echo length-${#pw}\r")
        await until(lambda: live.viewer.hidden, 8, what="hidden input on carol's view")
        # Her node forwards the keys; alice's node refuses them while the secret is read.
        await live.carol.send_keys(live.session, grant, b"agent-guess\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "secret-input"
        live.pty.write(b"hunter2\r")
        await live.wait_pty(b"length-7")
        # What is printed while echo is off (a password prompt's state) reaches neither
        # carol's view nor the recording; the password itself is never echoed anyway.
        live.pty.write(b"stty -echo; echo sec-$((40+1)); sleep 1; stty echo; echo ok-$((1+1))\r")
        await live.wait_pty(b"ok-2")
        assert b"sec-41" in live.pty_out
        live.pty.write(b"echo tok-$((1000+234)) shown\r")
        await live.wait_pty(b"tok-1234 shown")
        await until(lambda: any("shown" in line and "tok-" not in line
                                for line in live.viewer.emulator.text()), 8,
                    what="the redacted line on carol's view")
        assert not any("tok-1234" in line or "sec-41" in line
                       for line in live.viewer.emulator.text())
        await live.carol.end(live.session, "password reset", True)
    # Recorded on alice's node, without the secret, the guess or the token.
    text = (a.config.recordings / f"{live.session}.cast").read_text()
    assert "[hidden input]" in text and "length-7" in text
    for secret in ("hunter2", "agent-guess", "tok-1234", "sec-41"):
        assert secret not in text
    assert a.store is not None
    assert [f.node for f in a.store.recordings.of(live.session)] == ["a"]
