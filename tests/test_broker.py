"""A real broker on 127.0.0.1 with real SSH clients."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from assist.broker import connection
from assist.broker.bus import LocalBus
from assist.broker.server import Broker
from assist.client import AgentClient
from assist.client.link import BrokerError
from assist.core.session import State
from assist.errors import AuthRefused, ConfigError, HostKeyMismatch, HostKeyUnknown, StateError
from assist.protocol import messages as m
from assist.transport import ssh
from tests.helpers import KeyPair, agent_client, broker_config, link_to, register, user_client


async def next_event(client: object, kind: type[m.Msg], timeout: float = 5.0) -> m.Msg:
    link = client.link  # type: ignore[attr-defined]
    return await link.wait_for(lambda msg: isinstance(msg, kind), timeout)


async def test_user_joins_agent_accepts_and_session_is_recorded(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    carol = await agent_client(broker, keys["carol"])
    queued = await alice.join("vpn will not connect")
    assert queued.position == 1
    listing = await carol.queue()
    assert [(e.user, e.topic) for e in listing.entries] == [("alice", "vpn will not connect")]

    offered = asyncio.ensure_future(next_event(alice, m.Offered))
    accepting = asyncio.ensure_future(carol.accept())
    assert (await offered).agent == "carol"  # type: ignore[attr-defined]
    info = await alice.ready(cols=100, rows=30)
    assert (await accepting).session == info.session == queued.session
    assert (info.cols, info.rows) == (100, 30)

    ended = asyncio.ensure_future(next_event(alice, m.Ended))
    await carol.end(info.session, "expired vpn certificate", resolved=True)
    assert (await ended).survey  # type: ignore[attr-defined]

    assert broker.store is not None
    stored = broker.store.sessions.get(info.session)
    assert stored.state is State.ENDED and stored.agent == "carol"
    assert stored.root_cause == "expired vpn certificate" and stored.resolved
    assert stored.answered_at is not None and stored.answered_at >= stored.queued_at
    kinds = [e[1] for e in broker.store.sessions.events(info.session)]
    assert kinds == ["queued", "offered", "connected", "ended"]
    assert [r.action for r in broker.store.audit.records(info.session)] == [
        "join", "accept", "connect", "end"]
    broker.store.audit.verify()
    await alice.link.close()
    await carol.link.close()


@pytest.mark.parametrize(("key", "role"), [("alice", "agent"), ("carol", "user"),
                                          ("mallory", "user"), ("mallory", "agent")])
async def test_keys_only_work_in_their_own_role(
        broker: Broker, keys: dict[str, KeyPair], key: str, role: str) -> None:
    with pytest.raises(AuthRefused, match=f"refused key .*{key} for the {role} role") as info:
        await link_to(broker, role, keys[key])
    assert "assist help --join" in info.value.message


async def test_unregistered_users_can_be_allowed_as_guests(
        tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    server = Broker(broker_config(tmp_path / "b", allow_unregistered_users=True))
    await server.start()
    try:
        guest = await user_client(server, keys["mallory"])
        assert guest.welcome is not None and not guest.welcome.registered
        assert guest.welcome.name.startswith("guest-")
        with pytest.raises(AuthRefused):
            await link_to(server, "agent", keys["mallory"])
        await guest.link.close()
    finally:
        await server.stop()


async def test_host_key_pinning(broker: Broker, keys: dict[str, KeyPair]) -> None:
    with pytest.raises(HostKeyUnknown) as unknown:
        await ssh.connect("127.0.0.1", broker.port, "user", "", keys["alice"].private)
    assert unknown.value.fingerprint == broker.fingerprint
    assert unknown.value.public_key == broker.public_key
    other = ssh.openssh_key(__import__("asyncssh").generate_private_key("ssh-ed25519"))
    with pytest.raises(HostKeyMismatch, match="intercepting"):
        await ssh.connect("127.0.0.1", broker.port, "user", other, keys["alice"].private)


async def test_roles_cannot_send_each_others_messages(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    carol = await agent_client(broker, keys["carol"])
    with pytest.raises(BrokerError, match="users cannot send 'accept'"):
        await alice.link.request(m.Accept(), m.Ok)
    with pytest.raises(BrokerError, match="agents cannot send 'join'"):
        await carol.link.request(m.Join(topic="x"), m.Queued)
    await alice.link.close()
    await carol.link.close()


async def test_broker_survives_10000_malformed_messages(
        broker: Broker, keys: dict[str, KeyPair], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "BURST", 100_000.0)  # robustness here, not the budget
    link = await link_to(broker, "user", keys["alice"])
    rng = random.Random(1234)
    templates = [b'{"t":"join"}', b'{"t":"nope","rid":999999}', b"[]", b"{", b'{"t":5}',
                 b'{"t":"ready","session":7}', b'{"t":"end"}', b'"\\ud800"', b"\x00\xff"]
    errors = 0

    def count(msg: m.Msg) -> bool:
        nonlocal errors
        errors += isinstance(msg, m.Error)
        return False

    watcher = asyncio.ensure_future(link.wait_for(count, 60))
    for i in range(10_000):
        choice = rng.random()
        if choice < 0.4:
            line = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60))).replace(b"\n", b"")
        elif choice < 0.8:
            line = rng.choice(templates)
        else:
            line = b'{"t":"' + rng.choice([b"join", b"leave", b"hello", b"ping"]) + b'","x":' + \
                str(i).encode() + b"}"
        if line.strip():
            link.channel.send_raw(line + b"\n")
        if i % 500 == 0:
            await link.channel.send(m.Ping())
    # Still alive and answering on the same connection:
    pong = await link.request(m.Ping(sent=42.0), m.Pong, timeout=30)
    assert pong.sent == 42.0
    watcher.cancel()
    assert errors > 5000
    # And a fresh client is served normally.
    bob = await user_client(broker, keys["bob"])
    assert (await bob.join("still working?")).position == 1
    await link.close()
    await bob.link.close()


async def test_oversized_message_is_refused_and_connection_survives(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    link = await link_to(broker, "user", keys["alice"])
    got = asyncio.ensure_future(link.wait_for(
        lambda msg: isinstance(msg, m.Error) and msg.code == "too-large", 10))
    link.channel.send_raw(b'{"t":"join","topic":"' + b"x" * (2 * 1024 * 1024) + b'"}\n')
    assert isinstance(await got, m.Error)
    assert (await link.request(m.Ping(), m.Pong)).sent == 0.0
    await link.close()


async def test_abrupt_disconnect_keeps_place_and_resume_reclaims_it(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    bob = await user_client(broker, keys["bob"])
    first = await alice.join("first")
    await bob.join("second")
    await alice.link.close()  # vanishes without leaving
    carol = await agent_client(broker, keys["carol"])
    await asyncio.sleep(0.1)
    listing = await carol.queue()
    assert [(e.user, e.online) for e in listing.entries] == [("alice", False), ("bob", True)]
    # Taking "the next" user skips alice while she is away but keeps her first.
    again = await user_client(broker, keys["alice"])
    resumed = await again.join("first", resume=first.resume)
    assert resumed.resumed and resumed.position == 1 and resumed.session == first.session
    # Someone else cannot use her token.
    mallory_like = await user_client(broker, keys["bob"])
    with pytest.raises(BrokerError, match="belongs to someone else"):
        await mallory_like.join("x", resume=first.resume)
    for c in (again, bob, carol, mallory_like):
        await c.link.close()


async def test_leave_records_abandoned(broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    queued = await alice.join("printer")
    await alice.leave()
    assert broker.store is not None
    assert broker.store.sessions.get(queued.session).state is State.ABANDONED
    carol = await agent_client(broker, keys["carol"])
    assert (await carol.queue()).entries == ()
    with pytest.raises(BrokerError, match="empty"):
        await carol.accept(timeout=1)
    await alice.link.close()
    await carol.link.close()


async def test_agent_drop_puts_user_back_at_the_front(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    bob = await user_client(broker, keys["bob"])
    await asyncio.sleep(0.01)
    a = await alice.join("disk full")
    await asyncio.sleep(0.01)
    await bob.join("email")
    carol = await agent_client(broker, keys["carol"])
    offered = asyncio.ensure_future(next_event(alice, m.Offered))
    accepting = asyncio.ensure_future(carol.accept(a.session))
    await offered
    await alice.ready()
    await accepting
    lost = asyncio.ensure_future(next_event(alice, m.AgentLost))
    await carol.link.close()  # agent process killed
    event = await lost
    assert event.position == 1  # type: ignore[attr-defined]
    assert broker.store is not None
    assert broker.store.sessions.get(a.session).state is State.REQUEUED
    dave = await agent_client(broker, keys["dave"])
    listing = await dave.queue()
    assert [(e.user, e.requeued) for e in listing.entries] == [("alice", True), ("bob", False)]
    for c in (alice, bob, dave):
        await c.link.close()


async def test_offer_not_answered_goes_back_to_front(
        tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    server = Broker(broker_config(tmp_path / "b", offer_timeout=0.3))
    await server.start()
    register(server, "user", "alice", keys["alice"])
    register(server, "agent", "carol", keys["carol"])
    try:
        alice = await user_client(server, keys["alice"])
        carol = await agent_client(server, keys["carol"])
        await alice.join("slow client")
        with pytest.raises(StateError, match="left before it started"):
            await carol.accept(timeout=3)
        assert [e.requeued for e in (await carol.queue()).entries] == [True]
        await alice.link.close()
        await carol.link.close()
    finally:
        await server.stop()


async def test_restart_keeps_waiting_users_place(tmp_path: Path,
                                                 keys: dict[str, KeyPair]) -> None:
    config = broker_config(tmp_path / "b")
    first = Broker(config)
    await first.start()
    for name in ("alice", "bob"):
        register(first, "user", name, keys[name])
    register(first, "agent", "carol", keys["carol"])
    alice = await user_client(first, keys["alice"])
    bob = await user_client(first, keys["bob"])
    a = await alice.join("first in line")
    await asyncio.sleep(0.01)
    b = await bob.join("second in line")
    await first.stop()
    await alice.link.close()
    await bob.link.close()

    second = Broker(config)
    await second.start()
    try:
        assert second.public_key == first.public_key  # host key persisted
        carol = await agent_client(second, keys["carol"])
        listing = await carol.queue()
        assert [(e.session, e.online) for e in listing.entries] == [
            (a.session, False), (b.session, False)]
        # Bob comes back first but alice keeps her place ahead of him.
        bob2 = await user_client(second, keys["bob"])
        resumed = await bob2.join("second in line", resume=b.resume)
        assert resumed.resumed and resumed.position == 2
        alice2 = await user_client(second, keys["alice"])
        assert (await alice2.join("first in line", resume=a.resume)).position == 1
        for c in (carol, bob2, alice2):
            await c.link.close()
    finally:
        await second.stop()


async def test_positions_are_pushed_when_someone_ahead_leaves(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    bob = await user_client(broker, keys["bob"])
    await alice.join("a")
    await asyncio.sleep(0.01)
    assert (await bob.join("b")).position == 2
    moved = asyncio.ensure_future(next_event(bob, m.Position))
    await alice.leave()
    event = await moved
    assert event.position == 1 and event.waiting == 1  # type: ignore[attr-defined]
    await alice.link.close()
    await bob.link.close()


async def test_agents_get_a_wallboard_and_presence_is_audited(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice = await user_client(broker, keys["alice"])
    await alice.join("printer")
    link = await link_to(broker, "agent", keys["carol"])
    board = asyncio.ensure_future(link.wait_for(lambda x: isinstance(x, m.Wallboard), 5))
    carol = AgentClient(link)
    await carol.hello()
    wall = await board
    assert isinstance(wall, m.Wallboard)
    assert wall.queue_length == 1 and wall.longest_wait is not None and wall.target == 15.0
    assert (wall.answered_within, wall.settled, wall.agents_available) == (0, 0, 0)
    await carol.set_status("available")
    offered = asyncio.ensure_future(alice.link.wait_for(lambda x: isinstance(x, m.Offered), 5))
    accepting = asyncio.ensure_future(carol.accept())
    await offered
    info = await alice.ready()
    await accepting
    await carol.end(info.session, "toner", True)
    assert broker.hub is not None
    board_now = broker.hub.wallboard()
    assert (board_now.answered_within, board_now.settled, board_now.agents_available) == (1, 1, 1)
    assert broker.store is not None
    statuses = [r.data["status"] for r in broker.store.audit.records()
                if r.action == "presence" and r.actor == "agent:carol"]
    assert statuses == ["away", "available", "busy", "available"]
    await alice.link.close()
    await carol.link.close()


async def test_wallboard_counts_abandoned_contacts_as_misses(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    bob = await user_client(broker, keys["bob"])
    await bob.join("gave up")
    await bob.leave()
    assert broker.hub is not None
    board = broker.hub.wallboard()
    assert (board.answered_within, board.settled) == (0, 1)
    # A broker started later reads the same figure back from the store.
    from assist.broker.figures import TodayFigures

    assert broker.store is not None
    fresh = TodayFigures(broker.store).level(broker.hub.clock.now())
    assert (fresh.hits, fresh.total) == (0, 1)
    await bob.link.close()


@pytest.mark.stores
async def test_a_second_broker_on_the_same_store_is_refused(tmp_path: Path) -> None:
    config = broker_config(tmp_path)
    first = Broker(config)
    await first.start()
    try:
        with pytest.raises(ConfigError, match="another assist serve already uses the store"):
            await Broker(config).start()
        # A node of a helpdesk (--bus) does not join a broker that serves the store alone.
        node = Broker(broker_config(tmp_path, bus="nats://unused", node="a"), bus=LocalBus())
        with pytest.raises(ConfigError, match=r"a broker on its own .* already uses"):
            await node.start()
    finally:
        await first.stop()
    again = Broker(config)  # once the first has stopped, the store is free
    await again.start()
    await again.stop()


@pytest.mark.stores
async def test_the_nodes_of_a_helpdesk_share_a_store_that_no_lone_broker_joins(
        tmp_path: Path) -> None:
    bus = LocalBus()
    await bus.start()
    nodes = [Broker(broker_config(tmp_path, bus="nats://unused", node=name), bus=bus)
             for name in ("a", "b")]
    for node in nodes:
        await node.start()
    try:
        with pytest.raises(ConfigError, match="another assist serve already uses the store"):
            await Broker(broker_config(tmp_path)).start()
    finally:
        for node in nodes:
            await node.stop()
        await bus.close()
    alone = Broker(broker_config(tmp_path))  # the last node gone, a lone broker may start
    await alone.start()
    await alone.stop()
