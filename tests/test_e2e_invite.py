"""End to end in tmux: a user nobody registered joins with an invite and is helped.

A real broker; ``assist invite`` made on its store as an admin would; the
user runs the printed command with an empty HOME (no key, no config) and
``assist console`` takes them from the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assist.broker.server import Broker
from tests.helpers import KeyPair
from tests.tmux import SHELL, Tmux, assist_cmd, take_control

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


def make_invite(broker: Broker) -> dict[str, object]:
    """``assist invite --json`` on the broker's own files, as its admin would."""
    env = {**os.environ, "ASSIST_BROKER_HOST_KEY_PATH": str(broker.config.host_key_path),
           "ASSIST_BROKER_SECRET_KEY_PATH": str(broker.config.secret_key_file)}
    done = subprocess.run([sys.executable, "-m", "assist", "invite", "--db",
                           str(broker.config.db), "--address", f"127.0.0.1:{broker.port}",
                           "--json"], capture_output=True, text=True, env=env, check=True)
    made: dict[str, object] = json.loads(done.stdout)
    return made


def newcomer(home: Path, command: str) -> str:
    """``command`` run as someone with nothing set up: an empty HOME, a bare environment."""
    home.mkdir(parents=True)
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "TERM": "xterm-256color",
           "LANG": "C.UTF-8", "USER": "newbie", "LOGNAME": "newbie"}
    assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"env -i {assign} {command}"


async def test_a_user_with_nothing_joins_with_an_invite_and_is_helped(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    made = make_invite(broker)
    join = str(made["join"])
    assert made["command"] == f"assist help --join {join}"
    tmux = Tmux()
    try:
        user = assist_cmd("help", "--join", join, "printer jam", "--cmd", SHELL)
        await tmux.start("user", newcomer(tmp_path / "home", user), 100, 30)
        await tmux.wait_for("user", "Waiting for an agent")
        await tmux.start("agent", assist_cmd("console", "--broker", f"127.0.0.1:{broker.port}",
                                             "--key", str(keys["carol"].private), "--yes"),
                         160, 45)
        await tmux.wait_for("agent", "printer jam")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("agent", "newbie · printer jam")
        await tmux.wait_for("user", "carol · verified by test-broker")
        await tmux.wait_for("agent", "registered key")
        await take_control(tmux)
        await tmux.keys("agent", "-l", "echo helped-$((6*7))")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "helped-42")
    finally:
        await tmux.kill()
    home = tmp_path / "home"
    keys_made = list(home.rglob("user_ed25519"))
    assert len(keys_made) == 1 and keys_made[0].stat().st_mode & 0o077 == 0
    assert broker.store is not None
    assert [p.name for p in broker.store.directory.list("user")].count("newbie") == 1

    # The invite was for one person: a second use is refused in words, exit 1.
    second = await asyncio.create_subprocess_shell(
        newcomer(tmp_path / "home2", assist_cmd("help", "--join", join, "again", "--no-tui")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 1, out
    assert b"this invite was already used; ask your helpdesk for a new one" in err
    assert b"Traceback" not in err + out
