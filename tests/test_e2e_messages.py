"""End to end in tmux: what `assist help` says when the user leaves or the broker goes."""

from __future__ import annotations

import shlex
import shutil

import pytest

from assist.broker.server import Broker
from tests.helpers import KeyPair
from tests.tmux import SHELL, Tmux, assist_cmd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


async def _waiting(tmux: Tmux, broker: Broker, keys: dict[str, KeyPair]) -> None:
    """alice waits in the queue in `assist help`; the pane stays to show its last words."""
    command = assist_cmd("help", "vpn", "--broker", f"127.0.0.1:{broker.port}", "--key",
                         str(keys["alice"].private), "--yes", "--cmd", SHELL)
    await tmux.start("user", f"sh -c {shlex.quote(command + '; echo EXIT=$?; sleep 60')}",
                     100, 30)
    await tmux.wait_for("user", "Waiting for an agent")


@pytest.mark.parametrize("how", ["F10", "exit"])
async def test_leaving_the_queue_says_so_and_exits_0(
        broker: Broker, keys: dict[str, KeyPair], how: str) -> None:
    tmux = Tmux()
    try:
        await _waiting(tmux, broker, keys)
        if how == "F10":
            await tmux.keys("user", "F10")
        else:
            await tmux.keys("user", "-l", "exit")
            await tmux.keys("user", "Enter")
        screen = await tmux.wait_for("user", "EXIT=")
        assert "You left the queue.\nEXIT=0" in screen
        assert "lost the connection" not in screen
    finally:
        await tmux.kill()


async def test_a_broker_that_goes_away_is_said_in_words(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    try:
        await _waiting(tmux, broker, keys)
        await broker.stop()
        screen = await tmux.wait_for("user", "the helpdesk does not answer")
        words = " ".join(screen.replace("│", " ").split())
        assert "the helpdesk does not answer (nothing answers on that port)" in words
        assert words.count("the helpdesk does not answer") == 1
        assert "Connect call failed" not in screen and "('127.0.0.1'" not in screen
    finally:
        await tmux.kill()
