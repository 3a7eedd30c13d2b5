"""End to end in tmux: what the user keeps to themselves stays with them.

The privacy pause (F5 in ``assist help``) and a secret read key by key
(``read -s -n``), with the real apps, a real broker and its recording.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from assist.broker.server import Broker
from tests.helpers import KeyPair, until
from tests.tmux import Tmux, meet, take_control

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


async def recording(broker: Broker, last: str) -> str:
    """The session's recording, once the broker wrote ``last`` (it flushes on a timer)."""
    (path,) = broker.config.recordings.glob("*.cast")
    await until(lambda: last in path.read_text(), 5, what=f"{last!r} in the recording")
    return path.read_text()


async def test_the_privacy_pause_hides_the_screen_and_stops_the_agents_keys(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    try:
        await meet(tmux, broker, keys, "payslip")
        await tmux.wait_for("user", "F5 pause sharing")  # the key is always in view
        await take_control(tmux)

        await tmux.keys("user", "F5")
        await tmux.wait_for("user", "Paused: the agent sees nothing and")
        await tmux.wait_for("agent", "alice paused sharing: you see nothing")
        await tmux.wait_for("user", "F5 resume sharing")
        await tmux.keys("user", "-l", "echo private-$((6*7))")
        await tmux.keys("user", "Enter")
        await tmux.wait_for("user", "private-42")
        await tmux.keys("agent", "-l", "echo agent-$((1+1))")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("agent", "paused sharing: wait until they resume")
        await asyncio.sleep(0.5)
        assert "private" not in await tmux.screen("agent")
        assert "agent-2" not in await tmux.screen("user")

        await tmux.keys("user", "F5")
        await tmux.wait_for("agent", "alice resumed sharing")
        await tmux.wait_for("user", "F5 pause sharing")
        await tmux.keys("user", "-l", "echo after-$((2+3))")
        await tmux.keys("user", "Enter")
        await tmux.wait_for("agent", "after-5")
        screen = await tmux.screen("agent")
        assert "private" not in screen and "you see nothing" not in screen
        await tmux.keys("agent", "-l", "echo typed-again-$((3*3))")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "typed-again-9")
    finally:
        await tmux.kill()
    text = await recording(broker, "typed-again-9")
    assert "[paused by the user]" in text and "[sharing resumed]" in text
    assert "private" not in text and "agent-2" not in text


async def test_a_pin_read_key_by_key_is_hidden_and_refuses_the_agent(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    try:
        await meet(tmux, broker, keys, "smartcard")
        await take_control(tmux)
        await tmux.keys("user", "-l", "read -s -n 4 -p 'PIN: ' pin; echo; echo got-${#pin}")
        await tmux.keys("user", "Enter")
        await tmux.wait_for("agent", "[hidden input]")
        await tmux.keys("agent", "-l", "9")
        await tmux.wait_for("agent", "Keys refused")
        await tmux.keys("user", "-l", "4711")
        await tmux.wait_for("user", "got-4")
        await tmux.wait_for("agent", "got-4")
        assert "[hidden input]" not in await tmux.screen("agent")
    finally:
        await tmux.kill()
    text = await recording(broker, "got-4")
    assert "[hidden input]" in text and "4711" not in text
