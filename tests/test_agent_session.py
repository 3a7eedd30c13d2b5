"""The agent's side of one live session, against a real broker and real messages.

The user's side is played by alice's real :class:`UserClient` sending what
her app would (grant answers, revokes, hidden input, screen output); the
agent's :class:`AgentSession` is fed the events of carol's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.client.agent import AgentClient
from assist.client.agent_session import AgentSession, Change
from assist.client.user import UserClient
from assist.config import ClientConfig
from assist.core.grants import GrantRefused
from assist.protocol import messages as m
from tests.helpers import KeyPair, broker_config, register, started_session, user_client


@dataclass
class Followed:
    """An agent session and the changes its connection's events made."""

    live: AgentSession
    alice: UserClient
    changes: list[tuple[m.Msg, Change]] = field(default_factory=list)

    async def follow(self) -> None:
        async for msg in self.live.agent.events():
            change = self.live.handle(msg)
            if change is not None:
                self.changes.append((msg, change))

    async def user_gets(self, kind: type[m.Msg], timeout: float = 5) -> m.Msg:
        """The next message of ``kind`` alice's app receives."""
        return await self.alice.link.wait_for(lambda msg: isinstance(msg, kind), timeout)

    async def answer(self, scope: m.Scope, grant: str, seconds: float = 0.0,
                     allowed: bool = True) -> None:
        """alice's app answers an ask of ``scope`` (the user said yes or no)."""
        expires = time.time() + seconds if seconds else None
        await self.alice.link.send(m.GrantAnswer(session=self.live.id, scope=scope,
                                                 allowed=allowed, grant=grant,
                                                 expires_at=expires))

    async def until(self, predicate: Callable[[], object]) -> None:
        """Wait (a few seconds at most) until the session's events make it true."""
        await asyncio.wait_for(self.live.until(predicate), 5)

    def change_of(self, kind: type[m.Msg]) -> Change:
        return next(c for msg, c in reversed(self.changes) if isinstance(msg, kind))


@contextlib.asynccontextmanager
async def followed(broker: Broker, keys: dict[str, KeyPair]) -> AsyncIterator[Followed]:
    """A live session of alice and carol, carol's side joined as an AgentSession."""
    alice, carol, session = await started_session(broker, keys, "agent session")
    state = Followed(AgentSession.joining(carol, session), alice)
    pump = asyncio.ensure_future(state.follow())
    try:
        await state.live.resync()
        await state.until(lambda: state.live.info is not None)
        yield state
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await alice.link.close()
        await carol.close()


async def nothing_reaches_the_user(state: Followed, kind: type[m.Msg]) -> None:
    with pytest.raises(Exception, match="nothing happened"):
        await state.user_gets(kind, timeout=0.3)


