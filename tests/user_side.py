"""The user's side for tests: a real :class:`UserSession` with a real shell, a real broker.

:func:`waiting_user` puts a user in the queue the way ``assist help`` does
(the help flow, a shell in a pty, the share and the guard once an agent
comes); :func:`live_session` adds carol, who takes that user: a live
session. Both record what the session reported, for the tests to wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assist.broker.server import Broker
from assist.client.agent import AgentClient
from assist.client.call import AgentCall
from assist.client.desktop import DesktopRequest
from assist.client.guard import Guard
from assist.client.helpflow import Status
from assist.client.share import TerminalShare, TerminalViewer
from assist.client.user_events import (
    CodeAsked,
    GrantAsked,
    Marked,
    StatusChanged,
    UserEvent,
)
from assist.client.user_session import UserSession
from assist.config import ClientConfig
from assist.protocol import messages as m
from assist.share.pty import PtyProcess
from tests.helpers import KeyPair, agent_client, until

COLS, ROWS = 80, 24
SHELL = ["env", "PS1=$ ", "HISTFILE=/dev/null", "bash", "--norc", "--noprofile"]


LOOPBACK_ONLY = ("127.0.0.1",)
"""Media stays on loopback (DESIGN.md: no test traffic to any other address)."""


def user_config(broker: Broker, key: KeyPair, directory: Path,
                redact: tuple[str, ...] = (), also: tuple[Broker, ...] = (),
                voice: bool = False) -> ClientConfig:
    """A client config for ``key`` against the test broker, its files in ``directory``;
    ``also``: more nodes of the same helpdesk, to fail over to; ``voice``: make the
    call (no sound device either way)."""
    brokers = tuple(f"127.0.0.1:{b.port}" for b in (broker, *also)) if also else ()
    return ClientConfig(host="127.0.0.1", port=broker.port, host_key=broker.public_key,
                        voice=voice, audio=(), key=key.private, file=directory / "client.toml",
                        state=directory / "state", redact=redact, media_hosts=LOOPBACK_ONLY,
                        brokers=brokers)


@dataclass
class User:
    """A user on the real help flow, and everything their session reported.

    ``allow`` answers every permission question at once (``None``: the test
    answers, from :attr:`asks`).
    """

    name: str
    allow: bool | None = None
    session: UserSession | None = None
    runner: asyncio.Task[Status] | None = None
    """``session.run()``: its result is the final status."""
    events: list[UserEvent] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    asks: list[m.Msg] = field(default_factory=list)
    annotations: list[m.Msg] = field(default_factory=list)
    pty_out: bytearray = field(default_factory=bytearray)
    faces: list[Any] = field(default_factory=list)
    """Pictures of the agent's camera (with ``voice``: the session shows a face)."""

    def record(self, event: UserEvent) -> None:
        self.events.append(event)
        if isinstance(event, StatusChanged):
            self.statuses.append(event.status)
        elif isinstance(event, GrantAsked):
            if self.allow is None:
                self.asks.append(event.ask)
            else:
                assert self.session is not None
                self.session.answer(event.ask, self.allow)
        elif isinstance(event, CodeAsked):
            self.asks.append(event.ask)
        elif isinstance(event, Marked):
            self.annotations.append(event.mark)

    @property
    def user_session(self) -> UserSession:
        assert self.session is not None
        return self.session

    async def wait_pty(self, text: bytes, timeout: float = 5) -> None:
        await until(lambda: text in self.pty_out, timeout, what=f"{text!r} in the shell")


