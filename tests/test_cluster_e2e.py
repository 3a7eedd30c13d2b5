"""Two real `assist serve` nodes on PostgreSQL and NATS, the real apps in tmux.

alice's `assist help` is on node 1, carol's `assist console` on node 2:
carol takes alice across the nodes, verifies her, is allowed to type and
types; then node 1 is killed (SIGKILL) and the session goes on through node 2.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assist.core import pubkey
from assist.store import Store
from tests import servers
from tests.conftest import missing
from tests.helpers import KeyPair
from tests.tmux import Tmux, meet, take_control

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


class Node:
    """``assist serve`` as a node of a helpdesk, in its own process."""

    def __init__(self, root: Path, name: str, db: str, bus: str) -> None:
        self.root, self.name, self.db, self.bus = root, name, db, bus
        self.port = servers.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (root / name).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        env = {**os.environ, "ASSIST_CONFIG_DIR": str(self.root / self.name / "cfg"),
               "ASSIST_DATA_DIR": str(self.root / self.name / "data"),
               "ASSIST_BROKER_NAME": "test-broker",
               "ASSIST_BROKER_RECORDINGS": str(self.root / self.name / "recordings"),
               "ASSIST_BROKER_AGENT_GRACE": "30"}
        log = (self.root / self.name / "log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assist", "serve", "--port", str(self.port), "--db",
             self.db, "--bus", self.bus, "--node", self.name, "--host-key",
             str(self.root / "host_key"), "-v"], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"node {self.name} did not start: {self.log()}")

    def log(self) -> str:
        return (self.root / self.name / "log").read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nodes(tmp_path: Path, keys: dict[str, KeyPair], postgres_cluster: servers.Postgres
          ) -> Iterator[tuple[Node, Node]]:
    if servers.NATS_SERVER is None:
        missing(servers.NATS_MISSING)
    db = postgres_cluster.database()
    with Store(db) as store:
        store.directory.add("user", "alice", pubkey.load(keys["alice"].public), time.time())
        store.directory.add("agent", "carol", pubkey.load(keys["carol"].public), time.time())
    with servers.nats() as bus:
        pair = (Node(tmp_path, "n1", db, bus.url), Node(tmp_path, "n2", db, bus.url))
        for node in pair:
            node.start()
        try:
            yield pair
        finally:
            for node in pair:
                node.stop()
    postgres_cluster.drop(db)


@pytest.mark.parametrize("killed", ["users", "agents"])
async def test_across_two_nodes_and_on_through_one_when_the_other_is_killed(
        nodes: tuple[Node, Node], keys: dict[str, KeyPair], killed: str) -> None:
    n1, n2 = nodes
    survivor = n2 if killed == "users" else n1
    both = f"127.0.0.1:{n1.port},127.0.0.1:{n2.port}"
    tmux = Tmux()
    try:
        await meet(tmux, both, keys, "printer jam",
                   agent_address=f"127.0.0.1:{n2.port},127.0.0.1:{n1.port}")
        await take_control(tmux)
        await tmux.keys("agent", "-l", "echo typed-$((40+2))")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "typed-42")
        await tmux.wait_for("agent", "typed-42")

        if killed == "users":
            n1.kill()  # alice's node, the session's owner: n2 takes it over
            await tmux.wait_for("user", "reconnected: the session goes on", timeout=30)
        else:
            n2.kill()  # carol's node: her console fails over to n1, which holds it
            await tmux.wait_for("agent", "Reconnected: the session goes on", timeout=40)
        await tmux.keys("user", "echo after-$((40+3))", "Enter")
        screen = await tmux.wait_for("agent", "after-43", timeout=40)
        assert "typed-42" in screen, "the agent's view kept the session's screen"
        await tmux.keys("agent", "-l", "echo still-typing-$((40+4))")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "still-typing-44", timeout=15)

        await tmux.keys("agent", "F10")
        await tmux.wait_for("agent", "what was the root cause")
        await tmux.keys("agent", "-l", "print spooler")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("user", "How satisfied")
        await tmux.keys("user", "4")
        await tmux.wait_for("user", "Thank you")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nn1: {n1.log()}\nn2: {n2.log()}") from None
    finally:
        await tmux.kill()

    with Store(n1.db) as store:
        (session,) = store.sessions.between(0, 2e9)
        assert session.state.value == "ended" and session.root_cause == "print spooler"
        assert session.requeues == 0 and session.verified
        kinds = [e[1] for e in store.sessions.events(session.id)]
        assert kinds.count("queued") == 1 and kinds.count("connected") == 1
        assert kinds.count("ended") == 1
        assert ("moved" in kinds) == (killed == "users")
        assert store.sessions.holder(session.id) == survivor.name
        store.audit.verify()
    audit = subprocess.run([sys.executable, "-m", "assist", "audit", "verify", "--db", n1.db],
                           capture_output=True, text=True, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
