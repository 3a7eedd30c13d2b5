"""A live session through the things that go wrong: a broker killed, an agent stopped.

Real `assist serve`, `assist help` and `assist console` processes: the
apps in tmux, the broker as its own process that the test kills with
SIGKILL and starts again on the same port and store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.core import pubkey
from assist.store import Store
from tests.helpers import KeyPair, asciinema_cat, store_at
from tests.tmux import Tmux, meet

pytestmark = [pytest.mark.slow, pytest.mark.stores,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokerProcess:
    """``assist serve`` as its own process, on a fixed port and store."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.db = store_at(root / "broker.db")
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "ASSIST_CONFIG_DIR": str(root / "cfg"),
                    "ASSIST_DATA_DIR": str(root / "data"),
                    "ASSIST_STATE_DIR": str(root / "state"),
                    "ASSIST_BROKER_NAME": "test-broker",
                    "ASSIST_BROKER_RECORDINGS": str(root / "recordings"),
                    # Long enough for the agent to come back after a restart.
                    "ASSIST_BROKER_AGENT_GRACE": "30"}

    def start(self) -> None:
        log = (self.root / "broker.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assist", "serve", "--port", str(self.port), "--db",
             self.db, "--host-key", str(self.root / "host_key"), "-v"],
            env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the broker did not start: {self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def log(self) -> str:
        return (self.root / "broker.log").read_text(errors="replace")[-3000:]

    def assist(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assist", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
async def broker_process(tmp_path: Path, keys: dict[str, KeyPair]
                         ) -> AsyncIterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "b", free_port())
    process.root.mkdir()
    with Store(process.db) as store:
        store.directory.add("user", "alice", pubkey.load(keys["alice"].public), time.time())
        store.directory.add("agent", "carol", pubkey.load(keys["carol"].public), time.time())
    process.start()
    yield process
    process.stop()


async def test_a_live_session_goes_on_after_the_broker_is_killed(
        broker_process: BrokerProcess, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    tmux = Tmux()
    try:
        await meet(tmux, broker_process.port, keys, "printer jam")
        await tmux.keys("agent", "F6")
        await tmux.wait_for("agent", "Registered key")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("agent", "Identity verified (key)")
        await tmux.keys("user", "echo before-$((40+1))", "Enter")
        await tmux.wait_for("agent", "before-41")

        broker_process.kill()
        await tmux.wait_for("agent", "reconnecting", timeout=10)
        broker_process.start()
        await tmux.wait_for("agent", "Reconnected: the session goes on", timeout=30)
        await tmux.keys("user", "echo after-$((40+2))", "Enter")
        screen = await tmux.wait_for("agent", "after-42", timeout=15)
        assert "before-41" in screen, "the agent's view kept the session's screen"
        assert "verified" in screen and "not verified" not in screen

        await tmux.keys("agent", "F10")
        await tmux.wait_for("agent", "what was the root cause")
        await tmux.keys("agent", "-l", "print spooler")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "How satisfied")
        await tmux.keys("user", "4")
        await tmux.wait_for("user", "Thank you")
    finally:
        await tmux.kill()
        broker_process.stop()

    # One contact, answered once, ended once: the report and the store agree.
    with Store(broker_process.db) as store:
        (session,) = store.sessions.between(0, 2e9)
        assert session.state.value == "ended" and session.root_cause == "print spooler"
        assert session.requeues == 0 and session.verified
        kinds = [e[1] for e in store.sessions.events(session.id)]
        assert kinds.count("connected") == 1 and kinds.count("ended") == 1
        assert "suspended" in kinds
        actions = [r.action for r in store.audit.records(session.id)]
        assert actions.count("join") == 1 and "resume" in actions
    report = broker_process.assist("report", "--db", broker_process.db, "--json",
                                   "--since", "1d")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert figures["contacts"] == 1, figures
    audit = broker_process.assist("audit", "verify", "--db", broker_process.db)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # The recording is one file that plays, with both halves of the session in it.
    (cast,) = (broker_process.root / "recordings").glob("*.cast")
    played = asciinema_cat(cast, tmp_path / "asciinema")
    assert played.returncode == 0, played.stderr
    text = played.stdout.decode(errors="replace")
    assert "before-41" in text and "after-42" in text


def _descendant(pid: int, word: str) -> int:
    """The process under ``pid`` whose command line has ``word`` (the app, not its shell)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if word in cmdline and "sh -c" not in cmdline and (parent == pid or int(entry.name)
                                                           == pid):
            return int(entry.name)
        if parent == pid:
            found = _descendant(int(entry.name), word)
            if found:
                return found
    return 0


async def test_a_stopped_agent_is_noticed_and_told_when_it_wakes(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    try:
        await meet(tmux, broker, keys, "vpn down")
        pane = int((await tmux.run("display-message", "-p", "-t", "agent",
                                   "#{pane_pid}")).strip())
        console = _descendant(pane, "console") or pane
        stopped = time.monotonic()
        os.kill(console, signal.SIGSTOP)  # a frozen laptop: no FIN, no RST, silence
        try:
            screen = await tmux.wait_for("user", "back at the front", timeout=12)
            noticed = time.monotonic() - stopped
        finally:
            os.kill(console, signal.SIGCONT)
        assert noticed < 10, f"noticed after {noticed:.1f} s"
        assert "position 1" in screen
        # Awake again, the console says what happened while it was away.
        await tmux.wait_for("agent", "went back to the front of the queue", timeout=20)
        await tmux.wait_for("agent", "vpn down")  # and the user is in its queue again
    finally:
        await tmux.kill()
