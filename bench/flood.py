"""One client floods the broker; everyone else must not notice.

``assist serve`` runs as its own process on 127.0.0.1. One authenticated
user floods it three ways, one connection each (the broker cuts each off):

1. pings sent as fast as it can, never reading a reply;
2. 100,000 random frames (junk bytes, broken JSON, unknown types);
3. JSON nested thousands of levels deep.

Meanwhile, from another process, a canary agent pings every 20 ms and a
canary user joins the queue and leaves again, over and over::

    python -m bench.flood [--frames 100000] [--seconds 5]

Printed: the canaries' latency (median, p99) while the flood runs, next to
the same canaries before it; how each flood ended; and the broker's memory
growth. Last line: ``flood: canary p99 X ms, rss +Y MB``. Targets: canary
ping p99 < 20 ms, broker RSS growth < 32 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

from assist.cli.runtime import use_fast_loop
from assist.client import AgentClient, UserClient
from assist.errors import AssistError
from assist.protocol import encode
from assist.protocol import messages as m
from assist.store import Store
from assist.transport import ssh
from bench.broker import connect, start_broker
from bench.load import make_keys, register, usage
from bench.stats import percentile, print_table

PING_EVERY = 0.02
FLOODS = ("pings", "junk", "nested")


# -- the canaries (a process of their own) ---------------------------------------------------


async def canaries(port: int, host_key: str, agent_key: Path, user_key: Path) -> None:
    """Ping and join until stdin closes; print one JSON line of samples per ``mark``."""
    agent = AgentClient(await connect(port, host_key, "agent", agent_key))
    await agent.hello(watch=False)
    user = UserClient(await connect(port, host_key, "user", user_key))
    await user.hello()
    pings: list[tuple[float, float]] = []
    joins: list[tuple[float, float]] = []

    async def ping() -> None:
        while True:
            start = time.perf_counter()
            await agent.link.request(m.Ping(), m.Pong, timeout=30)
            pings.append((start, time.perf_counter() - start))
            await asyncio.sleep(PING_EVERY)

    async def join() -> None:
        while True:
            start = time.perf_counter()
            await user.join("canary")
            joins.append((start, time.perf_counter() - start))
            await user.leave()
            await asyncio.sleep(0.1)

    tasks = [asyncio.ensure_future(ping()), asyncio.ensure_future(join())]
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        since = float(line)
        print(json.dumps({"pings": [d for t, d in pings if t >= since],
                          "joins": [d for t, d in joins if t >= since]}), flush=True)
    for task in tasks:
        task.cancel()


# -- the floods ------------------------------------------------------------------------------


def junk(rng: random.Random, n: int) -> bytes:
    """One bad line: random bytes, broken JSON, or a type nobody knows."""
    kind = n % 4
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80))).replace(b"\n", b"")
    if kind == 1:
        return b'{"t":"join","topic":' + str(n).encode()
    if kind == 2:
        return b'{"t":"no-such-thing","rid":%d}' % n
    return b'{"t":"resize","session":"x","cols":%d,"rows":0}' % n


async def flood(port: int, host_key: str, key: Path, how: str, frames: int,
                seconds: float) -> str:
    """Flood on one connection; say how it ended."""
    conn = await ssh.connect("127.0.0.1", port, "user", host_key, key)
    channel = conn.channel
    rng = random.Random(7)
    sent = 0
    end = time.perf_counter() + seconds
    ping = encode(m.Ping())
    deep = b'{"t":"chat","session":"x","text":' + b"[" * 50_000 + b"]" * 50_000 + b"}\n"
    try:
        while time.perf_counter() < end and not channel.closed:
            if how == "pings":
                line = ping
            elif how == "junk":
                if sent >= frames:
                    break
                line = junk(rng, sent) + b"\n"
            else:
                line = deep
            channel.send_raw(line)
            sent += 1
            if sent % 200 == 0:
                await asyncio.sleep(0)  # let the transport move; never read
        # Give the broker time to cut us off (it may have already).
        with contextlib.suppress(TimeoutError, AssistError):
            await asyncio.wait_for(conn._conn.wait_closed(), max(0.5, end - time.perf_counter()))
        verdict = "cut off by the broker" if conn._conn.is_closed() else "still connected"
    finally:
        await conn.close()
    return f"{sent:,} lines sent, {verdict}"


# -- the run ---------------------------------------------------------------------------------


async def run(frames: int, seconds: float, floods: tuple[str, ...] = FLOODS) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        users = make_keys(root / "keys", "user", 2)
        agents = make_keys(root / "keys", "agent", 1)
        with Store(root / "b.db") as store:
            register(store, "user", users)
            register(store, "agent", agents)
        broker, port = await start_broker(root)
        host_key = ssh.openssh_key(asyncssh.read_private_key(str(root / "host_key")))
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.flood", "--canaries", "--port", str(port),
            "--host-key", host_key, "--agent-key", str(agents[0]),
            "--user-key", str(users[1]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None

        async def samples(since: float) -> dict[str, list[float]]:
            child.stdin.write(f"{since}\n".encode())  # type: ignore[union-attr]
            data: dict[str, list[float]] = json.loads(await child.stdout.readline())  # type: ignore[union-attr]
            return data

        try:
            await asyncio.sleep(1.0)
            quiet_from = time.perf_counter()
            await asyncio.sleep(seconds)
            quiet = await samples(quiet_from)
            _, rss_before = usage(broker.pid)
            peak = rss_before
            outcomes: list[tuple[str, str]] = []
            flood_from = time.perf_counter()
            watching = True

            async def watch() -> None:
                nonlocal peak
                while watching:
                    peak = max(peak, usage(broker.pid)[1])
                    await asyncio.sleep(0.05)

            watcher = asyncio.ensure_future(watch())
            for how in floods:
                started = time.perf_counter()
                outcome = await flood(port, host_key, users[0], how, frames, seconds)
                during = await samples(started)
                outcomes.append((how, f"{outcome}; canary ping p99 "
                                      f"{percentile(during['pings'], 99) * 1000:.1f} ms, "
                                      f"broker RSS {usage(broker.pid)[1]:.0f} MB"))
            watching = False
            await watcher
            loud = await samples(flood_from)
        finally:
            child.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 5)
            broker.terminate()
            await broker.wait()
    print_table("canaries while one client floods (broker in its own process, 127.0.0.1)", [
        ("canary agent ping, quiet", len(quiet["pings"]), quiet["pings"], ""),
        ("canary agent ping, during the flood", len(loud["pings"]), loud["pings"],
         "p99 < 20 ms"),
        ("canary user join, quiet", len(quiet["joins"]), quiet["joins"], ""),
        ("canary user join, during the flood", len(loud["joins"]), loud["joins"], ""),
    ])
    for how, outcome in outcomes:
        print(f"flood {how}: {outcome}")
    growth = peak - rss_before
    print(f"broker RSS {rss_before:.0f} MB before, {peak:.0f} MB at most during the flood")
    return (f"flood: canary p99 {percentile(loud['pings'], 99) * 1000:.1f} ms, "
            f"rss +{growth:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000, help="junk frames sent")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="longest each flood runs (and the quiet measurement)")
    parser.add_argument("--only", choices=FLOODS, action="append",
                        help="run only this flood (may be repeated)")
    parser.add_argument("--canaries", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--host-key", help=argparse.SUPPRESS)
    parser.add_argument("--agent-key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--user-key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_fast_loop()  # as the assist commands do
    if args.canaries:
        asyncio.run(canaries(args.port, args.host_key, args.agent_key, args.user_key))
        return
    result: Any = asyncio.run(run(args.frames, args.seconds, tuple(args.only or FLOODS)))
    print(result)


if __name__ == "__main__":
    main()
