"""The broker core without SSH: in-memory channels, a fake clock, no sleeps.

Every client here is a real :class:`~assist.client.link.Link` (or a raw
channel) on one end of an in-memory stream pair, the hub's ``serve`` on the
other. Time only moves when a test advances the :class:`FakeClock`; the
order of events comes from request/reply round trips, never from sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assist.broker import connection, views
from assist.broker.hub import HELLO_DEADLINE, Hub
from assist.client.link import BrokerError, Link
from assist.core.clock import FakeClock
from assist.core.queueview import QueueMirror
from assist.core.session import State
from assist.errors import StoreError
from assist.protocol import encode
from assist.protocol import messages as m
from assist.store import Store
from assist.transport.channel import ChannelClosed, MessageChannel
from assist.transport.memory import MemoryStream, stream_pair
from assist.transport.peer import Peer
from tests.helpers import broker_config

pytestmark = pytest.mark.stores

AGENT_GRACE = 10.0
USER_GRACE = 60.0


class Client:
    """One client of the hub: a link, and every event it received, in order."""

    def __init__(self, link: Link, stream: MemoryStream) -> None:
        self.link = link
        self.stream = stream  # the hub's end (tests may mark it as gone silent)
        self.events: list[m.Msg] = []
        self._task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for msg in self.link.events():
            self.events.append(msg)

    async def request(self, msg: m.Msg, expect: type[m.Msg] = m.Ok) -> m.Msg:
        return await self.link.request_any(msg, (expect,), timeout=10)

    async def settle(self) -> list[m.Msg]:
        """Every event sent before now has arrived (a ping is answered after them)."""
        await self.link.request(m.Ping(), m.Pong, timeout=10)
        await asyncio.sleep(0)  # let the collector take what the reader delivered
        return self.events

    def of(self, kind: type[m.Msg]) -> list[m.Msg]:
        return [e for e in self.events if isinstance(e, kind)]

    async def close(self) -> None:
        await self.link.close()
        self._task.cancel()


class Harness:
    """A hub on a real store, its clock, and helpers to connect clients."""

    def __init__(self, tmp_path: Path, **config: object) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock(1_000_000.0)
        self.config = broker_config(tmp_path, agent_grace=AGENT_GRACE, user_grace=USER_GRACE,
                                    **config)
        self.store = Store(self.config.db)
        self.hub = Hub(self.config, self.store, self.clock)
        self.serving: list[asyncio.Task[None]] = []
        self.tokens: dict[str, str] = {}
        """Session -> the resume token its user was given."""

    def raw(self, role: str, name: str, capacity: int = 64 * 1024,
            key: str = "") -> tuple[MessageChannel, MemoryStream]:
        """A channel to the hub that the test reads (or never reads) itself."""
        ours, theirs = stream_pair(capacity)
        peer = Peer(role, name, key or f"SHA256:{name}", True, "127.0.0.1")
        self.serving.append(asyncio.ensure_future(self.hub.serve(MessageChannel(theirs), peer)))
        return MessageChannel(ours), theirs

    async def connect(self, role: str, name: str, key: str = "", watch: bool = True,
                      capacity: int = 64 * 1024) -> Client:
        channel, theirs = self.raw(role, name, capacity, key)
        link = Link(channel)
        link.start()
        client = Client(link, theirs)
        await client.request(m.Hello(host="h", os_user="o", watch=watch), m.Welcome)
        return client

    async def join(self, name: str, topic: str = "help", key: str = "") -> tuple[Client, m.Queued]:
        user = await self.connect("user", name, key)
        queued = await user.request(m.Join(topic=topic), m.Queued)
        assert isinstance(queued, m.Queued)
        self.tokens[queued.session] = queued.resume
        self.clock.advance(0.001)  # join order is time order
        return user, queued

    async def live(self, user_name: str = "alice",
                   agent_name: str = "carol") -> tuple[Client, Client, str]:
        user, queued = await self.join(user_name)
        agent = await self.connect("agent", agent_name)
        await agent.request(m.Accept(session=queued.session))
        await user.settle()
        assert user.of(m.Offered)
        await user.request(m.Ready(session=queued.session, cols=100, rows=30), m.Started)
        await agent.settle()
        assert agent.of(m.Started)
        return user, agent, queued.session

    def tick(self, seconds: float = views.TICK) -> None:
        self.clock.advance(seconds)

    async def close(self) -> None:
        self.hub.close()
        for task in self.serving:
            task.cancel()
        await asyncio.gather(*self.serving, return_exceptions=True)
        self.store.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    await h.close()


# -- one live session ------------------------------------------------------------------------


async def test_a_live_session_through_the_hub(harness: Harness) -> None:
    user, agent, session = await harness.live()
    await user.link.send(m.Chat(session=session, text="my vpn is down"))
    await user.link.send(m.Output(session=session, data=b"$ vpn up\r\n"))
    events = await agent.settle()
    assert [e.text for e in events if isinstance(e, m.Chat)] == ["my vpn is down"]
    assert any(isinstance(e, m.Output) and e.data == b"$ vpn up\r\n" for e in events)
    await agent.request(m.End(session=session, root_cause="expired cert", resolved=True))
    ended = (await user.settle())[-1]
    assert isinstance(ended, m.Ended) and ended.survey
    kinds = [e[1] for e in harness.store.sessions.events(session)]
    assert kinds == ["queued", "offered", "connected", "chat", "ended"]
    assert [r.action for r in harness.store.audit.records(session)] == [
        "join", "accept", "connect", "end"]
    assert not harness.hub.live and not harness.hub.by_key


# -- views ------------------------------------------------------------------------------------


async def test_agents_get_pages_then_deltas_encoded_once_for_all(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    users = [await harness.join(f"u{i}") for i in range(30)]
    agents = [await harness.connect("agent", f"agent{i}") for i in range(3)]
    mirrors = [QueueMirror() for _ in agents]
    for agent, mirror in zip(agents, mirrors, strict=True):
        for event in await agent.settle():
            mirror.apply(event)
        assert mirror.ready and len(mirror) == 30
    encoded: list[str] = []
    real = views.encode

    def counting(msg: m.Msg) -> bytes:
        encoded.append(type(msg).__name__)
        return real(msg)

    monkeypatch.setattr(views, "encode", counting)
    (_, gone), *_ = users
    await users[0][0].request(m.Leave(session=gone.session))
    _newcomer, _ = await harness.join("late")
    harness.tick()
    assert encoded.count("QueueDelta") == 2, "one delta for leavers, one for joiners: once"
    for agent, mirror in zip(agents, mirrors, strict=True):
        for event in (await agent.settle())[-2:]:
            assert mirror.apply(event) is True
        assert [e.session for e in mirror.entries()] == [w.session for w in harness.hub.queue]
    assert max(len(real(d)) for d in agents[0].of(m.QueueDelta)) < 400


async def test_list_queue_is_paged_under_the_size_limit(harness: Harness) -> None:
    for i in range(600):
        await harness.join(f"u{i}", topic="x" * 200)
    agent = await harness.connect("agent", "carol", watch=False)
    first = await agent.request(m.ListQueue(), m.QueueList)
    second = await agent.request(m.ListQueue(offset=500), m.QueueList)
    assert isinstance(first, m.QueueList) and isinstance(second, m.QueueList)
    assert (len(first.entries), len(second.entries), first.total) == (500, 100, 600)
    assert second.entries[0].position == 501
    assert len(encode(first)) < 1024 * 1024
    assert not agent.of(m.QueuePage), "a script that does not watch gets no pages"


async def test_positions_only_when_they_change_a_few_times_a_second(harness: Harness) -> None:
    users = [await harness.join(f"u{i}") for i in range(5)]
    harness.tick(views.POSITION_EVERY)
    await users[0][0].request(m.Leave(session=users[0][1].session))
    harness.tick()  # the delta tick arms the position push (due now)
    harness.tick(0)
    for position, (user, _) in enumerate(users[1:], 1):
        assert [(p.position, p.waiting) for p in (await user.settle()) if
                isinstance(p, m.Position)] == [(position, 4)]
    # Another change right after: no second push until the interval has passed.
    await users[1][0].request(m.Leave(session=users[1][1].session))
    harness.tick()
    assert len(await users[4][0].settle()) == 1
    harness.tick(views.POSITION_EVERY)
    await users[4][0].settle()
    assert [p.position for p in users[4][0].of(m.Position)] == [4, 3]
    # Nobody is told a position that did not change.
    _newcomer, _ = await harness.join("late")
    harness.tick(views.POSITION_EVERY)
    await users[4][0].settle()
    assert [p.position for p in users[4][0].of(m.Position)] == [4, 3]


async def test_users_far_back_hear_of_their_place_less_often(harness: Harness) -> None:
    users = [await harness.join(f"u{i}") for i in range(views.POSITION_NEAR + 5)]
    harness.tick(views.POSITION_FAR_EVERY)
    near, far = users[10][0], users[-1][0]
    await users[0][0].request(m.Leave(session=users[0][1].session))
    harness.tick(views.POSITION_EVERY)
    await near.settle()
    await far.settle()
    assert [p.position for p in near.of(m.Position)] == [10]
    assert far.of(m.Position) == [], "someone far back is not told twice a second"
    harness.tick(views.POSITION_FAR_EVERY)
    await far.settle()
    assert [p.position for p in far.of(m.Position)] == [views.POSITION_NEAR + 4]


# -- agents and users who drop and come back -------------------------------------------------


async def test_an_agent_who_drops_gets_a_grace_then_the_user_goes_first(
        harness: Harness) -> None:
    user, agent, session = await harness.live()
    await harness.join("bob")
    await agent.close()
    away = (await user.settle())[-1]
    assert isinstance(away, m.Away) and away.who == "agent"
    assert away.until == harness.clock.now() + AGENT_GRACE
    harness.tick(AGENT_GRACE - 0.1)
    assert not user.of(m.AgentLost)
    harness.tick(0.2)
    lost = (await user.settle())[-1]
    assert isinstance(lost, m.AgentLost) and lost.position == 1
    assert harness.store.sessions.get(session).state is State.REQUEUED
    # The agent hears what happened when it comes back.
    carol = await harness.connect("agent", "carol")
    told = [e for e in await carol.settle() if isinstance(e, m.Ended)]
    assert told and told[0].reason == "requeued" and "front of the queue" in told[0].message


async def test_the_agents_grace_runs_from_when_its_session_connection_dropped(
        harness: Harness) -> None:
    user, accepting, session = await harness.live()
    script = await harness.connect("agent", "carol", watch=False)  # a second connection
    await accepting.close()
    while not user.of(m.Away):
        await user.settle()
    harness.tick(AGENT_GRACE * 0.9)
    await script.close()  # the agent's last connection goes later
    for _ in range(1000):  # until the hub saw it go
        if "carol" not in harness.hub.agents:
            break
        await asyncio.sleep(0)
    assert "carol" not in harness.hub.agents
    harness.tick(AGENT_GRACE * 0.2)
    events = await user.settle()
    # The grace was not started again: alice is back in the queue on time, told once.
    assert [e for e in events if isinstance(e, m.AgentLost)]
    assert len(user.of(m.Away)) == 1
    assert session in harness.hub.waiting


async def test_an_agent_back_within_the_grace_gets_the_session_back(harness: Harness) -> None:
    user, agent, session = await harness.live()
    await agent.request(m.Verify(session=session, method="key"))
    await user.link.send(m.GrantAnswer(session=session, scope="control", allowed=True,
                                       grant="g1"))
    await agent.settle()
    await agent.close()
    await user.settle()
    harness.tick(AGENT_GRACE / 2)
    back = await harness.connect("agent", "carol")
    events = await back.settle()
    started = next(e for e in events if isinstance(e, m.Started))
    assert started.resumed and started.info.session == session and started.info.verified
    restored = [e for e in events if isinstance(e, m.GrantAnswer)]
    assert [(g.grant, g.restored) for g in restored] == [("g1", True)]
    assert isinstance((await user.settle())[-1], m.Resync)
    assert any(isinstance(e, m.Back) and e.who == "agent" for e in user.events)
    harness.tick(AGENT_GRACE)
    assert not user.of(m.AgentLost)
    await back.link.send(m.Keys(session=session, grant="g1", data=b"ls\r"))
    assert any(isinstance(e, m.Keys) and e.data == b"ls\r" for e in await user.settle())
    assert harness.store.sessions.get(session).requeues == 0


async def test_an_agent_that_stops_answering_loses_the_user_at_once(harness: Harness) -> None:
    user, agent, _session = await harness.live()
    agent.stream.lost = "silent"  # what a keepalive timeout looks like to the hub
    await agent.close()
    lost = (await user.settle())[-1]
    assert isinstance(lost, m.AgentLost) and lost.position == 1


async def test_a_user_who_drops_comes_back_to_the_live_session(harness: Harness) -> None:
    user, agent, session = await harness.live()
    assert harness.store.sessions.get(session).state is State.CONNECTED
    await user.link.send(m.GrantAnswer(session=session, scope="annotate", allowed=True,
                                       grant="g1"))
    await agent.settle()
    token = harness.tokens[session]
    await user.close()
    away = (await agent.settle())[-1]
    assert isinstance(away, m.Away) and away.who == "user"
    harness.tick(USER_GRACE / 2)
    again = await harness.connect("user", "alice")
    started = await again.request(m.Join(topic="help", resume=token), m.Started)
    assert isinstance(started, m.Started) and started.resumed
    assert started.info.session == session
    events = await agent.settle()
    assert any(isinstance(e, m.Revoke) for e in events), "its grants are said again"
    assert any(isinstance(e, m.Back) and e.who == "user" for e in events)
    await again.link.send(m.GrantAnswer(session=session, scope="annotate", allowed=True,
                                        grant="g1", restored=True))
    assert (await agent.settle())[-1] == m.GrantAnswer(
        session=session, scope="annotate", allowed=True, grant="g1", restored=True)
    harness.tick(USER_GRACE)
    assert not agent.of(m.Ended)
    assert "grant-restored" in [r.action for r in harness.store.audit.records(session)]


async def test_a_user_who_never_comes_back_ends_the_session(harness: Harness) -> None:
    user, agent, session = await harness.live()
    await user.close()
    await agent.settle()
    harness.tick(USER_GRACE)
    await agent.settle()
    (ended,) = agent.of(m.Ended)
    assert isinstance(ended, m.Ended) and ended.reason == "user-lost"
    assert harness.store.sessions.get(session).state is State.ENDED


async def test_a_live_session_survives_a_hub_restart(harness: Harness, tmp_path: Path) -> None:
    _user, _agent, session = await harness.live()
    token = harness.tokens[session]
    harness.hub.close()  # the process dies: nothing is transitioned
    second = Hub(harness.config, harness.store, harness.clock)
    assert second.restore() == 1
    harness.hub = second
    assert session in second.live and not second.queue, "no ghost entry in the queue"
    again = await harness.connect("user", "alice")
    started = await again.request(m.Join(topic="help", resume=token), m.Started)
    assert isinstance(started, m.Started) and started.resumed
    carol = await harness.connect("agent", "carol")
    resumed = next(e for e in await carol.settle() if isinstance(e, m.Started))
    assert resumed.resumed and resumed.info.session == session
    harness.tick(AGENT_GRACE + 1)
    assert harness.store.sessions.get(session).state is State.CONNECTED
    await carol.request(m.End(session=session, root_cause="fixed"))
    assert len(harness.store.sessions.between(0, 2e9)) == 1, "one contact, not two"


# -- one request per key ----------------------------------------------------------------------


async def test_one_key_one_request_and_a_second_help_takes_it_over(harness: Harness) -> None:
    first, queued = await harness.join("alice", key="SHA256:same")
    second = await harness.connect("user", "alice", key="SHA256:same")
    with pytest.raises(BrokerError) as info:
        await second.request(m.Join(topic="again"), m.Queued)
    assert info.value.code == "already-waiting" and queued.session in info.value.message
    taken = await second.request(m.Join(topic="again", takeover=True), m.Queued)
    assert isinstance(taken, m.Queued) and taken.session == queued.session and taken.resumed
    assert isinstance((await first.settle())[-1], m.TakenOver)
    assert len(harness.hub.queue) == 1
    # A hundred connections of one key make one entry, not a hundred ghosts.
    for _ in range(100):
        extra = await harness.connect("user", "alice", key="SHA256:same")
        with pytest.raises(BrokerError, match="already waits"):
            await extra.request(m.Join(topic="spam"), m.Queued)
        await extra.close()
    assert len(harness.hub.queue) == 1


# -- bounds -----------------------------------------------------------------------------------


async def test_a_client_that_never_reads_is_cut_off_at_its_bound(harness: Harness) -> None:
    for i in range(500):
        await harness.join(f"u{i}", topic="t" * 200)
    channel, theirs = harness.raw("agent", "slow")
    channel.send_nowait(m.Hello(watch=False, rid=1))
    for rid in range(2, 40):
        channel.send_nowait(m.ListQueue(rid=rid))  # ~170 KB each, never read
    served = harness.serving[-1]
    await asyncio.wait_for(served, 10)  # the hub let the connection go
    assert theirs.buffered() < connection.CONTROL_LIMIT // 4
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(channel.recv(), 5))
        except Exception:
            break
    assert isinstance(got[-1], m.Error) and got[-1].code == "slow-consumer"


async def test_the_reader_takes_one_message_at_a_time_from_each_client(
        harness: Harness) -> None:
    first = await harness.connect("user", "ann")
    second = await harness.connect("user", "bob")
    order: list[str] = []
    dispatch = harness.hub.gate.dispatch

    async def noting(client: connection.Connection, msg: m.Msg) -> None:
        order.append(client.peer.name)
        await dispatch(client, msg)

    harness.hub.gate.dispatch = noting
    for _ in range(20):  # both backlogs are in before either reader runs
        first.link.channel.send_nowait(m.Ping())
        second.link.channel.send_nowait(m.Ping())
    await first.settle()
    await second.settle()
    runs = [len(list(group)) for _, group in itertools.groupby(order)]
    assert len(order) == 42 and max(runs) <= 2, order


async def test_a_flood_is_refused_then_disconnected_and_others_are_served(
        harness: Harness) -> None:
    canary = await harness.connect("user", "canary")
    channel, _ = harness.raw("user", "flood")
    for rid in range(1, int(connection.BURST * 5)):
        channel.send_nowait(m.Ping(rid=rid))
    pongs, errors = 0, []
    while True:
        try:
            reply = await asyncio.wait_for(channel.recv(), 5)
        except ChannelClosed:
            break
        if isinstance(reply, m.Pong):
            pongs += 1
            continue
        assert isinstance(reply, m.Error) and reply.code == "rate-limit"
        errors.append(reply.message)
        # The flooder is not read while over budget; everyone else is served.
        pong = await canary.request(m.Ping(), m.Pong)
        assert isinstance(pong, m.Pong)
        harness.clock.advance(connection.BURST / 2 / connection.RATE)
    assert errors[0].startswith("too many messages") and "warning 1 of 3" in errors[0]
    assert errors[-1] == "too many messages: disconnected" and len(errors) == 4
    assert pongs < connection.BURST * 3, "never served much past its budget"


async def test_a_lagging_viewer_drops_frames_and_is_resynced(harness: Harness) -> None:
    user, agent, session = await harness.live()
    # The first picture, as the user's share answers the first request for one.
    await user.link.send(m.Snapshot(session=session, cols=100, rows=30, data=b"$ "))
    await user.settle()
    agent.link._reader.cancel()  # type: ignore[union-attr]  # the agent stops reading
    await asyncio.sleep(0)
    chunk = b"x" * 60_000
    for _ in range(40):
        await user.link.send(m.Output(session=session, data=chunk))
    await user.settle()
    hub_side = next(c for c in harness.hub.agents["carol"].clients)
    assert hub_side.outbox.dropped > 0
    assert hub_side.outbox.queued <= connection.STREAM_LIMIT + 200_000
    resyncs = len(user.of(m.Resync))
    # The viewer catches up (reads again): the user is asked for a picture.
    channel = agent.link.channel
    while hub_side.outbox.backlog:
        await asyncio.wait_for(channel.recv(), 5)
    await asyncio.sleep(0)  # the hub's writer sees the client caught up
    await user.settle()
    assert len(user.of(m.Resync)) == resyncs + 1


async def test_one_party_flooding_the_other_is_refused_not_the_other_cut_off(
        harness: Harness) -> None:
    user, agent, session = await harness.live()
    agent.link._reader.cancel()  # type: ignore[union-attr]  # the agent is slow for a while
    await asyncio.sleep(0)
    hub_agent = next(c for c in harness.hub.agents["carol"].clients)
    # Signalling (up to 64 KiB each) and chat lines, far more than the agent reads.
    for n in range(60):
        msg: m.Msg = m.Signal(session=session, kind="offer", sdp="v" * 60 * 1024) \
            if n % 2 else m.Chat(session=session, text="é" * 2000)
        await user.link.send(msg)
        harness.clock.advance(0.1)  # within the budget: refused for the agent's sake only
    await user.settle()
    refusals = user.of(m.Error)
    assert refusals and all(isinstance(e, m.Error) and e.code == "state"
                            and "not keeping up" in e.message for e in refusals)
    # The agent kept its connection, with its backlog within the bound.
    assert not hub_agent.closed
    assert hub_agent.outbox.queued <= connection.PEER_LIMIT + 64 * 1024 + 4096
    # Keys from the agent to a user far behind are refused the same way, as keys.
    user.link._reader.cancel()  # type: ignore[union-attr]
    await asyncio.sleep(0)
    hub_user = harness.hub.live[session].user
    assert hub_user is not None
    raw = agent.link.channel
    raw.send_nowait(m.Verify(session=session, method="key"))
    await user.link.send(m.GrantAnswer(session=session, scope="control", allowed=True,
                                       grant="g1"))
    while not isinstance(await asyncio.wait_for(raw.recv(), 5), m.GrantAnswer):
        pass  # the grant is mirrored at the broker: keys are checked against it
    for _ in range(40):
        raw.send_nowait(m.Keys(session=session, grant="g1", data=b"k" * 60_000))
    reply = None
    for _ in range(2000):
        got = await asyncio.wait_for(raw.recv(), 5)
        if isinstance(got, m.KeysRefused):
            reply = got
            break
    assert isinstance(reply, m.KeysRefused) and reply.reason == "user-behind"
    assert not hub_user.closed


async def test_a_store_that_refuses_an_accept_loses_nobody(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    user, queued = await harness.join("alice")
    agent = await harness.connect("agent", "carol")
    audit = harness.store.audit
    real = audit.append
    failed: list[str] = []

    def refuse_once(at: float, actor: str, action: str, *args: object) -> object:
        if action == "accept" and not failed:
            failed.append(action)
            raise StoreError("the store refused: disk I/O error")
        return real(at, actor, action, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "append", refuse_once)
    with pytest.raises(BrokerError) as info:
        await agent.request(m.Accept(session=queued.session))
    assert info.value.code == "store"
    # Nothing half done: alice keeps her place, the store still has her waiting,
    # no audit record without its state (nor the reverse).
    assert [w.session for w in harness.hub.queue] == [queued.session]
    assert queued.session in harness.hub.waiting
    assert harness.store.sessions.get(queued.session).state is State.QUEUED
    assert harness.hub.waiting[queued.session].state is State.QUEUED
    assert "offered" not in [e[1] for e in harness.store.sessions.events(queued.session)]
    assert harness.hub.roster.get("carol").session is None
    # The next try goes through.
    await agent.request(m.Accept(session=queued.session))
    await user.settle()
    assert user.of(m.Offered)
    assert harness.store.sessions.get(queued.session).state is State.OFFERED
    harness.store.audit.verify()


async def test_a_guest_that_says_no_hello_is_let_go_in_time(harness: Harness) -> None:
    ours, theirs = stream_pair(64 * 1024)
    guest = Peer("user", "guest-1234", "SHA256:guest", False, "127.0.0.1")
    served = asyncio.ensure_future(harness.hub.serve(MessageChannel(theirs), guest))
    channel = MessageChannel(ours)
    for _ in range(3):  # pings keep nothing alive before the hello
        channel.send_nowait(m.Ping())
        await asyncio.wait_for(channel.recv(), 5)
        harness.clock.advance(HELLO_DEADLINE / 3 + 0.01)
    await asyncio.wait_for(served, 5)
    got = []
    with contextlib.suppress(ChannelClosed):
        while True:
            got.append(await asyncio.wait_for(channel.recv(), 5))
    assert any(isinstance(e, m.Error) and e.code == "auth" for e in got)


async def test_the_agent_may_chat_while_the_user_reconnects(harness: Harness) -> None:
    user, agent, session = await harness.live()
    await user.close()
    while not agent.of(m.Away):
        await agent.settle()
    await agent.link.send(m.Chat(session=session, text="I am still here"))
    events = await agent.settle()
    assert not [e for e in events if isinstance(e, m.Error)]
    assert [e.text for e in events if isinstance(e, m.Chat)] == ["I am still here"]


async def test_oversized_values_and_deep_nesting_get_typed_errors(harness: Harness) -> None:
    user, _agent, session = await harness.live()
    raw = user.link.channel
    raw.send_raw(b'{"t":"resize","rid":41,"session":"%s","cols":50000,"rows":30}\n'
                 % session.encode())
    raw.send_raw(b'{"t":"chat","rid":42,"session":"s","text":' + b"[" * 5000
                 + b"]" * 5000 + b"}\n")
    await user.settle()
    errors = {(e.rid, e.code) for e in user.of(m.Error)}
    assert errors == {(41, "invalid"), (42, "too-deep")}
    pong = await user.request(m.Ping(sent=1.0), m.Pong)
    assert isinstance(pong, m.Pong)
    assert harness.hub.live[session].size == (100, 30)


async def test_keystrokes_are_audited_in_batches_that_never_lag_a_revoke(
        harness: Harness) -> None:
    user, agent, session = await harness.live()
    await agent.request(m.Verify(session=session, method="key"))
    await user.link.send(m.GrantAnswer(session=session, scope="control", allowed=True,
                                       grant="g1"))
    await agent.settle()
    for key in b"hello":
        await agent.link.send(m.Keys(session=session, grant="g1", data=bytes([key])))
    await agent.settle()  # the hub has handled them: they are on their way to the user
    assert len([e for e in await user.settle() if isinstance(e, m.Keys)]) == 5
    actions = [r.action for r in harness.store.audit.records(session)]
    assert "keys" not in actions, "a batch is written when its second is up"
    harness.tick(1.0)
    (batch,) = [r for r in harness.store.audit.records(session) if r.action == "keys"]
    assert batch.data["bytes"] == 5 and batch.data["messages"] == 5
    await agent.link.send(m.Keys(session=session, grant="g1", data=b"x"))
    await agent.settle()
    await user.link.send(m.Revoke(session=session))
    await agent.settle()
    tail = [r.action for r in harness.store.audit.records(session)][-2:]
    assert tail == ["keys", "revoke"], "typing under a grant is in the chain before its end"


async def test_a_view_behind_a_busy_client_keeps_only_its_latest_state() -> None:
    hub_end, client_end = stream_pair(capacity=4096)
    out = connection.Outbox(MessageChannel(hub_end), lambda: None, lambda session: None)
    for _ in range(3):  # past the transport's high-water mark: the outbox queues now
        out.control(encode(m.Output(session="s", data=b"x" * 30_000)))
    assert out.queued > 0
    queued = out.queued
    for n in range(50):
        out.view("wallboard", encode(m.Wallboard(queue_length=n, longest_wait=None,
                                                 answered_within=0, settled=0,
                                                 agents_available=0, target=15, now=0)))
    assert out.queued - queued < 300, "fifty boards cost one"
    reader = MessageChannel(client_end)
    got = [await asyncio.wait_for(reader.recv(), 5) for _ in range(4)]
    assert [type(g).__name__ for g in got] == ["Output", "Output", "Output", "Wallboard"]
    assert isinstance(got[3], m.Wallboard) and got[3].queue_length == 49
    out.close()


async def test_stream_frames_past_their_bound_are_dropped_not_queued() -> None:
    hub_end, _ = stream_pair(capacity=1024)  # a viewer that never reads
    resynced: list[str] = []
    out = connection.Outbox(MessageChannel(hub_end), lambda: None, resynced.append)
    frame = encode(m.Output(session="s1", data=b"z" * 30_000))
    kept = sum(out.stream("s1", frame) for _ in range(100))
    assert kept * len(frame) <= connection.STREAM_LIMIT + len(frame) + connection.WRITE_HIGH
    assert out.queued <= connection.STREAM_LIMIT and out.dropped > 0
    assert "s1" in out.lagging and resynced == []
    out.close()


async def test_a_long_queue_reaches_a_new_agent_a_window_at_a_time(harness: Harness) -> None:
    from assist.core.queue import Waiting

    hub = harness.hub
    for i in range(3000):  # ~3 MB of pages: more than an outbox may hold for a client
        hub.queue.add(Waiting(f"s{i:05d}", f"user{i}", "t" * 900, 1000.0 + i))
        hub.views.touch(f"s{i:05d}")
    harness.tick()
    agent = await harness.connect("agent", "carol", capacity=16 * 1024)
    hub_side = hub.agents["carol"].clients[0]
    assert hub_side.outbox.queued <= views.PAGE_WINDOW + 200_000
    # The queue moves while the agent is still reading its pages.
    hub.queue.add(Waiting("late", "latecomer", "joined meanwhile", 9999.0))
    hub.views.touch("late")
    hub.queue.remove("s00000")
    hub.views.touch("s00000")
    harness.tick()
    mirror = QueueMirror()
    while len(mirror) != 3000 or "late" not in mirror:
        for event in await agent.settle():
            mirror.apply(event)
        agent.events.clear()
    assert not hub_side.closed, "a long queue is not a reason to cut an agent off"
    entries = mirror.entries()
    assert entries[0].session == "s00001" and entries[-1].session == "late"


async def test_one_request_for_a_picture_at_a_time(harness: Harness) -> None:
    user, agent, session = await harness.live()
    await user.settle()
    asked = len(user.of(m.Resync))
    for _ in range(20):  # a script asking for pictures as fast as it may
        await agent.request(m.Resync(session=session))
    assert len((await user.settle()) and user.of(m.Resync)) == asked
    await user.link.send(m.Snapshot(session=session, cols=100, rows=30, data=b"$ "))
    await agent.request(m.Resync(session=session))
    await user.settle()
    assert len(user.of(m.Resync)) == asked + 1, "once the picture came, the next goes out"


async def test_a_picture_bigger_than_the_stream_bound_still_reaches_the_viewer(
        harness: Harness) -> None:
    user, agent, session = await harness.live()
    picture = b"p" * (connection.STREAM_LIMIT // 2 + 200_000)  # > the bound once encoded
    await user.link.send(m.Snapshot(session=session, cols=100, rows=30, data=picture))
    await user.settle()
    snapshots = [e for e in await agent.settle() if isinstance(e, m.Snapshot)]
    assert snapshots and snapshots[-1].data == picture


async def test_control_characters_never_reach_the_queue(harness: Harness) -> None:
    user = await harness.connect("user", "alice")
    hostile = "printer \x1b]52;c;ZWNobyBoaQ==\x07 jam\x00\x9b2J" + "\x01" * 500
    queued = await user.request(m.Join(topic=hostile), m.Queued)
    assert isinstance(queued, m.Queued)
    (entry,) = list(harness.hub.queue)
    assert entry.topic.isprintable() and "\x1b" not in entry.topic
    assert entry.topic.startswith("printer ]52;c;ZWNobyBoaQ== jam")


async def test_a_session_whose_holding_connection_goes_waits_then_requeues(
        harness: Harness) -> None:
    user, accepting, _session = await harness.live()
    console = await harness.connect("agent", "carol")  # the same agent, another window
    await accepting.close()
    away = [e for e in await user.settle() if isinstance(e, m.Away)]
    assert away and away[-1].who == "agent", "the user is told at once"
    harness.tick(AGENT_GRACE)
    assert isinstance((await user.settle())[-1], m.AgentLost)
    told = [e for e in await console.settle() if isinstance(e, m.Ended)]
    assert told and told[-1].reason == "requeued", "the agent hears it where it still is"
    await console.request(m.SetStatus(status="available"))  # free again, not stuck busy


async def test_another_window_of_the_agent_can_take_the_session_back(
        harness: Harness) -> None:
    user, accepting, session = await harness.live()
    console = await harness.connect("agent", "carol")
    await accepting.close()
    await user.settle()
    await console.request(m.Resync(session=session))
    started = [e for e in await console.settle() if isinstance(e, m.Started)]
    assert started and started[-1].resumed
    assert any(isinstance(e, m.Back) for e in await user.settle())
    harness.tick(AGENT_GRACE * 2)
    await user.settle()
    assert not user.of(m.AgentLost)


async def test_one_key_may_hold_only_so_many_connections(harness: Harness) -> None:
    from assist.broker import gate

    clients = [await harness.connect("agent", "carol") for _ in range(gate.MAX_PER_KEY)]
    channel, _ = harness.raw("agent", "carol")
    refused = await asyncio.wait_for(channel.recv(), 5)
    assert isinstance(refused, m.Error) and refused.code == "too-many-connections"
    await clients[0].close()
    await harness.connect("agent", "carol")  # one went: one may come


async def test_no_takeover_while_an_agent_picks_the_request_up(harness: Harness) -> None:
    first, queued = await harness.join("alice", key="SHA256:same")
    agent = await harness.connect("agent", "carol")
    await agent.request(m.Accept(session=queued.session))  # offered: the user has not answered
    second = await harness.connect("user", "alice", key="SHA256:same")
    with pytest.raises(BrokerError) as info:
        await second.request(m.Join(topic="again", takeover=True), m.Queued)
    assert info.value.code == "state"
    assert not [e for e in await first.settle() if isinstance(e, m.TakenOver)]
    # The first client still holds the place and answers the offer; its token still works.
    started = await first.request(m.Ready(session=queued.session), m.Started)
    assert isinstance(started, m.Started)


async def test_the_echo_off_flag_is_said_again_after_a_reconnect(harness: Harness) -> None:
    user, agent, session = await harness.live()
    await user.link.send(m.Hidden(session=session, on=True))
    await agent.settle()
    assert harness.hub.live[session].hidden
    token = harness.tokens[session]
    await user.close()
    await agent.settle()
    again = await harness.connect("user", "alice")
    await again.request(m.Join(topic="help", resume=token), m.Started)
    assert not harness.hub.live[session].hidden, "the app says again; until then nothing"
    shown = [e for e in await agent.settle() if isinstance(e, m.Hidden)]
    assert [e.on for e in shown] == [True, False]  # the agent's view knows it ended
    await again.link.send(m.Hidden(session=session, on=True))  # still reading a secret
    await agent.settle()
    # The audit chain has each start with its end: no second start without an end.
    ons = [r.data["on"] for r in harness.store.audit.records()
           if r.action == "hidden-input" and r.session == session]
    assert ons == [True, False, True]


HOSTILE = ["\x1b]52;c;ZWNobyBwd25lZA==\x07", "\x1b]2;owned\x07", "\x1b[2J\x1b[H",
           "\x1bP+q\x1b\\", "\x9b31m", "\u202eevil\u202c", "a\rb\x08c\x00d\x7f"]


@pytest.mark.parametrize("payload", HOSTILE)
async def test_chat_and_labels_reach_the_other_side_as_text(harness: Harness,
                                                            payload: str) -> None:
    user, agent, session = await harness.live()
    await user.link.send(m.Chat(session=session, text=f"see {payload} here"))
    await user.link.send(m.GrantAnswer(session=session, scope="annotate", allowed=True,
                                       grant="g1"))
    await agent.settle()
    await agent.request(m.Annotate(session=session, grant="g1", annotation=m.Annotation(
        id="a1", kind="label", x=0, line=0, text=f"click {payload}")))
    await agent.request(m.End(session=session, root_cause=f"cause {payload}"))
    chat = [e for e in await agent.settle() if isinstance(e, m.Chat)][-1]
    label = [e for e in await user.settle() if isinstance(e, m.Annotate)][-1]
    for text in (chat.text, label.annotation.text,
                 harness.store.sessions.get(session).root_cause):
        assert text.isprintable() and "\x1b" not in text and "\u202e" not in text, repr(text)
