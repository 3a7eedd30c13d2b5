"""The first-line bot against a real broker, with users on the real help flow and ptys."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.client import AgentClient
from assist.client.bot import Bot, Outcome, load_flows
from assist.core import metrics
from assist.errors import ConfigError
from assist.store import reports
from tests.helpers import KeyPair, link_to, make_key, register, until
from tests.user_side import waiting_user

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
            waiting_user(broker, keys["bob"], "printer jammed", allow=True))
        await until(lambda: any(s.phase == "queued" for s in printer.statuses))
        bot = asyncio.ensure_future(Bot(connect, load_flows(flows_file), outcomes.append,
                                        timeout=10).run(stop))
        alice = await stack.enter_async_context(
            waiting_user(broker, keys["alice"], "disk full", allow=True))
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
            waiting_user(broker, erin_key, "disk is slow", allow=False))
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
