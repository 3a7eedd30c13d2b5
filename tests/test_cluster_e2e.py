"""Two real `assist serve` nodes on PostgreSQL and NATS, the real apps in tmux.

alice's `assist help` is on node 1, carol's `assist console` on node 2:
carol takes alice across the nodes, verifies her, is allowed to type and
types; then node 1 is killed (SIGKILL) and the session goes on through node 2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assist.core import pubkey
from assist.store import Store
from tests import servers
from tests.helpers import KeyPair
from tests.serve import ServeProcess
from tests.tmux import Tmux, end_with_survey, meet, take_control

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


@pytest.fixture
def nodes(tmp_path: Path, keys: dict[str, KeyPair], postgres_cluster: servers.Postgres,
          nats_server: servers.Nats) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    db = postgres_cluster.database()
    with Store(db) as store:
        store.directory.add("user", "alice", pubkey.load(keys["alice"].public), time.time())
        store.directory.add("agent", "carol", pubkey.load(keys["carol"].public), time.time())
    pair = tuple(ServeProcess(tmp_path / name, servers.free_port(), db, tmp_path / "host_key",
                              ("--bus", nats_server.url, "--node", name))
                 for name in ("n1", "n2"))
    for node in pair:
        node.start()
    try:
        yield pair  # type: ignore[misc]
    finally:
        for node in pair:
            node.stop()
        postgres_cluster.drop(db)


@pytest.mark.parametrize("killed", ["users", "agents"])
async def test_across_two_nodes_and_on_through_one_when_the_other_is_killed(
        nodes: tuple[ServeProcess, ServeProcess], keys: dict[str, KeyPair], killed: str) -> None:
    n1, n2 = nodes
    survivor = "n2" if killed == "users" else "n1"
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

        await end_with_survey(tmux, "print spooler")
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
        assert store.sessions.holder(session.id) == survivor
        store.audit.verify()
    audit = subprocess.run([sys.executable, "-m", "assist", "audit", "verify", "--db", n1.db],
                           capture_output=True, text=True, check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # Each node that held the session recorded its part; the store says where.
    files = {f.node: Path(f.path) for f in Store(n1.db).recordings.of(session.id)}
    assert set(files) == ({"n1", "n2"} if killed == "users" else {"n1"})
    shown = n2.assist("replay", session.id, "--db", n1.db, "--json")
    assert shown.returncode == 0, shown.stderr
    assert all(str(path) in shown.stdout for path in files.values())  # each file, in order
    for path in files.values():
        path.rename(path.with_suffix(".moved"))
    gone = n2.assist("replay", session.id, "--db", n1.db)
    assert gone.returncode == 1 and "not on this machine" in gone.stderr
    assert "node n1" in gone.stderr and "Traceback" not in gone.stderr
