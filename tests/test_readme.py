"""The README's first steps, as written, on a machine with nothing set up.

"Try it" (the demo) and then "A helpdesk on one machine" are read from the
README itself and run line by line with an empty HOME: the keys, the directory, then the broker, the
console and the user in tmux, answering the first-contact question as a
person would; then the invite lines, and the printed command run by a
second person with an empty HOME of their own. Only the port differs
(``ASSIST_BROKER_PORT`` / ``ASSIST_BROKER``), so that the test never takes
2222 from anything else.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tmux import Tmux

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]

README = Path(__file__).parent.parent / "README.md"


def blocks(section: str) -> list[list[str]]:
    """The ``sh`` code blocks of a README section, as command lines without comments."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"```sh\n(.*?)```", body, re.S)
    return [[line.split("  #")[0].strip() for line in block.splitlines()
             if line.strip() and not line.startswith("#")] for block in found]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Machine:
    """A fresh account: an empty HOME, ``assist`` on the PATH, the test's port."""

    def __init__(self, home: Path, port: int) -> None:
        home.mkdir(parents=True)
        self.home = home
        bin_dir = home / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "assist"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m assist "$@"\n')
        wrapper.chmod(0o755)
        self.env = {"HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}",
                    "TERM": "xterm-256color", "LANG": "C.UTF-8", "USER": home.name,
                    "LOGNAME": home.name, "ASSIST_BROKER_PORT": str(port),
                    "ASSIST_BROKER": f"127.0.0.1:{port}", "ASSIST_MEDIA_HOSTS": "127.0.0.1"}

    def run(self, line: str) -> str:
        done = subprocess.run(["sh", "-c", line], env=self.env, capture_output=True,
                              text=True, timeout=60, cwd=self.home, check=False)
        assert done.returncode == 0, f"{line!r} failed:\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr
        return done.stdout

    def shell(self, line: str) -> str:
        """``line`` for a tmux pane, in this account's environment."""
        assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"env -i {assign} sh -c {shlex.quote(f'cd ~ && {line}; sleep 30')}"


async def test_a_helpdesk_on_one_machine_runs_as_the_readme_says(tmp_path: Path) -> None:
    setup, invites = blocks("A helpdesk on one machine")
    *first, serve, console, user = setup
    assert serve.startswith("assist serve") and console.startswith("assist console")
    assert user.startswith("assist help")
    port = free_port()
    admin = Machine(tmp_path / "admin", port)
    (try_it,) = blocks("Try it")
    demo = try_it[-1].split("&&")[-1].strip()
    assert demo == "assist demo"
    tmux = Tmux()
    try:
        # "Try it" first, in the same account: it leaves nothing behind that the
        # next steps would trip on.
        await tmux.start("demo", admin.shell(demo), 160, 45)
        await tmux.wait_for("demo", "Be a user yourself")
        await tmux.keys("demo", "C-q")
        await tmux.wait_for("demo", "Demo finished")
        assert not (admin.home / ".config" / "assist").exists()
        for line in first:
            admin.run(line)
        await tmux.start("serve", admin.shell(serve), 120, 30)
        await tmux.start("console", admin.shell(console), 160, 45)
        await tmux.wait_for("console", "Trust and remember it?")
        await tmux.keys("console", "y", "Enter")
        await tmux.wait_for("console", "available")
        # The same account: the broker is pinned already (one pin per broker).
        await tmux.start("user", admin.shell(user), 100, 30)
        await tmux.wait_for("user", "Waiting for an agent")
        await tmux.wait_for("console", "printer jam")
        await tmux.keys("console", "Enter")
        await tmux.wait_for("user", "carol · verified by")

        # Invites: an admin's, then an agent's (its key remembered from the console).
        admin_line, agent_line = invites
        printed = admin.run(admin_line)
        command = next(line for line in printed.splitlines() if "--join" in line)
        assert command.startswith("assist help --join assist-join-1.")
        printed = admin.run(agent_line)
        assert "assist help --join assist-join-1." in printed
        newcomer = Machine(tmp_path / "bob", port)
        await tmux.start("bob", newcomer.shell(f"{command} 'new laptop'"), 100, 30)
        await tmux.wait_for("bob", "Waiting for an agent")
        # In the queue, as the agent sees it (their key remembered: no --key needed).
        assert "new laptop" in admin.run("assist queue")
    finally:
        await tmux.kill()
