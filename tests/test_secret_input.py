"""Secret input of every kind is seen; full-screen programs are not taken for it.

Each program runs in a real pty (the user's own :class:`PtyProcess`), and the
test asks what assist asks while sharing: is a secret being read now?
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assist.share.pty import PtyProcess
from tests.helpers import until

BASH = ["bash", "--norc", "--noprofile"]
ENV = {"PS1": "$ ", "HISTFILE": "/dev/null", "LESS": "", "TERM": "xterm-256color"}


def need(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")


async def run(argv: list[str], ready: bytes) -> tuple[PtyProcess, bytearray]:
    out = bytearray()
    pty = PtyProcess(argv, 80, 24, env=ENV, on_output=out.extend)
    pty.start()
    await until(lambda: ready in out, timeout=10, what=f"{argv[0]} to start")
    return pty, out


async def stays(pty: PtyProcess, secret: bool) -> None:
    """The answer is ``secret`` now and stays so for a while."""
    await until(lambda: pty.secret_input() is secret, timeout=5, what=f"secret={secret}")
    for _ in range(5):
        assert pty.secret_input() is secret
        time.sleep(0.05)


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    need("ssh-keygen")
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "hunter2", "-f", str(key)],
                   check=True, capture_output=True)
    return key


SECRETS = [
    ("read -s -n 4", ["bash", "-c", "read -s -n 4 -p 'PIN: ' pin; sleep 30"], b"PIN: "),
    ("read -s", ["bash", "-c", "read -s -p 'password: ' pw; sleep 30"], b"password: "),
    ("getpass", [sys.executable, "-c", "import getpass; getpass.getpass('Secret: ')"],
     b"Secret: "),
]


@pytest.mark.parametrize(("name", "argv", "ready"), SECRETS, ids=[s[0] for s in SECRETS])
async def test_secret_prompts_are_seen(name: str, argv: list[str], ready: bytes) -> None:
    pty, _ = await run(argv, ready)
    try:
        await stays(pty, True)
    finally:
        pty.terminate()


async def test_ssh_passphrase_prompt_is_seen(encrypted_key: Path) -> None:
    pty, _ = await run(["ssh-keygen", "-y", "-f", str(encrypted_key)], b"passphrase")
    try:
        await stays(pty, True)
    finally:
        pty.terminate()


@pytest.mark.parametrize(("program", "argv", "ready"), [
    ("sudo", ["sudo", "-k", "-p", "sudo-password: ", "true"], b"sudo-password: "),
    ("su", ["su", "-c", "true", "root"], b"assword"),
], ids=["sudo", "su"])
async def test_sudo_and_su_password_prompts_are_seen(
        program: str, argv: list[str], ready: bytes) -> None:
    # As an account without rights both still ask for a password (root is not asked).
    need(program)
    need("runuser")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root, to run the prompt as an account that is asked")
    pty, _ = await run(["runuser", "-u", "nobody", "--", *argv], ready)
    try:
        await stays(pty, True)
    finally:
        pty.terminate()


async def test_pinentry_curses_is_seen() -> None:
    need("pinentry-curses")
    script = ("T=$(tty); { printf 'OPTION ttyname=%s\\nOPTION ttytype=xterm\\nSETDESC PIN?\\n"
              "GETPIN\\n' $T; sleep 30; } | pinentry-curses >/dev/null 2>&1")
    pty, _ = await run(["bash", "-c", script], b"PIN?")
    try:
        await stays(pty, True)
    finally:
        pty.terminate()


SCREENS = [
    ("shell prompt (readline)", ["bash", "--norc", "--noprofile", "-i"], b"$ "),
    ("read -n 1 (echo on)", ["bash", "-c", "read -n 1 -p 'y/n? ' a; sleep 30"], b"y/n? "),
    ("vim", ["vim", "-u", "NONE", "-N", "-i", "NONE"], b"~"),
    ("htop", ["htop"], b"PID"),
    ("less", ["bash", "-c", "seq 1000 | less"], b"\n5"),
    ("less -X", ["bash", "-c", "seq 1000 | less -X"], b"\n5"),
    ("top", ["top"], b"PID"),
]


@pytest.mark.parametrize(("name", "argv", "ready"), SCREENS, ids=[s[0] for s in SCREENS])
async def test_line_editors_and_full_screen_programs_stay_visible(
        name: str, argv: list[str], ready: bytes) -> None:
    need(argv[0] if argv[0] != "bash" or "less" not in argv[-1] else "less")
    pty, _ = await run(argv, ready)
    try:
        await stays(pty, False)
    finally:
        pty.terminate()


async def test_tmux_stays_visible() -> None:
    need("tmux")
    socket = f"assist-secret-{id(object())}"
    pty, _ = await run(["tmux", "-L", socket, "-f", "/dev/null", "new-session"], b"0:")
    try:
        await stays(pty, False)
    finally:
        pty.terminate()
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
