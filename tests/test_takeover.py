"""One key, one request: a second `assist help` is told, and may take the place over."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from assist.broker.server import Broker
from tests.helpers import KeyPair

pytestmark = pytest.mark.slow


class Help:
    """`assist help --json-events` as alice, in a process of its own."""

    def __init__(self, broker: Broker, key: KeyPair, topic: str, *flags: str) -> None:
        self.args = [sys.executable, "-m", "assist", "help", topic, "--json-events",
                     "--broker", f"127.0.0.1:{broker.port}", "--key", str(key.private),
                     "--yes", *flags]
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []

    async def start(self) -> Help:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        return self

    async def until(self, **fields: object) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(20):
            while True:
                line = await self.proc.stdout.readline()
                assert line, f"exited early: {self.events}"
                event = json.loads(line)
                self.events.append(event)
                if all(event.get(k) == v for k, v in fields.items()):
                    return event

    async def finish(self) -> tuple[int, str]:
        assert self.proc is not None
        out, err = await asyncio.wait_for(self.proc.communicate(), 20)
        self.events += [json.loads(line) for line in out.decode().splitlines() if line]
        return self.proc.returncode or 0, err.decode()


async def test_a_second_help_with_the_same_key_is_told_then_takes_over(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    first = await Help(broker, keys["alice"], "printer").start()
    queued = await first.until(event="status", phase="queued")
    # A second one (no terminal to ask on, no --take-over): a clear no.
    second = await Help(broker, keys["alice"], "printer again").start()
    code, err = await second.finish()
    assert code == 1
    assert "already waits for help" in err and "--take-over" in err
    assert "Traceback" not in err
    # With --take-over it gets the first one's place, and the first one stops.
    third = await Help(broker, keys["alice"], "printer again", "--take-over").start()
    moved = await third.until(event="status", phase="queued")
    assert moved["session"] == queued["session"] and moved["position"] == 1
    assert "kept your place" in moved["message"]
    await first.until(event="status", phase="taken-over")
    code, _ = await first.finish()
    assert code == 0 and first.events[-1]["phase"] == "taken-over"
    assert broker.hub is not None and len(broker.hub.queue) == 1
    assert third.proc is not None
    third.proc.terminate()
    await third.finish()
