"""`assist agent ...`: the console's actions as commands, run as real processes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from assist.broker.server import Broker
from assist.client import UserClient
from assist.protocol import messages as m
from tests.helpers import KeyPair, until, user_client
from tests.test_runbook import answering
from tests.user_side import live_session

pytestmark = pytest.mark.slow


class Cli:
    """Runs `assist agent ...` as carol against the test broker."""

    def __init__(self, broker: Broker, key: KeyPair) -> None:
        self.base = ["--broker", f"127.0.0.1:{broker.port}", "--key", str(key.private), "--yes"]

    async def __call__(self, *args: str) -> tuple[int, Any, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "assist", "agent", *args, *self.base, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode()
        try:
            data = json.loads(text) if text.strip().startswith(("{", "[")) and "\n{" not in \
                text.strip() else [json.loads(line) for line in text.splitlines() if line]
        except json.JSONDecodeError:
            data = text
        return proc.returncode or 0, data, err.decode()


async def test_console_actions_from_the_command_line(broker: Broker,
                                                     keys: dict[str, KeyPair]) -> None:
    cli = Cli(broker, keys["carol"])
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        s = live.session
        code, data, _ = await cli("chat", s, "hello from a script")
        assert code == 0 and data["sent"] == "hello from a script"
        code, data, _ = await cli("chat", s, " ")
        assert code == 1 and "the message is empty" in data["error"]["message"]
        code, data, _ = await cli("chat", s, "y" * 4001)
        assert code == 1 and "at most 4000" in data["error"]["message"]

        code, data, _ = await cli("keys", s, "echo nope-$((1+1))", "--enter")
        assert code == 1 and "has not granted" in data["error"]["message"]

        code, data, _ = await cli("ask", s, "control", "--seconds", "60")
        assert code == 1 and "verify the user's identity first" in data["error"]["message"]
        code, data, _ = await cli("verify", s, "key")
        assert code == 0 and data["verified"]

        async with answering(live, allow=True):
            code, data, _ = await cli("ask", s, "control", "--seconds", "60")
            assert code == 0 and data["scope"] == "control" and data["grant"]
            code, data, _ = await cli("keys", s, "echo via-cli-$((1+2))", "--enter")
            assert code == 0 and data["typed"] == len("echo via-cli-$((1+2))\r")
            await live.wait_pty(b"via-cli-3")

            code, data, _ = await cli("annotate", s, "--kind", "label", "--x", "2", "--row", "1",
                                      "--text", "here")
            assert code == 1 and "not granted" in data["error"]["message"]
            code, data, _ = await cli("ask", s, "annotate")
            assert code == 0
            code, data, _ = await cli("annotate", s, "--kind", "label", "--x", "2", "--row", "1",
                                      "--text", "here")
            assert code == 0
            async with asyncio.timeout(5):
                while not live.annotations:
                    await asyncio.sleep(0.05)
            mark = live.annotations[-1]
            assert isinstance(mark, m.Annotate) and mark.annotation.text == "here"
            assert not mark.annotation.relative  # anchored on the user's side

            live.guard.revoke_all()
            await asyncio.sleep(0.3)
            code, data, _ = await cli("keys", s, "echo after-$((2+2))", "--enter")
            assert code == 1 and "revoked" in data["error"]["message"]

        code, data, _ = await cli("end", s, "--root-cause", "scripted fix")
        assert code == 0 and data["root_cause"] == "scripted fix"
    assert b"nope-2" not in live.pty_out and b"after-4" not in live.pty_out
    assert broker.store is not None
    assert broker.store.sessions.get(live.session).root_cause == "scripted fix"


async def test_agent_run_executes_a_runbook_file(broker: Broker, keys: dict[str, KeyPair],
                                                 tmp_path: Path) -> None:
    book = tmp_path / "book.yaml"
    book.write_text(
        'name: disk check\n'
        'steps:\n'
        '  - say: "Checking your disk."\n'
        '  - verify: key\n'
        '  - ask: run\n'
        '  - type: "echo disk-$((50+49))%\\r"\n'
        '  - wait: "disk-99%"\n'
        '  - collect: {name: usage, lines: 2}\n'
        '  - end: {root_cause: "disk full", resolved: true}\n')
    cli = Cli(broker, keys["carol"])
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        async with answering(live, allow=True):
            code, data, err = await cli("run", str(book), "--session", live.session)
        assert code == 0, (err, data)
        steps = [d for d in data if d["t"] == "step"]
        result = next(d for d in data if d["t"] == "result")
        assert [s["kind"] for s in steps] == ["say", "verify", "ask", "type", "wait",
                                              "collect", "end"]
        assert result["ok"] and any("disk-99%" in line for line in result["collected"]["usage"])
    assert broker.store is not None
    assert broker.store.sessions.get(live.session).root_cause == "disk full"


async def test_bad_runbook_is_a_clear_error(broker: Broker, keys: dict[str, KeyPair],
                                           tmp_path: Path) -> None:
    book = tmp_path / "book.yaml"
    book.write_text("name: x\nsteps:\n  - fly: away\n")
    code, data, _ = await Cli(broker, keys["carol"])("run", str(book), "--session", "abc")
    assert code == 1 and "unknown step 'fly'" in data["error"]["message"]


async def _accepting(broker: Broker, key: KeyPair) -> asyncio.subprocess.Process:
    """`assist agent accept --json` as carol, once its session has started."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assist", "agent", "accept", "--broker",
        f"127.0.0.1:{broker.port}", "--key", str(key.private), "--yes", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
    assert first["t"] == "started"
    return proc


