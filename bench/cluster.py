"""A helpdesk of three nodes: cross-node keystroke echo against one node, and failover.

Starts a private PostgreSQL and ``nats-server`` on 127.0.0.1 and three
``assist serve`` nodes on them (one host key), then, in one run::

    python -m bench.cluster [--keys 150] [--blocks 3]

* keystroke echo, one node: the user and the agent on node 1 (the agent
  verified and granted control, typing one key at a time, timed until the
  echo is parsed into its view, as in :mod:`bench.session`);
* keystroke echo, across nodes: the user on node 1, the agent on node 2
  (its keys and the user's screen cross the bus), in turns with the first;
  the ratio of the medians (target within 1.5x);
* failover: a user waits on node 3, node 3 is killed (SIGKILL), and the time
  until a survivor holds the user's place (in the store) is measured, with
  the time until an agent on node 1 sees the place again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
from rich.console import Console

from assist.cli.runtime import use_fast_loop
from assist.client import AgentClient
from assist.core import pubkey
from assist.protocol import messages as m
from assist.store import Store
from assist.transport import ssh
from bench.broker import connect, make_key, start_broker
from bench.session import AgentSide, Child
from bench.stats import percentile, print_table
from tests.servers import nats, postgres


async def user_process(port: int, host_key: str, key: Path, state: Path) -> Child:
    """A user process (the one of :mod:`bench.session`) that asks help at ``port``."""
    return Child(await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.session", "--user", "--port", str(port),
        "--host-key", host_key, "--key", str(key), "--state", str(state),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))


async def echo_block(child: Child, side: AgentSide, keys: int) -> list[float]:
    """One session: the user joins, the agent takes it, types ``keys`` keys, ends it."""
    agent = side.agent
    child.send("join")
    await agent.link.wait_for(lambda msg: isinstance(msg, m.QueueDelta) and bool(msg.joined),
                              30)
    side.first_frame = asyncio.get_running_loop().create_future()
    info = await agent.accept()
    await side.first_frame
    grant = await side.take_control(info.session)
    samples = await side.keystrokes(info.session, grant, keys)
    await agent.end(info.session, "bench", True)
    await child.answer("ended")
    return samples


async def agent_at(port: int, host_key: str, key: Path) -> AgentSide:
    agent = AgentClient(await connect(port, host_key, "agent", key))
    await agent.hello()
    await agent.set_status("available")
    side = AgentSide(agent)
    side.watch_marks = False
    side.tasks = [asyncio.ensure_future(side.pump()),  # type: ignore[attr-defined]
                  asyncio.ensure_future(side.frames())]
    return side


async def run(keys: int, blocks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres() as pg, nats() as bus:
        root = Path(tmp)
        url = pg.database("cluster")
        user_key = make_key(root / "user")
        agent_keys = [make_key(root / "agent1"), make_key(root / "agent2")]
        with Store(url) as store:
            store.directory.add("user", "bench-user", pubkey.load(Path(f"{user_key}.pub")), 0)
            for n, agent_key in enumerate(agent_keys, 1):
                store.directory.add("agent", f"agent{n}",
                                    pubkey.load(Path(f"{agent_key}.pub")), 0)
        nodes = [await start_broker(root / f"n{i}", db=url, args=(
            "--bus", bus.url, "--node", f"n{i}", "--host-key", str(root / "host_key")))
            for i in (1, 2, 3)]
        host_key = ssh.openssh_key(asyncssh.read_private_key(str(root / "host_key")))
        ports = [port for _proc, port in nodes]
        child = await user_process(ports[0], host_key, user_key, root / "state")
        near = await agent_at(ports[0], host_key, agent_keys[0])
        far = await agent_at(ports[1], host_key, agent_keys[1])
        one: list[float] = []
        across: list[float] = []
        try:
            for _ in range(blocks):  # in turns: the shared machine's noise hits both alike
                one += await echo_block(child, near, keys // blocks)
                across += await echo_block(child, far, keys // blocks)
            failover, seen = await kill_and_time(root, url, ports, host_key, user_key, near,
                                                 nodes[2][0])
        finally:
            for side in (near, far):
                for task in side.tasks:  # type: ignore[attr-defined]
                    task.cancel()
                await side.agent.link.close()
            if child.proc.stdin is not None:
                child.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.proc.wait(), 5)
            for proc, _port in nodes:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                await proc.wait()
    print_table("three nodes on one PostgreSQL and one NATS, 127.0.0.1", [
        ("keystroke -> echo, user and agent on node 1", len(one), one, "baseline"),
        ("keystroke -> echo, user on node 1, agent on node 2", len(across), across,
         "<= 1.5x the baseline"),
        ("node killed -> a survivor holds its user's place", 1, [failover], "< 5 s"),
        ("node killed -> an agent on node 1 sees the place", 1, [seen], ""),
    ])
    Console(width=100).print(
        f"cross-node / one node: median {statistics.median(across) / statistics.median(one):.2f}x,"
        f" p99 {percentile(across, 99) / percentile(one, 99):.2f}x (target <= 1.5)")


async def kill_and_time(root: Path, url: str, ports: list[int], host_key: str, key: Path,
                        watcher: AgentSide, victim: asyncio.subprocess.Process
                        ) -> tuple[float, float]:
    """A user waits on node 3; kill node 3; seconds until a survivor holds the place,
    and until the agent on node 1 sees it back."""
    child = await user_process(ports[2], host_key, key, root / "state3")
    child.send("join")
    delta = await watcher.agent.link.wait_for(
        lambda msg: isinstance(msg, m.QueueDelta) and bool(msg.joined), 30)
    assert isinstance(delta, m.QueueDelta)
    session = delta.joined[0].session
    seen = asyncio.ensure_future(watcher.agent.link.wait_for(
        lambda msg: isinstance(msg, m.QueueDelta) and any(
            e.session == session for e in (*msg.joined, *msg.changed)), 30))
    await asyncio.sleep(0.5)
    victim.kill()
    killed = time.perf_counter()
    held = float("inf")
    with Store(url) as store:
        while time.perf_counter() - killed < 30:
            if store.sessions.holder(session) != "n3":
                held = time.perf_counter() - killed
                break
            await asyncio.sleep(0.02)
    with contextlib.suppress(TimeoutError):
        await seen
    shown = time.perf_counter() - killed
    child.proc.kill()
    await child.proc.wait()
    return held, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=150, help="keystrokes timed each way")
    parser.add_argument("--blocks", type=int, default=3, help="turns of each")
    args = parser.parse_args()
    use_fast_loop()
    asyncio.run(run(args.keys, args.blocks))


if __name__ == "__main__":
    main()
