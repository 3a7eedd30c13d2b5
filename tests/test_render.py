"""Full-screen programs through the whole path render on the agent's side as in tmux."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.client.share import TerminalShare, TerminalViewer
from assist.share.emulator import Emulator
from assist.share.pty import PtyProcess
from tests.helpers import KeyPair, started_session
from tests.tmux import Tmux

pytestmark = pytest.mark.slow
COLS, ROWS = 80, 24


async def shared_program(broker: Broker, keys: dict[str, KeyPair],
                         argv: list[str], settle: float) -> list[str]:
    """Run ``argv`` in a shared pty; return the agent's view of the screen."""
    alice, carol, session = await started_session(broker, keys, "render", COLS, ROWS)
    share = TerminalShare(alice.link.channel, session, Emulator(COLS, ROWS))
    viewer = TerminalViewer(session, COLS, ROWS)

    async def pump_user() -> None:
        async for event in alice.events():
            share.handle(event)

    async def pump_agent() -> None:
        async for event in carol.events():
            viewer.handle(event)

    tasks = [asyncio.ensure_future(pump_user()), asyncio.ensure_future(pump_agent())]
    pty = PtyProcess(argv, COLS, ROWS, on_output=share.output)
    pty.start()
    await asyncio.sleep(settle)
    viewer.emulator.feed(b"")
    screen = viewer.emulator.text()
    pty.terminate()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await alice.link.close()
    await carol.link.close()
    return screen


async def tmux_screen(command: str, settle: float) -> list[str]:
    tmux = Tmux()
    try:
        await tmux.start("ref", command, COLS, ROWS)
        await asyncio.sleep(settle)
        return (await tmux.screen("ref")).splitlines()
    finally:
        await tmux.kill()


@pytest.mark.skipif(shutil.which("vim") is None or shutil.which("tmux") is None,
                    reason="needs vim and tmux")
async def test_vim_renders_like_tmux(broker: Broker, keys: dict[str, KeyPair],
                                     tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(1, 11)))
    argv = ["vim", "-u", "NONE", "-N", "-n", "-i", "NONE", "+5", str(text)]
    agent = await shared_program(broker, keys, argv, settle=1.5)
    reference = await tmux_screen(" ".join(argv), settle=1.5)
    ours = [line.rstrip() for line in agent]
    theirs = [line.rstrip() for line in reference] + [""] * (ROWS - len(reference))
    assert ours == theirs[:ROWS]
    assert ours[0] == "line 1: the quick brown fox" and ours[1].startswith("line 2")


@pytest.mark.skipif(shutil.which("htop") is None, reason="needs htop")
async def test_htop_renders_its_layout(broker: Broker, keys: dict[str, KeyPair]) -> None:
    agent = await shared_program(broker, keys, ["htop"], settle=2.0)
    joined = "\n".join(agent)
    assert "PID" in joined and "USER" in joined and "Command" in joined.replace("COMMAND",
                                                                                "Command")
    assert any("F10" in line or "Quit" in line for line in agent[-2:])
