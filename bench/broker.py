"""Broker benchmarks: connect-to-queued and routing latency with a full queue.

Runs ``assist serve`` as a real separate process on 127.0.0.1 (port 0) and
real SSH clients against it::

    python -m bench.broker [--queued 1000] [--joins 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

from assist.cli.runtime import use_fast_loop
from assist.client import AgentClient, Link, UserClient
from assist.core import pubkey
from assist.protocol import messages as m
from assist.store import Store
from assist.transport import ssh
from bench.stats import print_table

_DRAINS: set[asyncio.Future[bytes]] = set()


async def start_broker(root: Path, db: str | None = None, args: tuple[str, ...] = (),
                       **settings: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``assist serve`` on port 0 and return it with its port.

    ``db``: the store (default: a SQLite file in ``root``); ``args``: more
    options (``--bus``, ``--node``); ``settings`` are broker settings
    (``requests_per_key="0"``), passed as ``ASSIST_BROKER_*`` variables.
    """
    env = {**os.environ, "ASSIST_CONFIG_DIR": str(root / "cfg"),
           "ASSIST_DATA_DIR": str(root / "data"), "ASSIST_STATE_DIR": str(root / "state"),
           **{f"ASSIST_BROKER_{k.upper()}": v for k, v in settings.items()}}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assist", "serve", "--port", "0", "--db", db or str(root / "b.db"),
        "--host-key", str(root / "host_key"), *args, env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise RuntimeError("broker did not start")
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            _DRAINS.add(asyncio.ensure_future(proc.stderr.read()))  # keep draining its log
            return proc, int(found.group(1))


def make_key(path: Path) -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    key.write_public_key(str(path) + ".pub")
    return path


async def connect(port: int, host_key: str, role: str, key: Path) -> Link:
    conn = await ssh.connect("127.0.0.1", port, role, host_key, key)
    link = Link(conn.channel, on_close=conn.close)
    link.start()
    return link


async def run(queued: int, joins: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        user_key, agent_key = make_key(root / "user"), make_key(root / "agent")
        with Store(root / "b.db") as store:
            store.directory.add("user", "bench-user", pubkey.load(Path(f"{user_key}.pub")), 0)
            store.directory.add("agent", "bench-agent", pubkey.load(Path(f"{agent_key}.pub")), 0)
        # One key plays every user here: the limit of one request per key is lifted.
        proc, port = await start_broker(root, requests_per_key="0")
        host_key = ssh.openssh_key(asyncssh.read_private_key(str(root / "host_key")))
        try:
            await measure(port, host_key, user_key, agent_key, queued, joins)
        finally:
            proc.terminate()
            await proc.wait()


async def measure(port: int, host_key: str, user_key: Path, agent_key: Path,
                  queued: int, joins: int) -> None:
    # 1. connect-to-queued: SSH connect + auth + hello + join, fresh connection each time.
    to_queued: list[float] = []
    users: list[UserClient] = []
    for i in range(joins):
        start = time.perf_counter()
        client = UserClient(await connect(port, host_key, "user", user_key))
        await client.hello()
        await client.join(f"bench topic {i}")
        to_queued.append(time.perf_counter() - start)
        users.append(client)
    # 2. fill the queue to ``queued`` users from another process, so the position
    #    updates they receive do not load this measuring process.
    filler = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.broker", "--fill", str(queued - joins), "--port", str(port),
        "--host-key", host_key, "--key", str(user_key),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert filler.stdout is not None and filler.stdin is not None
    if (await filler.stdout.readline()).strip() != b"ready":
        raise RuntimeError("filler failed")
    by_session = {u.session: u for u in users}

    agent = AgentClient(await connect(port, host_key, "agent", agent_key))
    await agent.hello()
    list_times: list[float] = []
    accept_ok: list[float] = []
    accept_started: list[float] = []
    ping: list[float] = []
    for _ in range(50):
        start = time.perf_counter()
        await agent.link.request(m.Ping(), m.Pong)
        ping.append(time.perf_counter() - start)
    for _ in range(20):
        start = time.perf_counter()
        listing = await agent.queue()  # every page of it
        list_times.append(time.perf_counter() - start)
    assert len(listing.entries) == queued
    for _ in range(min(30, joins)):
        head = (await agent.queue(limit=1)).entries[0].session
        user = by_session[head]
        offered = asyncio.ensure_future(user.link.wait_for(
            lambda msg: isinstance(msg, m.Offered), 10))
        started = asyncio.ensure_future(agent.link.wait_for(
            lambda msg: isinstance(msg, m.Started), 10))
        start = time.perf_counter()
        await agent.link.request(m.Accept(session=head), m.Ok)
        accept_ok.append(time.perf_counter() - start)
        await offered
        await user.ready()
        await started
        accept_started.append(time.perf_counter() - start)
        await agent.end(head, "bench", True)
    print_table(
        f"broker (separate process, 127.0.0.1), {queued} users queued",
        [
            ("connect to queued (SSH+auth+hello+join)", joins, to_queued, "< 150 ms"),
            ("JSON round trip (ping)", len(ping), ping, "0.12-0.24 ms probe"),
            (f"list queue of {queued}", len(list_times), list_times, ""),
            ("routing: accept -> broker ok", len(accept_ok), accept_ok, "p99 < 50 ms"),
            ("routing: accept -> session started", len(accept_started), accept_started,
             "p99 < 50 ms"),
        ],
    )
    for u in users:
        await u.link.close()
    await agent.link.close()
    filler.stdin.close()
    await filler.wait()


async def fill(count: int, port: int, host_key: str, key: Path) -> None:
    """Child process: queue ``count`` users, say ready, hold them until stdin closes."""
    users = []
    while len(users) < count:
        links = await asyncio.gather(*(connect(port, host_key, "user", key)
                                       for _ in range(min(50, count - len(users)))))
        for link in links:
            client = UserClient(link)
            await client.hello()
            await client.join("filler")
            users.append(client)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for u in users:
        await u.link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--joins", type=int, default=50)
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--host-key", help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_fast_loop()  # as the assist commands do
    if args.fill is not None:
        asyncio.run(fill(args.fill, args.port, args.host_key, args.key))
    else:
        asyncio.run(run(args.queued, args.joins))


if __name__ == "__main__":
    main()