async def test_joining_learns_the_session_from_the_broker(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        assert live.info is not None and live.info.user == "alice" and live.user == "alice"
        assert not live.verified and live.grants == {} and not live.hidden
        resumed = state.change_of(m.Started)
        assert resumed.resumed and resumed.trust


async def test_verification_gates_control_asks(broker: Broker,
                                               keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        with pytest.raises(GrantRefused, match="verify the user's identity first") as refused:
            await live.ask("control", 60)
        assert refused.value.reason == "not-verified" and live.pending == set()
        await nothing_reaches_the_user(state, m.AskGrant)
        # Drawing is no action on the machine: it may be asked before verification.
        asked = asyncio.ensure_future(state.user_gets(m.AskGrant))
        await live.ask("annotate")
        assert live.pending == {"annotate"}
        assert isinstance(await asked, m.AskGrant)

        await live.verify("key")
        await state.until(lambda: live.verifying is None)
        assert live.verified and live.verification is not None and live.verification.ok
        asked = asyncio.ensure_future(state.user_gets(m.AskGrant))
        await live.ask("control", 60)
        ask = await asked
        assert isinstance(ask, m.AskGrant) and ask.scope == "control" and ask.seconds == 60


async def test_grants_by_scope_with_expiry(broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        await live.ask("annotate")
        await state.answer("annotate", "g-annotate")
        await state.answer("control", "g-control", seconds=0.6)
        await state.until(lambda: len(live.grants) == 2)
        assert live.pending == set() and live.answers["annotate"].allowed
        assert state.change_of(m.GrantAnswer).granted == "control"
        assert live.holds("control") and live.grant_for(("run", "control")) is not None

        # Past its time the grant is no use even before anyone retires it ...
        assert live.grant_for(("control",), now=time.time() + 1) is None
        await asyncio.sleep(0.7)
        # ... and the one method every front end ticks says which ran out, once.
        assert live.expire() == ["control"]
        assert live.expire() == []
        assert not live.holds("control") and live.holds("annotate")


async def test_a_declined_ask_is_an_answer_and_no_grant(broker: Broker,
                                                       keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        await live.ask("annotate")
        await state.answer("annotate", "", allowed=False)
        await state.until(lambda: not live.pending)
        assert not live.answers["annotate"].allowed and not live.holds("annotate")
        assert state.change_of(m.GrantAnswer).declined == "annotate"


async def test_typing_and_marks_are_refused_locally_without_a_grant(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        with pytest.raises(GrantRefused, match="typing needs the user's control or run"):
            await live.type_keys(b"rm -rf /tmp/x\r")
        with pytest.raises(GrantRefused, match="marks need the user's annotate"):
            await live.annotate("box", (0, 0), (5, 1))
        await nothing_reaches_the_user(state, m.Keys)
        assert live.marks == {}

        await live.verify("key")
        await state.until(lambda: live.verified)
        await state.answer("run", "g-run")
        await state.until(lambda: live.holds("run"))
        # A console types under control only; a runbook's run grant is not that.
        with pytest.raises(GrantRefused, match="control permission"):
            await live.type_keys(b"ls\r", under=("control",))
        keys_sent = asyncio.ensure_future(state.user_gets(m.Keys))
        await live.type_keys(b"ls\r")
        sent = await keys_sent
        assert isinstance(sent, m.Keys) and sent.grant == "g-run" and sent.data == b"ls\r"


async def test_marks_carry_ids_and_the_user_may_clear_them(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        await state.answer("annotate", "g-annotate")
        await state.until(lambda: live.holds("annotate"))
        drawn = asyncio.ensure_future(state.user_gets(m.Annotate))
        first = await live.annotate("label", (2, 1), text="here")
        second = await live.annotate("arrow", (4, 3), (9, 3), surface="terminal")
        arrived = await drawn
        assert isinstance(arrived, m.Annotate) and arrived.annotation == first
        assert (first.id, second.id) == ("m1", "m2") and set(live.marks) == {"m1", "m2"}
        assert (first.x2, first.line2) == (2, 1)  # a mark without an end is a point

        await state.alice.link.send(m.ClearAnnotations(session=live.id, ids=("m1",)))
        await state.until(lambda: "m1" not in live.marks)
        assert state.change_of(m.ClearAnnotations).cleared == ("m1",)
        cleared = asyncio.ensure_future(state.user_gets(m.ClearAnnotations))
        await live.clear_marks()
        assert live.marks == {}
        assert isinstance(await cleared, m.ClearAnnotations)


async def test_a_revoke_clears_what_the_agent_may_do(broker: Broker,
                                                     keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        await live.verify("key")
        await state.answer("control", "g-control")
        await state.answer("annotate", "g-annotate")
        await state.until(lambda: len(live.grants) == 2)

        # One grant by id, then all of them.
        await state.alice.link.send(m.Revoke(session=live.id, grants=("g-annotate",)))
        await state.until(lambda: not live.holds("annotate"))
        assert state.change_of(m.Revoke).lost == ("annotate",) and live.holds("control")
        await state.alice.link.send(m.Revoke(session=live.id))
        await state.until(lambda: not live.grants)
        assert state.change_of(m.Revoke).lost == ("control",)
        with pytest.raises(GrantRefused):
            await live.type_keys(b"ls\r")
        with pytest.raises(GrantRefused):
            await live.annotate("box", (0, 0))


async def test_keys_refused_for_a_gone_grant_drop_it(broker: Broker,
                                                    keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        await state.answer("control", "g-control")
        await state.until(lambda: live.holds("control"))
        # The user's machine refuses a secret prompt: the grant still holds.
        await state.alice.link.send(m.KeysRefused(session=live.id, grant="g-control",
                                                  reason="secret-input"))
        await state.until(lambda: state.changes and isinstance(state.changes[-1][0],
                                                                m.KeysRefused))
        assert live.holds("control") and state.change_of(m.KeysRefused).lost == ()
        # ... it refuses a revoked grant: the agent no longer holds it either.
        await state.alice.link.send(m.KeysRefused(session=live.id, grant="g-control",
                                                  reason="revoked"))
        await state.until(lambda: not live.holds("control"))
        assert state.change_of(m.KeysRefused).lost == ("control",)


async def test_screen_hidden_input_and_the_end(broker: Broker,
                                              keys: dict[str, KeyPair]) -> None:
    async with followed(broker, keys) as state:
        live = state.live
        await state.alice.link.send(m.Output(session=live.id, data=b"df -h\r\n/dev/sda1 99%"))

        def shown() -> bool:
            live.viewer.emulator.feed(b"")  # the viewer only takes bytes; a front end parses
            return any("sda1 99%" in line for line in live.viewer.emulator.text())

        await state.until(shown)
        assert state.change_of(m.Output).screen
        await state.alice.link.send(m.Hidden(session=live.id, on=True))
        await state.until(lambda: live.hidden)
        assert state.change_of(m.Hidden).trust
        await live.end("disk full")
        await state.until(lambda: live.ended)
        assert state.change_of(m.Ended).ended and live.grants == {}


@pytest.fixture
async def patient_broker(tmp_path: Path, keys: dict[str, KeyPair]) -> AsyncIterator[Broker]:
    """A broker that waits long enough for a dropped agent to reconnect."""
    server = Broker(broker_config(tmp_path / "patient", agent_grace=10.0))
    await server.start()
    register(server, "user", "alice", keys["alice"])
    register(server, "agent", "carol", keys["carol"])
    yield server
    await server.stop()


async def test_reconnect_restores_the_session_and_its_grants(
        patient_broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    broker = patient_broker
    config = ClientConfig(host="127.0.0.1", port=broker.port, host_key=broker.public_key,
                          voice=False, audio=(),
                          key=keys["carol"].private, file=tmp_path / "carol.toml",
                          state=tmp_path / "state")
    alice = await user_client(broker, keys["alice"])
    await alice.join("reconnect")
    carol = await AgentClient.connect(config, "test console")
    assert carol.welcome is not None and carol.welcome.name == "carol"
    offered = asyncio.ensure_future(alice.link.wait_for(lambda x: isinstance(x, m.Offered), 5))
    accepting = asyncio.ensure_future(carol.accept())
    await offered
    await alice.ready()
    state = Followed(AgentSession(carol, await accepting), alice)
    live = state.live
    pump = asyncio.ensure_future(state.follow())
    try:
        await live.verify("key")
        await state.until(lambda: live.verified)
        asked = asyncio.ensure_future(state.user_gets(m.AskGrant))
        await live.ask("control", 300)
        assert isinstance(await asked, m.AskGrant)
        await state.answer("control", "g-control", seconds=300)
        await state.until(lambda: live.holds("control"))
        answered = live.answers["control"]

        carol.link.channel.close()  # the network drops
        await asyncio.wait_for(pump, 5)
        state.changes.clear()
        pump = asyncio.ensure_future(state.follow())
        welcome = await carol.reconnect()
        assert welcome.name == "carol"
        await state.until(lambda: live.holds("control"))
        assert state.change_of(m.Started).resumed
        restored = live.grants["control"]
        assert restored.restored and restored.grant == "g-control"
        assert live.verified and live.answers["control"] is answered  # no new answer
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await carol.close()
        await alice.link.close()
