"""A helpdesk of three nodes: cross-node keystroke echo against one node, and failover.

Starts a private PostgreSQL and ``nats-server`` on 127.0.0.1 and three
``assist serve`` nodes on them (one host key), then, in one run::

    python -m bench.cluster [--keys 150] [--blocks 3]

* keystroke echo, one node: the user and the agent on node 1 (the agent
  verified and granted control, typing one key at a time, timed until the
  echo is parsed into its view, as in :mod:`bench.session`);
* keystroke echo, across nodes: the user on node 1, the agent on node 2
  (its keys and the user's screen cross the bus), in turns with the first;
  the ratio of the medians (target within 1.5x); and in the same turns, the
  floor the bus sets: one round trip through NATS alone (:mod:`bench.relay`);
* failover: a user waits on node 3, node 3 is killed (SIGKILL), and the time
  until a survivor holds the user's place (in the store) is measured, with
  the time until an agent on node 1 sees the place again;
* load (``--queued``, default 2,000): users join, then agents take the first
  ``--accepts`` one at a time (accept -> started), then every agent takes
  users until nobody waits; once with every client on node 1, once with the
  users spread over the three nodes and the agents on node 2 (so most
  accepts cross the bus), in separate worker processes (those of
  :mod:`bench.load`): join and routing median and p99, and the throughput
  of joining and of draining, one node against three.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from bench.load import Worker, make_keys, register
from bench.relay import nats_round_trips
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


class Agents:
    """The agents this bench connects itself (the console's view of each), closed once."""

    def __init__(self) -> None:
        self.open: dict[AgentSide, list[asyncio.Task[None]]] = {}

    async def at(self, port: int, host_key: str, key: Path) -> AgentSide:
        """An agent at ``port``, available, its view kept as the console keeps it."""
        agent = AgentClient(await connect(port, host_key, "agent", key))
        await agent.hello()
        await agent.set_status("available")
        side = AgentSide(agent)
        side.watch_marks = False
        self.open[side] = [asyncio.ensure_future(side.pump()),
                           asyncio.ensure_future(side.frames())]
        return side

    async def leave(self, *sides: AgentSide) -> None:
        """Disconnect ``sides`` (every agent still here, if none is named)."""
        for side in sides or list(self.open):
            for task in self.open.pop(side, []):
                task.cancel()
            with contextlib.suppress(Exception):
                await side.agent.link.close()


async def load(root: Path, ports: list[int], host_key: str, users: list[Path],
               agents: list[Path], accepts: int, spread: bool) -> dict[str, list[float]]:
    """One load round (see the module's docstring); its samples by measure."""
    user_ports = ports if spread else ports[:1]
    agent_port = ports[1] if spread else ports[0]
    workers: list[Worker] = []

    async def worker(kind: str, port: int, keys: list[Path]) -> Worker:
        keys_file = root / f"worker-{len(workers)}-{spread}.json"
        keys_file.write_text(json.dumps([str(p) for p in keys]))
        started = Worker(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load", "--worker", kind, "--port", str(port),
            "--host-key", host_key, "--keys", str(keys_file),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        workers.append(started)
        return started

    try:
        router = await worker("agents", agent_port, agents)
        head = await worker("users", user_ports[0], users[:accepts])
        rest = users[accepts:]
        shares = [rest[i::len(user_ports)] for i in range(len(user_ports))]
        crowd = [(await worker("users", port, share), len(share))
                 for port, share in zip(user_ports, shares, strict=True)]
        await router.ask("connect", count=len(agents))
        started = time.perf_counter()
        joins = await head.ask("join", count=accepts, topic="routed", trickle=False)
        parts = await asyncio.gather(*(w.ask("join", count=count, topic="waiting",
                                             trickle=False) for w, count in crowd))
        joined = time.perf_counter() - started
        joins += [t for part in parts for t in part]
        await asyncio.sleep(2.0)  # every node's mirror settles
        routing = await router.ask("route", count=accepts, first=0)
        drained, served = await router.ask("drain")
        return {"joins": joins, "routing": routing, "join_rate": [len(joins) / joined],
                "drain_rate": [served / max(drained, 1e-9)]}
    finally:
        for w in workers:
            await w.stop()


async def run(keys: int, blocks: int, queued: int, accepts: int) -> None:
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
        agents = Agents()
        near = await agents.at(ports[0], host_key, agent_keys[0])
        far = await agents.at(ports[1], host_key, agent_keys[1])
        one: list[float] = []
        across: list[float] = []
        floor: list[float] = []
        try:
            async with nats_round_trips(bus.url) as round_trips:
                for _ in range(blocks):  # in turns: the shared machine's noise hits all alike
                    one += await echo_block(child, near, keys // blocks)
                    across += await echo_block(child, far, keys // blocks)
                    floor += await round_trips(keys // blocks)
            await agents.leave(near, far)  # their part is done; the load rounds have their own
            crowd = make_keys(root / "crowd", "user", queued)
            helpers = make_keys(root / "crowd", "agent", 10)
            with Store(url) as store:
                register(store, "user", crowd)
                register(store, "agent", helpers)
            rounds = {spread: await load(root, ports, host_key, crowd, helpers, accepts, spread)
                      for spread in (False, True)}
            watcher = await agents.at(ports[0], host_key, agent_keys[0])
            failover, seen = await kill_and_time(root, url, ports, host_key, user_key, watcher,
                                                 nodes[2][0])
        finally:
            await agents.leave()
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
        ("floor: one round trip through NATS in nats-py, nothing else", len(floor), floor,
         "same run (bench.relay)"),
        ("node killed -> a survivor holds its user's place", 1, [failover], "< 5 s"),
        ("node killed -> an agent on node 1 sees the place", 1, [seen], ""),
        *[(f"{where}: join -> queued", len(r["joins"]), r["joins"], "p99 < 50 ms")
          for where, r in (("one node", rounds[False]), ("three nodes", rounds[True]))],
        *[(f"{where}: accept -> started", len(r["routing"]), r["routing"], "p99 < 50 ms")
          for where, r in (("one node", rounds[False]), ("three nodes", rounds[True]))],
    ])
    for what, key in (("joins", "join_rate"), ("users drained", "drain_rate")):
        one_rate, three_rate = rounds[False][key][0], rounds[True][key][0]
        Console(width=100).print(f"{what} a second: one node {one_rate:.0f}, three nodes "
                                 f"{three_rate:.0f} ({three_rate / one_rate:.2f}x)")
    Console(width=100).print(
        f"cross-node / one node: median {statistics.median(across) / statistics.median(one):.2f}x,"
        f" p99 {percentile(across, 99) / percentile(one, 99):.2f}x (target <= 1.5)")
    extra = statistics.median(across) - statistics.median(one)
    Console(width=100).print(
        f"crossing the nodes adds {extra * 1000:.2f} ms at the median; one round trip "
        f"through NATS alone takes {statistics.median(floor) * 1000:.2f} ms")


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
    parser.add_argument("--queued", type=int, default=2000, help="users in the load rounds")
    parser.add_argument("--accepts", type=int, default=100, help="accepts timed per round")
    args = parser.parse_args()
    use_fast_loop()
    asyncio.run(run(args.keys, args.blocks, args.queued, args.accepts))


if __name__ == "__main__":
    main()
