"""Runbooks: parsing, and runs against a real broker and a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.client.agent import AgentClient
from assist.client.runbook import RunbookRunner, load_runbook, parse_runbook
from assist.errors import ConfigError
from assist.protocol import messages as m
from tests.helpers import KeyPair, link_to
from tests.user_side import Live, live_session

BOOK = {
    "name": "print check",
    "steps": [
        {"say": "Hello, I will check your printer queue."},
        {"verify": "key"},
        {"ask": {"scope": "run", "seconds": 120}},
        {"type": "echo queue-$((40+2))\r"},
        {"wait": {"text": r"queue-4\d", "timeout": 10}},
        {"collect": {"name": "queue", "lines": 2}},
        {"annotate": {"kind": "label", "x": 0, "row": 0, "text": "done"}},
        {"end": {"root_cause": "printer queue stuck", "resolved": True}},
    ],
}


def test_parse_errors_name_the_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="step 2: unknown step 'dance'"):
        parse_runbook({"name": "x", "steps": [{"say": "hi"}, {"dance": 1}]}, "book")
    with pytest.raises(ConfigError, match="ask needs a scope"):
        parse_runbook({"name": "x", "steps": [{"ask": "everything"}]}, "book")
    with pytest.raises(ConfigError, match="not a valid pattern"):
        parse_runbook({"name": "x", "steps": [{"wait": "(unclosed"}]}, "book")
    with pytest.raises(ConfigError, match="`timeout` must be a number"):
        parse_runbook({"name": "x", "steps": [{"wait": {"text": "ok", "timeout": "5m"}}]},
                      "book")
    with pytest.raises(ConfigError, match="`seconds` must be a number"):
        parse_runbook({"name": "x", "steps": [{"sleep": float("nan")}]}, "book")
    with pytest.raises(ConfigError, match="`seconds` must be a number"):
        parse_runbook({"name": "x", "steps": [{"sleep": float("inf")}]}, "book")
    with pytest.raises(ConfigError, match="`ttl` must be a number"):
        parse_runbook({"name": "x", "steps": [{"annotate": {"x": 1, "row": 1, "ttl": -1}}]},
                      "book")
    with pytest.raises(ConfigError, match="needs a `name`"):
        parse_runbook({"steps": []}, "book")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_runbook(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_runbook(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text('name: vpn\nmatch: "(?i)vpn"\nsteps:\n  - say: hi\n  - type: "ls\\r"\n')
    book = load_runbook(good)
    assert book.matches("VPN is down") and not book.matches("printer")
    assert book.steps[1].args["text"] == "ls\r"
    assert book.steps[1].describe() == "type `ls⏎`"


async def scripted_agent(broker: Broker, keys: dict[str, KeyPair]) -> AgentClient:
    """A second connection of carol's, as `assist agent run` opens one."""
    agent = AgentClient(await link_to(broker, "agent", keys["carol"]))
    await agent.hello(client="assist agent run")
    return agent


@contextlib.asynccontextmanager
async def answering(live: Live, allow: bool,
                    before: dict[str, bytes] | None = None) -> AsyncIterator[None]:
    """Play the user while inside: answer every permission prompt; note in ``before``
    what the pty had when each scope was first asked."""
    seen = {} if before is None else before

    async def answer() -> None:
        while True:
            while not live.asks:
                await asyncio.sleep(0.02)
            ask = live.asks.pop(0)
            if isinstance(ask, m.AskGrant):
                seen.setdefault(ask.scope, bytes(live.pty_out))
                live.guard.decide(ask, allow)

    task = asyncio.ensure_future(answer())
    try:
        yield
    finally:
        task.cancel()


async def test_runbook_types_only_after_the_grant(broker: Broker,
                                                  keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        agent = await scripted_agent(broker, keys)
        steps: list[str] = []
        book = parse_runbook({**BOOK, "steps": [*BOOK["steps"][:2], {"ask": "annotate"},
                                                *BOOK["steps"][2:]]}, "book")
        runner = RunbookRunner(agent, live.session, book,
                               on_step=lambda i, s: steps.append(s.kind))
        async with answering(live, allow=True):
            result = await asyncio.wait_for(runner.run(), 30)
        assert result.ok, result.reason
        assert result.ended and result.done == len(book.steps)
        assert any("queue-42" in line for line in result.collected["queue"])
        assert steps[:3] == ["say", "verify", "ask"]
        await agent.link.close()
    assert broker.store is not None
    stored = broker.store.sessions.get(live.session)
    assert stored.root_cause == "printer queue stuck" and stored.resolved
    chat = [e[3]["text"] for e in broker.store.sessions.events(live.session) if e[1] == "chat"]
    assert chat[0] == "Hello, I will check your printer queue."
    assert any("step 5/9: type `echo queue-$((40+2))⏎`" in line for line in chat)
    # The annotation (placed by screen row) arrived anchored on the user's side.
    assert any(isinstance(a, m.Annotate) and a.annotation.text == "done"
               for a in live.annotations)


async def test_runbook_stops_when_the_user_declines(broker: Broker,
                                                    keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        agent = await scripted_agent(broker, keys)
        async with answering(live, allow=False):
            result = await asyncio.wait_for(
                RunbookRunner(agent, live.session, parse_runbook(BOOK, "book")).run(), 30)
        assert not result.ok and result.failed == "step 3 (ask)"
        assert "declined run" in result.reason
        await asyncio.sleep(0.3)
        assert b"queue-42" not in live.pty_out
        await agent.link.close()


async def test_runbook_stops_at_once_on_revoke(broker: Broker,
                                               keys: dict[str, KeyPair]) -> None:
    book = parse_runbook({"name": "slow", "steps": [
        {"verify": "key"},
        {"ask": "run"},
        {"type": "echo one-$((0+1))\r"},
        {"wait": "one-1"},
        {"sleep": 10},
        {"type": "echo two-$((1+1))\r"},
    ]}, "book")
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        agent = await scripted_agent(broker, keys)
        async with answering(live, allow=True):
            run = asyncio.ensure_future(RunbookRunner(agent, live.session, book).run())
            await live.wait_pty(b"one-1\r\n")
            await asyncio.sleep(0.3)
            revoked_at = time.monotonic()
            live.guard.revoke_all()
            result = await asyncio.wait_for(run, 5)
            stopped_after = time.monotonic() - revoked_at
        assert not result.ok and result.failed == "step 5 (sleep)"
        assert "revoked" in result.reason and stopped_after < 2
        await asyncio.sleep(0.3)
        assert b"two-2" not in live.pty_out
        await agent.link.close()
