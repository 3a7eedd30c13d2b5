"""tmux for end-to-end tests: a private server, the real apps in its panes, and the
steps every such test begins with (`assist help` and `assist console` meeting)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys

from assist.broker.server import Broker
from tests.helpers import KeyPair


class Tmux:
    """A private tmux server for one test."""

    def __init__(self) -> None:
        self.socket = f"assist-test-{os.getpid()}-{id(self)}"

    async def run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode:
            raise AssertionError(f"tmux {args}: {err.decode()}")
        return out.decode()

    async def start(self, name: str, command: str, width: int, height: int) -> None:
        # A COLUMNS/LINES inherited from the test runner would pin the apps to 80x24.
        wrapped = f"env -u COLUMNS -u LINES sh -c {shlex.quote(command)}"
        await self.run("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                       wrapped)

    async def keys(self, name: str, *keys: str) -> None:
        await self.run("send-keys", "-t", name, *keys)

    async def screen(self, name: str) -> str:
        return await self.run("capture-pane", "-p", "-t", name)

    async def wait_for(self, name: str, text: str, timeout: float = 20.0) -> str:
        screen = ""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            screen = await self.screen(name)
            if text in screen:
                return screen
            await asyncio.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared on {name}:\n{screen}")

    async def kill(self) -> None:
        with contextlib.suppress(AssertionError):
            await self.run("kill-server")


def assist_cmd(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "assist", *args))


SHELL = "env PS1='$ ' bash --norc --noprofile"


async def allow(tmux: Tmux) -> None:
    """The user allows what the prompt asks: wait until Allow works, Tab to it, Enter."""
    await asyncio.sleep(1.1)
    await tmux.keys("user", "Tab", "Enter")


async def meet(tmux: Tmux, broker: Broker | int | str, keys: dict[str, KeyPair], topic: str,
               agent_address: str = "", console_args: tuple[str, ...] = ()) -> None:
    """Start `assist help` (alice) and `assist console` (carol); carol accepts alice.

    ``broker`` is the broker, or the port of one running in its own process, or
    (a string) the addresses to give; ``agent_address``: carol's, if not alice's;
    ``console_args``: more options for carol's console.
    """
    address = broker if isinstance(broker, str) else \
        f"127.0.0.1:{broker if isinstance(broker, int) else broker.port}"
    await tmux.start("user", assist_cmd("help", topic, "--broker", address, "--key",
                                        str(keys["alice"].private), "--yes", "--cmd", SHELL),
                     100, 30)
    await tmux.start("agent", assist_cmd("console", "--broker", agent_address or address,
                                         "--key",
                                         str(keys["carol"].private), "--yes",
                                         *console_args), 160, 45)
    await tmux.wait_for("user", "Waiting for an agent")
    await tmux.wait_for("agent", topic)
    await tmux.keys("agent", "Enter")  # accept the head of the queue
    await tmux.wait_for("agent", f"alice · {topic}")
    await tmux.wait_for("user", "verified by test-broker")


async def take_control(tmux: Tmux) -> None:
    """After :func:`meet`: carol verifies alice by her key and asks to type; alice allows."""
    await tmux.keys("agent", "F6")
    await tmux.wait_for("agent", "Registered key")
    await tmux.keys("agent", "Enter")  # the registered-key button has the focus
    await tmux.wait_for("agent", "Identity verified (key)")
    await tmux.keys("agent", "F8")
    await tmux.wait_for("agent", "5 minutes")
    await tmux.keys("agent", "Enter")
    await tmux.wait_for("user", "carol asks to type in your terminal, for 5 minutes")
    await allow(tmux)
    await tmux.wait_for("agent", "typing goes to the user's shell")


async def end_with_survey(tmux: Tmux, root_cause: str, score: str = "4") -> None:
    """carol ends the session (F10) with ``root_cause``; alice answers the survey."""
    await tmux.keys("agent", "F10")
    await tmux.wait_for("agent", "what was the root cause")
    await tmux.keys("agent", "-l", root_cause)
    await tmux.keys("agent", "Enter")
    await tmux.wait_for("user", "How satisfied")
    await tmux.keys("user", score)
    await tmux.wait_for("user", "Thank you")
