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
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.core import pubkey
from assist.store import Store
from tests.helpers import KeyPair, asciinema_cat, store_at
from tests.serve import ServeProcess
from tests.servers import free_port
from tests.tmux import Tmux, end_with_survey, meet

pytestmark = [pytest.mark.slow, pytest.mark.stores,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


@pytest.fixture
async def broker_process(tmp_path: Path, keys: dict[str, KeyPair]
                         ) -> AsyncIterator[ServeProcess]:
    root = tmp_path / "b"
    process = ServeProcess(root, free_port(), store_at(root / "broker.db"), root / "host_key")
    with Store(process.db) as store:
        store.directory.add("user", "alice", pubkey.load(keys["alice"].public), time.time())
        store.directory.add("agent", "carol", pubkey.load(keys["carol"].public), time.time())
    process.start()
    yield process
    process.stop()


async def test_a_live_session_goes_on_after_the_broker_is_killed(
        broker_process: ServeProcess, keys: dict[str, KeyPair], tmp_path: Path) -> None:
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

        await end_with_survey(tmux, "print spooler")
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