async def _held(broker: Broker, keys: dict[str, KeyPair]
                ) -> tuple[UserClient, asyncio.subprocess.Process]:
    """alice asks for help and `assist agent accept` (carol) holds her session."""
    alice = await user_client(broker, keys["alice"])
    await alice.join("printer")
    offered = asyncio.ensure_future(alice.link.wait_for(lambda e: isinstance(e, m.Offered),
                                                        30))
    accepting = asyncio.ensure_future(_accepting(broker, keys["carol"]))
    await offered
    await alice.ready()
    return alice, await accepting


async def test_accept_exits_non_zero_with_an_event_when_the_broker_goes(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice, proc = await _held(broker, keys)
    await broker.stop()
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode()
    *_, event, error = [json.loads(line) for line in out.decode().splitlines()]
    assert event["t"] == "connection-lost" and event["session"] and event["reason"]
    assert error["error"]["code"] == "connection"
    await alice.link.close()


async def test_ctrl_c_on_accept_hands_the_user_back_at_once(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice, proc = await _held(broker, keys)
    lost = asyncio.ensure_future(alice.link.wait_for(lambda e: isinstance(e, m.AgentLost), 10))
    proc.send_signal(2)  # SIGINT, as Ctrl-C
    event = await lost
    assert isinstance(event, m.AgentLost) and event.position == 1
    assert "stopped `assist agent accept`" in event.reason
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    await alice.link.close()


async def test_ask_stops_when_the_session_ends_before_the_answer(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    cli = Cli(broker, keys["carol"])
    async with live_session(broker, keys) as live:
        asking = asyncio.ensure_future(cli("ask", live.session, "annotate"))
        await until(lambda: live.asks, 30, what="the question to reach the user")
        await live.user.user_session.leave()  # the user goes without answering
        code, data, _ = await asyncio.wait_for(asking, 30)
        assert code == 1 and "ended before the user answered" in data["error"]["message"]


async def test_accepting_again_after_being_away_too_long_holds_the_session(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    """The notice kept for an agent who was away ("alice went back to the queue") is
    not the end of the session that agent accepts again."""
    alice, proc = await _held(broker, keys)
    back = asyncio.ensure_future(alice.link.wait_for(lambda e: isinstance(e, m.AgentLost), 10))
    proc.kill()  # the agent vanishes; past its grace, alice goes back to the front
    await proc.wait()
    await back
    offered = asyncio.ensure_future(alice.link.wait_for(lambda e: isinstance(e, m.Offered),
                                                        30))
    again = asyncio.ensure_future(_accepting(broker, keys["carol"]))
    await offered
    await alice.ready()
    proc = await again
    assert proc.stdout is not None
    with pytest.raises(TimeoutError):  # it holds the session: nothing ends it
        line = await asyncio.wait_for(proc.stdout.readline(), 2)
        assert json.loads(line)["t"] != "ended", line
        await asyncio.wait_for(proc.stdout.readline(), 2)
    assert proc.returncode is None
    proc.send_signal(2)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    await alice.link.close()
