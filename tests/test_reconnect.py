"""The user's request across dropped connections, against the hub over memory channels.

A real :class:`~assist.client.helpflow.HelpRequest` connects through
in-memory stream pairs to a real :class:`~assist.broker.hub.Hub`; the test
drops connections by closing them, and moves the hub's fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assist.client import helpflow
from assist.client.helpflow import HelpRequest, Status
from assist.client.link import Link
from assist.config import ClientConfig
from assist.protocol import messages as m
from assist.transport.memory import MemoryStream
from tests.helpers import until
from tests.test_hub import AGENT_GRACE, USER_GRACE, Client, Harness


class Network:
    """Connections of one user to the hub, which the test can cut."""

    def __init__(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.harness = harness
        self.streams: list[MemoryStream] = []
        self.connects = 0
        self.fail_next_hello = False
        monkeypatch.setattr(helpflow, "open_link", self.open_link)
        monkeypatch.setattr(helpflow, "reconnect", self.reconnect)
        monkeypatch.setattr(helpflow, "backoff", lambda attempt: 0.0)

    def _channel(self) -> object:
        channel, theirs = self.harness.raw("user", "alice", key="SHA256:alice-key")
        self.streams.append(theirs)
        self.connects += 1
        if self.fail_next_hello:
            self.fail_next_hello = False
            theirs.close()  # this connection dies before hello is answered
        return channel

    async def open_link(self, config: ClientConfig, role: str,
                        trust: object = None) -> tuple[Link, ClientConfig]:
        link = Link(self._channel())  # type: ignore[arg-type]
        link.start()
        return link, config

    async def reconnect(self, link: Link, config: ClientConfig, role: str,
                        trust: object = None) -> ClientConfig:
        channel = self._channel()
        await link.close()
        link.rebind(channel)  # type: ignore[arg-type]
        return config

    def cut(self) -> None:
        """The network drops: the connection in use is gone."""
        self.streams[-1].close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    await h.close()


class User:
    """A HelpRequest and what it reported."""

    def __init__(self, tmp_path: Path) -> None:
        self.statuses: list[Status] = []
        self.started: list[str] = []
        self.resumed: list[str] = []

        async def started(client: object, info: m.SessionInfo) -> None:
            self.started.append(info.session)

        self.request = HelpRequest(ClientConfig(state=tmp_path / "state"), "printer",
                                   self.statuses.append, on_started=started,
                                   on_resumed=lambda info: self.resumed.append(info.session))
        self.task = asyncio.ensure_future(self.request.run())

    @property
    def phase(self) -> str:
        return self.request.status.phase

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises((asyncio.CancelledError, Exception)):
            await self.task


async def _live(harness: Harness, user: User) -> tuple[Client, str]:
    await until(lambda: user.phase == "queued", what="queued")
    session = user.request.status.session
    assert session is not None
    agent = await harness.connect("agent", "carol")
    await agent.request(m.Accept(session=session))
    await until(lambda: user.phase == "connected", what="connected")
    return agent, session


async def test_a_connection_that_dies_before_hello_costs_one_retry(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(harness, monkeypatch)
    user = User(tmp_path)
    try:
        await until(lambda: user.phase == "queued", what="queued")
        net.fail_next_hello = True
        net.cut()
        await until(lambda: net.connects >= 3 and user.phase == "queued", what="back in the queue")
        before = net.connects
        await asyncio.sleep(0.2)
        assert net.connects == before, "once back, it stays: no reconnect loop"
        assert user.statuses[-1].message == "welcome back: you kept your place"
        assert len(harness.hub.queue) == 1
    finally:
        await user.stop()


async def test_the_live_session_goes_on_over_a_new_connection(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(harness, monkeypatch)
    user = User(tmp_path)
    try:
        agent, session = await _live(harness, user)
        net.cut()
        await until(lambda: user.resumed == [session], what="resumed")
        assert user.started == [session], "the share is not started twice"
        assert user.request.in_session and user.phase == "connected"
        await agent.settle()
        assert any(isinstance(e, m.Back) and e.who == "user" for e in agent.events)
    finally:
        await user.stop()


async def test_an_agent_gone_while_the_user_was_away_stops_the_session_parts(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(harness, monkeypatch)
    user = User(tmp_path)
    try:
        agent, session = await _live(harness, user)
        await agent.request(m.Handoff(session=session, note="needs a specialist"))
        net.cut()
        await until(lambda: user.phase == "queued" and not user.request.in_session,
                    what="back in the queue, out of the session")
        assert user.request.status.session == session
    finally:
        await user.stop()


async def test_a_session_that_ended_while_the_user_was_away_is_over(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(harness, monkeypatch)
    user = User(tmp_path)
    try:
        agent, session = await _live(harness, user)
        await agent.request(m.End(session=session, root_cause="fixed"))
        # The Ended never reaches the user: its connection is gone first.
        net.streams[-1].close()
        final = await asyncio.wait_for(user.task, 5)
        assert final.phase == "ended" and not user.request.in_session
        assert len(harness.hub.queue) == 0, "no new request in the queue"
    finally:
        if not user.task.done():
            await user.stop()


async def test_a_withdrawn_offer_does_not_end_the_request(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assist.client.user import UserClient

    Network(harness, monkeypatch)
    agent_gone = asyncio.Event()
    real_ready = UserClient.ready

    async def late_ready(self: UserClient, cols: int = 80, rows: int = 24) -> m.SessionInfo:
        await agent_gone.wait()  # the agent drops between the offer and the answer
        return await real_ready(self, cols, rows)

    monkeypatch.setattr(UserClient, "ready", late_ready)
    user = User(tmp_path)
    try:
        await until(lambda: user.phase == "queued", what="queued")
        agent = await harness.connect("agent", "carol")
        await agent.request(m.Accept(session=user.request.status.session))
        await until(lambda: user.phase == "offered", what="offered")
        await agent.close()
        await until(lambda: not harness.hub.live, what="the offer is withdrawn")
        agent_gone.set()
        await until(lambda: user.phase == "queued" and len(harness.hub.queue) == 1,
                    what="back at the front, still asking for help")
        await asyncio.sleep(0.05)
        assert not user.task.done(), "the request goes on"
    finally:
        await user.stop()


def test_the_graces_of_the_harness() -> None:
    assert AGENT_GRACE < USER_GRACE
