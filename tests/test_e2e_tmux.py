"""End to end: real `assist help` and `assist console` processes in tmux, a real broker."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from assist.broker.server import Broker
from tests.helpers import KeyPair
from tests.tmux import Tmux, allow, assist_cmd, end_with_survey, meet, take_control

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


async def test_user_and_agent_in_real_terminals(broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    try:
        await meet(tmux, broker, keys, "printer jam")
        await tmux.keys("user", "echo hello-from-user", "Enter")
        await tmux.wait_for("agent", "hello-from-user")

        await tmux.keys("agent", "F2")
        await tmux.keys("agent", "-l", "hi from carol")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "carol: hi from carol")
        await tmux.keys("user", "F2")
        await tmux.keys("user", "-l", "thanks")
        await tmux.keys("user", "Enter")
        await tmux.wait_for("agent", "alice: thanks")

        await end_with_survey(tmux, "paper tray sensor", "5")

        assert broker.store is not None
        (session,) = broker.store.sessions.between(0, 1e12)
        assert session.root_cause == "paper tray sensor" and session.resolved
        assert broker.store.sessions.csat(session.id) == 5
        chat = [e[3]["text"] for e in broker.store.sessions.events(session.id) if e[1] == "chat"]
        assert chat == ["hi from carol", "thanks"]
    finally:
        await tmux.kill()


async def test_killed_agent_puts_the_user_back_at_the_front(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    address = f"127.0.0.1:{broker.port}"
    try:
        await meet(tmux, broker, keys, "vpn down")
        pid = int((await tmux.run("display-message", "-p", "-t", "agent", "#{pane_pid}")).strip())
        os.kill(pid, 9)  # the console process dies without a word
        screen = await tmux.wait_for("user", "back at the front", timeout=5)
        assert "position 1" in screen
        assert broker.hub is not None
        (entry,) = list(broker.hub.queue)
        assert entry.user == "alice" and entry.requeued and entry.online
        # The user's shell kept working all along.
        await tmux.keys("user", "echo still-here", "Enter")
        screen = await tmux.wait_for("user", "\nstill-here ")
        assert "message the agent" not in screen  # no chat without an agent
        # A second agent picks the user up first.
        await tmux.start("agent2", assist_cmd("console", "--broker", address, "--key",
                                              str(keys["dave"].private), "--yes"), 160, 45)
        await tmux.wait_for("agent2", "back from dropped agent")
        await tmux.keys("agent2", "Enter")
        await tmux.wait_for("user", "dave · verified by test-broker")
        await tmux.wait_for("agent2", "still-here")
    finally:
        await tmux.kill()


async def test_agent_types_only_after_the_user_grants_and_draws_on_the_screen(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    try:
        await meet(tmux, broker, keys, "cannot print")
        await tmux.wait_for("agent", "not verified")

        # Control is impossible before the user's identity is verified: said at once.
        await tmux.keys("agent", "F8")
        await tmux.wait_for("agent", "verify the user's identity first")
        assert "5 minutes" not in await tmux.screen("agent")
        # Typing without a grant reaches nothing.
        await tmux.keys("agent", "F3")
        await tmux.keys("agent", "-l", "echo sneaky-$((1+1))")
        await tmux.keys("agent", "Enter")
        await asyncio.sleep(0.5)  # let those keys land before the dialog opens

        await take_control(tmux)
        await tmux.keys("agent", "-l", "echo typed-by-agent-$((6*7))")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "typed-by-agent-42")
        assert "sneaky-2" not in await tmux.screen("user")

        # Drawing: a label placed with the keyboard shows on the user's screen.
        await tmux.keys("agent", "F7")
        await tmux.wait_for("user", "carol asks to draw on your screen")
        await allow(tmux)
        await tmux.wait_for("agent", "drawing")
        await tmux.keys("agent", "l", "Down", "Right", "Right", "Enter")
        await tmux.wait_for("agent", "Text of the label")
        await tmux.keys("agent", "-l", "look here")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", " look here ")
        await asyncio.sleep(0.5)  # the Enter that sent the label drew nothing more
        assert "Text of the label" not in await tmux.screen("agent")

        # One key takes everything back; the agent's next keys are refused.
        await tmux.keys("user", "F9")
        await tmux.wait_for("user", "Revoked 2 permissions")
        await tmux.wait_for("agent", "The user revoked")
        await tmux.keys("agent", "F3")
        await tmux.keys("agent", "-l", "echo after-revoke-$((2+2))")
        await tmux.keys("agent", "Enter")
        await asyncio.sleep(1)
        user_screen = await tmux.screen("user")
        assert "after-revoke-4" not in user_screen and "look here" not in user_screen
    finally:
        await tmux.kill()


async def test_two_consoles_of_one_agent_quitting_the_helping_one_asks_and_hands_on(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    address = f"127.0.0.1:{broker.port}"
    try:
        await meet(tmux, broker, keys, "two windows")
        await tmux.start("agent2", assist_cmd("console", "--broker", address, "--key",
                                              str(keys["carol"].private), "--yes"), 160, 45)
        await tmux.wait_for("agent2", "carol @ test-broker")
        await tmux.keys("agent", "C-q")
        await tmux.wait_for("agent", "alice is still being helped here. Quit anyway?")
        await tmux.keys("agent", "Enter")  # Stay has the focus
        await asyncio.sleep(0.5)
        assert "alice · two windows" in await tmux.screen("agent")
        await tmux.keys("agent", "C-q")
        await tmux.wait_for("agent", "Quit anyway?")
        await tmux.keys("agent", "Tab", "Enter")  # Quit
        await tmux.wait_for("user", "back at the front")
        # The other window of the same agent sees the user first in the queue.
        await tmux.wait_for("agent2", "two windows")
        await tmux.keys("agent2", "Enter")
        await tmux.wait_for("agent2", "alice · two windows")
        await tmux.wait_for("user", "carol · verified by test-broker")
    finally:
        await tmux.kill()
