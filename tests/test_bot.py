"""The first-line bot against a real broker, with users on the real help flow and ptys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.client import AgentClient
from assist.client.bot import Bot, Outcome, load_flows
from assist.client.guard import Guard
from assist.client.helpflow import HelpRequest, Status
from assist.client.share import TerminalShare
from assist.client.user import UserClient
from assist.config import ClientConfig
from assist.core import metrics
from assist.errors import ConfigError
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.share.pty import PtyProcess
from assist.store import reports
from tests.helpers import KeyPair, link_to, make_key, register, until
from tests.test_trust import SHELL

FLOWS = """
flows:
  - name: clean temp files
    match: "(?i)disk"
    steps:
      - say: "I am the helpdesk bot; I can free disk space for you."
      - verify: key
      - ask: run
      - type: "echo cleaned-$((40+2))\\r"
      - wait: {text: "cleaned-42", timeout: 10}
      - end: {root_cause: "temp files filled the disk", resolved: true}
"""


@dataclass
class User:
    """A user on the real help flow: shell in a pty, guard answering prompts."""

    name: str
    allow: bool
    statuses: list[Status] = field(default_factory=list)
    pty_out: bytearray = field(default_factory=bytearray)
    request: HelpRequest | None = None


@contextlib.asynccontextmanager
async def waiting_user(broker: Broker, key: KeyPair, tmp: Path, topic: str,
                       allow: bool) -> AsyncIterator[User]:
    user = User(key.private.name, allow)
    config = ClientConfig(host="127.0.0.1", port=broker.port, host_key=broker.public_key,
                          key=key.private, file=tmp / f"{user.name}.toml",
                          state=tmp / f"{user.name}-state")
    emulator = Emulator(80, 24)
    parts: dict[str, object] = {}

    def output(data: bytes) -> None:
        user.pty_out.extend(data)
        share = parts.get("share")
        if isinstance(share, TerminalShare):
            share.output(data)
        else:
            emulator.receive(data)

    pty = PtyProcess(SHELL, 80, 24, on_output=output)
    pty.start()

    def ask(msg: m.Msg) -> None:
        guard = parts["guard"]
        assert isinstance(guard, Guard)
        if isinstance(msg, m.AskGrant):
            guard.decide(msg, user.allow)

    async def started(client: UserClient, info: m.SessionInfo) -> None:
        parts["share"] = TerminalShare(client.link.channel, info.session, emulator,
                                       secret=pty.secret_input)
        parts["guard"] = Guard(client.link.channel, info.session,
                               lambda data: pty.write(data, agent=True), pty.secret_input,
                               on_ask=ask, drop=pty.drop_agent_input)

    def event(msg: m.Msg) -> None:
        for part in (parts.get("guard"), parts.get("share")):
            if part is not None and part.handle(msg):  # type: ignore[attr-defined]
                return

    def status(s: Status) -> None:
        user.statuses.append(s)
        if s.phase != "connected":
            parts.pop("share", None)
            parts.pop("guard", None)

    user.request = HelpRequest(config, topic, status, on_started=started, size=(80, 24),
                               on_event=event)
    task = asyncio.ensure_future(user.request.run())
    try:
        yield user
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await user.request.close()
        pty.terminate()


def test_flows_need_a_match(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text("flows:\n  - name: x\n    steps:\n      - say: hi\n")
    with pytest.raises(ConfigError, match="needs `match`"):
        load_flows(path)
    path.write_text("nothing: here\n")
    with pytest.raises(ConfigError, match="expected `flows:`"):
        load_flows(path)


async def test_bot_serves_matching_topics_and_hands_off_the_rest(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(FLOWS)
    outcomes: list[Outcome] = []

    async def connect(watch: bool) -> AgentClient:
        client = AgentClient(await link_to(broker, "agent", keys["dave"]))
        await client.hello(client="assist bot", watch=watch)
        return client

    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        printer = await stack.enter_async_context(
            waiting_user(broker, keys["bob"], tmp_path, "printer jammed", allow=True))
        await until(lambda: any(s.phase == "queued" for s in printer.statuses))
        bot = asyncio.ensure_future(Bot(connect, load_flows(flows_file), outcomes.append,
                                        timeout=10).run(stop))
        alice = await stack.enter_async_context(
            waiting_user(broker, keys["alice"], tmp_path, "disk full", allow=True))
        await until(lambda: len(outcomes) == 1)
        assert outcomes[0].handled and outcomes[0].user == "alice"
        assert b"cleaned-42" in alice.pty_out
        await until(lambda: alice.statuses[-1].phase == "ended")
        # The printer user was never taken: not the bot's topic.
        assert printer.statuses[-1].phase == "queued"

        # A user who declines is handed to the humans, at the front of the queue.
        erin_key = make_key(tmp_path / "keys", "erin")
        register(broker, "user", "erin", erin_key)
        erin = await stack.enter_async_context(
            waiting_user(broker, erin_key, tmp_path, "disk is slow", allow=False))
        await until(lambda: len(outcomes) == 2)
        assert not outcomes[1].handled and "declined run" in outcomes[1].reason
        await until(lambda: "handed you on" in erin.statuses[-1].message)
        assert broker.hub is not None
        head = next(iter(broker.hub.queue))
        assert head.user == "erin" and head.requeued and "clean temp files" in head.note
        stop.set()
        await asyncio.wait_for(bot, 10)
    # The report counts what the bot resolved without referral.
    assert broker.store is not None
    data = reports.load(broker.store.db, 0, 4e9)
    automated = metrics.automation(data.sessions, ("dave",))
    assert automated is not None
    assert (automated.hits, automated.total) == (1, 2)