@contextlib.asynccontextmanager
async def waiting_user(broker: Broker, key: KeyPair, topic: str,
                       argv: list[str] | None = SHELL, redact: tuple[str, ...] = (),
                       allow: bool | None = None, desktop: DesktopRequest | None = None,
                       also: tuple[Broker, ...] = (), voice: bool = False,
                       voice_file: Path | None = None) -> AsyncIterator[User]:
    """A user asking for help about ``topic``, as ``assist help`` does; closed on exit.

    ``argv`` ``None`` shares no shell (``assist help --no-tui``); ``voice`` makes
    the call, ``voice_file`` standing in for the user's microphone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        user = User(key.private.name, allow)
        config = dataclasses.replace(user_config(broker, key, Path(tmp), redact, also, voice),
                                     voice_file=voice_file)
        session = UserSession(config, topic,
                              user.record,
                              command=argv, size=(COLS, ROWS), desktop=desktop,
                              on_output=user.pty_out.extend)
        user.session = session
        if voice:
            session.on_face = user.faces.append  # as the panel does
        session.start()
        user.runner = runner = asyncio.ensure_future(session.run())
        try:
            yield user
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            await session.close()


@dataclass
class Live:
    """A live session: alice's real shell shared with carol's client."""

    user: User
    carol: AgentClient
    session: str
    viewer: TerminalViewer
    agent_events: list[m.Msg] = field(default_factory=list)
    call: AgentCall | None = None
    """carol's side of the call (with ``call=`` options)."""
    info: m.SessionInfo | None = None

    @property
    def pty(self) -> PtyProcess:
        pty = self.user.user_session.pty
        assert pty is not None
        return pty

    @property
    def guard(self) -> Guard:
        guard = self.user.user_session.guard
        assert guard is not None, "the session is over"
        return guard

    @property
    def share(self) -> TerminalShare:
        share = self.user.user_session.share
        assert share is not None, "the session is over"
        return share

    @property
    def pty_out(self) -> bytearray:
        return self.user.pty_out

    @property
    def asks(self) -> list[m.Msg]:
        return self.user.asks

    @property
    def annotations(self) -> list[m.Msg]:
        return self.user.annotations

    async def wait_pty(self, text: bytes, timeout: float = 5) -> None:
        await self.user.wait_pty(text, timeout)

    async def agent_event(self, kind: type[m.Msg], timeout: float = 5) -> m.Msg:
        found: list[m.Msg] = []

        def arrived() -> bool:
            found[:] = [e for e in self.agent_events if isinstance(e, kind)][:1]
            return bool(found)

        await until(arrived, timeout, what=f"{kind.__name__} for the agent")
        self.agent_events.remove(found[0])
        return found[0]

    async def ask(self, scope: m.Scope, seconds: float = 0.0) -> m.AskGrant:
        self.asks.clear()
        await self.carol.ask_grant(self.session, scope, seconds)
        await until(lambda: self.asks, 5, what=f"the user asked for {scope}")
        ask = self.asks.pop()
        assert isinstance(ask, m.AskGrant)
        return ask

    async def grant(self, scope: m.Scope, seconds: float = 0.0) -> str:
        grant_id = self.user.user_session.answer(await self.ask(scope, seconds), True)
        answer = await self.agent_event(m.GrantAnswer)
        assert isinstance(answer, m.GrantAnswer) and answer.grant == grant_id
        return grant_id

    async def verify_by_key(self) -> None:
        await self.carol.verify(self.session, "key")
        verified = await self.agent_event(m.Verified)
        assert isinstance(verified, m.Verified) and verified.ok
        await until(lambda: self.guard.verified, 5, what="the user's side to see it")


@contextlib.asynccontextmanager
async def live_session(broker: Broker, keys: dict[str, KeyPair],
                       argv: list[str] | None = SHELL, redact: tuple[str, ...] = (),
                       desktop: DesktopRequest | None = None,
                       agent_at: Broker | None = None, call: dict[str, Any] | None = None,
                       voice_file: Path | None = None, voice: bool = False
                       ) -> AsyncIterator[Live]:
    """alice asks for help on the real help flow and carol takes her: a live session.

    ``agent_at``: the node carol connects to, if not alice's (a helpdesk of several).
    ``call``: alice's side makes the call and carol answers it with an
    :class:`AgentCall` made with these options (no sound device); ``voice``
    without ``call``: alice calls, and carol's call signals go to
    :attr:`Live.agent_events` for the test to answer; ``voice_file``: alice's
    microphone.
    """
    also = (agent_at,) if agent_at is not None else ()
    async with waiting_user(broker, keys["alice"], "trust", argv, redact,
                            desktop=desktop, also=also, voice=voice or call is not None,
                            voice_file=voice_file) as user:
        await until(lambda: user.statuses and user.statuses[-1].phase == "queued",
                    what="alice in the queue")
        carol = await agent_client(agent_at or broker, keys["carol"])
        if agent_at is not None:  # alice's place reaches carol's node through the bus
            hub = agent_at.hub
            await until(lambda: hub is not None and hub.queue.head(True) is not None,
                        what="alice in the queue of carol's node")
        info = await carol.accept()
        await until(lambda: user.user_session.in_session, what="the share and the guard")
        live = Live(user, carol, info.session, TerminalViewer(info.session, COLS, ROWS),
                    info=info)
        if call is not None:
            live.call = AgentCall(carol.link, info, LOOPBACK_ONLY, audio=(), **call)

        async def pump_agent() -> None:
            async for event in carol.events():
                if isinstance(event, m.Signal) and event.line == "call" and live.call:
                    await live.call.handle(event)
                elif not live.viewer.handle(event):
                    live.agent_events.append(event)

        async def parse_view() -> None:
            # What the console's view does: keep the agent's screen model current.
            while True:
                live.viewer.emulator.process()
                await asyncio.sleep(0.05)

        tasks = [asyncio.ensure_future(t()) for t in (pump_agent, parse_view)]
        try:
            yield live
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if live.call is not None:
                await live.call.stop()
            await carol.link.close()
