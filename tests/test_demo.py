"""`assist demo` starts, shows a user to help, and ends cleanly, in a real terminal."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.tmux import SHELL, Tmux, assist_cmd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


async def test_demo_runs_a_whole_contact_and_exits_cleanly() -> None:
    tmux = Tmux()
    try:
        await tmux.start("demo", f"{assist_cmd('demo')}; echo EXIT=$?; sleep 30", 160, 45)
        await tmux.wait_for("demo", "demo: my disk is full")
        await tmux.keys("demo", "Enter")
        await tmux.wait_for("demo", "No space left on device")  # the user's own shell
        await tmux.wait_for("demo", "demo-user: Hi! My disk is full")
        await tmux.keys("demo", "F10")
        await tmux.wait_for("demo", "what was the root cause")
        await tmux.keys("demo", "-l", "old build files in /tmp")
        await tmux.keys("demo", "Enter")
        await tmux.wait_for("demo", "Answered ≤15 s today 100% (1/1)")
        await tmux.keys("demo", "C-q")
        screen = await tmux.wait_for("demo", "EXIT=", timeout=20)
        assert "EXIT=0" in screen and "Demo finished" in screen
        assert "Traceback" not in screen and "Error" not in screen
    finally:
        await tmux.kill()


async def test_being_a_user_of_the_demo_touches_none_of_your_own_config() -> None:
    tmux = Tmux()
    home = Path(tempfile.mkdtemp(prefix="assist-home-"))
    try:
        await tmux.start("demo", f"{assist_cmd('demo')}; sleep 30", 160, 45)
        screen = await tmux.wait_for("demo", "Be a user yourself")
        found = re.search(r"ASSIST_CONFIG_DIR=(/\S*?/you-config)\s", " ".join(screen.split("\n")))
        assert found, screen
        folder = found.group(1)
        # The line as printed, run with a HOME of its own (as another terminal would).
        yourself = (f"env HOME={home} ASSIST_CONFIG_DIR={folder} ASSIST_STATE_DIR={folder}/state "
                    f"{assist_cmd('help', 'my own problem', '--cmd', SHELL)}")
        await tmux.start("you", yourself, 100, 30)
        await tmux.wait_for("you", "Waiting for an agent")
        await tmux.wait_for("demo", "my own problem")
        assert not (home / ".config").exists(), "your own config was written"
    finally:
        await tmux.kill()
        shutil.rmtree(home, ignore_errors=True)
