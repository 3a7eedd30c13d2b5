"""Broker under a helpdesk's load: thousands waiting, hundreds of live sessions.

``assist serve`` runs as its own process on 127.0.0.1; users and agents run
in several other processes, each with its own registered key (one request
per key, as in real life)::

    python -m bench.load [--queued 2000] [--live 200] [--accepts 100] [--quick]

Phases, all against the same broker:

1. ``live``: that many agents each take a user; every such user's "shell"
   prints 100 bytes every 0.25 s for the rest of the run (the broker relays
   and records it; nobody reads it faster than an agent would);
2. ``fill``: the queue fills to ``--queued`` users, each timed from ``join``
   to its ``queued`` reply, after the SSH handshake;
3. ``route``: a few more agents take users from the head, one at a time,
   timed from ``accept`` to ``started`` (the user's side answered);
4. ``drain``: every agent takes users until the queue is empty.

Printed: join and routing latency (median, p99), broker CPU and RSS at each
phase, bytes each agent received per queue change (pages, then deltas), and
the time to drain. ``--quick`` runs a small version in well under a minute;
its last line is ``routing p99 X ms, join p99 Y ms, rss Z MB``. Targets at
full size: routing p99 < 50 ms, join p99 < 50 ms, RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh
from rich.console import Console
from rich.table import Table

from assist.cli.runtime import use_fast_loop
from assist.client import AgentClient, UserClient
from assist.client.link import BrokerError
from assist.core import pubkey
from assist.core.queueview import QueueMirror
from assist.errors import AssistError
from assist.protocol import encode
from assist.protocol import messages as m
from assist.store import Store
from assist.transport import ssh
from bench.broker import connect, start_broker
from bench.stats import percentile, print_table

TRICKLE = b"x" * 98 + b"\r\n"
TRICKLE_EVERY = 0.25


# -- keys ------------------------------------------------------------------------------------


def make_keys(directory: Path, prefix: str, count: int) -> list[Path]:
    """``count`` fresh Ed25519 key files named ``prefix-N``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        key = asyncssh.generate_private_key("ssh-ed25519")
        path = directory / f"{prefix}-{n}"
        key.write_private_key(str(path))
        key.write_public_key(f"{path}.pub")
        paths.append(path)
    return paths


def register(store: Store, role: str, keys: list[Path]) -> None:
    for path in keys:
        store.directory.add(role, path.name, pubkey.load(Path(f"{path}.pub")), 0)  # type: ignore[arg-type]


# -- worker processes ------------------------------------------------------------------------


class Users:
    """A worker process: user clients that wait, answer offers, and print when live."""

    def __init__(self, port: int, host_key: str, keys: list[Path]) -> None:
        self.port = port
        self.host_key = host_key
        self.keys = list(keys)
        self.clients: list[UserClient] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def join(self, count: int, topic: str, trickle: bool) -> list[float]:
        """Connect ``count`` users, then join them a few at a time; return join -> queued.

        The SSH handshakes come first, so that what is timed is the broker's
        answer, not this process busy with other users' handshakes.
        """
        todo = [self.keys.pop() for _ in range(count)]
        ready: list[UserClient] = []

        async def hello(key: Path) -> None:
            client = UserClient(await connect(self.port, self.host_key, "user", key))
            await client.hello()
            ready.append(client)

        for start in range(0, len(todo), 25):  # a few SSH handshakes at a time
            await asyncio.gather(*(hello(k) for k in todo[start : start + 25]))
        times: list[float] = []

        async def join(client: UserClient) -> None:
            start = time.perf_counter()
            await client.join(topic)
            times.append(time.perf_counter() - start)
            self.clients.append(client)
            self.tasks.add(asyncio.ensure_future(self._serve(client, trickle)))

        for start in range(0, len(ready), 4):
            await asyncio.gather(*(join(c) for c in ready[start : start + 4]))
        return times

    async def _serve(self, client: UserClient, trickle: bool) -> None:
        """Answer the offer; once live, print a line every 0.25 s (if ``trickle``)."""
        with contextlib.suppress(AssistError):
            async for event in client.events():
                if isinstance(event, m.Offered):
                    info = await client.ready(100, 30)
                    if trickle:
                        self.tasks.add(asyncio.ensure_future(self._trickle(client, info.session)))
                elif isinstance(event, m.Ended):
                    return

    @staticmethod
    async def _trickle(client: UserClient, session: str) -> None:
        with contextlib.suppress(AssistError):
            while not client.link.closed.is_set():
                await client.link.send(m.Output(session=session, data=TRICKLE))
                await asyncio.sleep(TRICKLE_EVERY)


class Agents:
    """A worker process: agent clients that take users and count what views cost them."""

    def __init__(self, port: int, host_key: str, keys: list[Path]) -> None:
        self.port = port
        self.host_key = host_key
        self.keys = list(keys)
        self.clients: list[AgentClient] = []
        self.view_bytes: dict[int, int] = {}
        self.mirrors: dict[int, QueueMirror] = {}
        self.live: dict[int, str] = {}
        self.readers: set[asyncio.Task[None]] = set()

    async def connect(self, count: int) -> None:
        todo = [self.keys.pop() for _ in range(count)]

        async def one(key: Path) -> None:
            client = AgentClient(await connect(self.port, self.host_key, "agent", key))
            index = len(self.clients)
            self.clients.append(client)
            self.view_bytes[index] = 0
            self.mirrors[index] = QueueMirror()
            self.readers.add(asyncio.ensure_future(self._read(index, client)))
            await client.hello()
            await client.set_status("available")

        for start in range(0, len(todo), 25):
            await asyncio.gather(*(one(k) for k in todo[start : start + 25]))

    async def _read(self, index: int, client: AgentClient) -> None:
        """Read every event, as a console does; count what the queue views cost."""
        async for msg in client.events():
            if isinstance(msg, m.QueuePage | m.QueueDelta):
                self.view_bytes[index] += len(encode(msg))
                self.mirrors[index].apply(msg)

    async def take_live(self, count: int) -> int:
        """The first ``count`` agents each take a user from the head and keep them."""
        async def one(index: int, client: AgentClient) -> None:
            info = await client.accept(timeout=60)
            self.live[index] = info.session

        await asyncio.gather(*(one(i, c) for i, c in enumerate(self.clients[:count])))
        return len(self.live)

    async def route(self, count: int, first: int) -> list[float]:
        """Agents from ``first`` on take ``count`` users in turn; accept -> started each."""
        times: list[float] = []
        helpers = self.clients[first:]
        for n in range(count):
            client = helpers[n % len(helpers)]
            start = time.perf_counter()
            info = await client.accept(timeout=30)
            times.append(time.perf_counter() - start)
            await client.end(info.session, "bench", True)
        return times

    async def drain(self) -> tuple[float, int]:
        """End the live sessions, then all agents take users until nobody waits."""
        for index, session in list(self.live.items()):
            with contextlib.suppress(AssistError):
                await self.clients[index].end(session, "bench", True)
        self.live.clear()
        served = 0
        start = time.perf_counter()

        async def worker(client: AgentClient) -> None:
            nonlocal served
            while True:
                try:
                    info = await client.accept(timeout=30)
                except BrokerError as exc:
                    if "empty" in exc.message or "not in the queue" in exc.message:
                        return
                    continue
                await client.end(info.session, "bench", True)
                served += 1

        await asyncio.gather(*(worker(c) for c in self.clients))
        return time.perf_counter() - start, served

    def views(self) -> dict[str, Any]:
        return {"bytes": list(self.view_bytes.values()),
                "sizes": [len(mi) for mi in self.mirrors.values()]}


async def worker_main(kind: str, port: int, host_key: str, keys_file: Path) -> None:
    """Run a worker: read commands as JSON lines on stdin, answer one JSON line each."""
    keys = [Path(p) for p in json.loads(keys_file.read_text())]
    side: Users | Agents = Users(port, host_key, keys) if kind == "users" else \
        Agents(port, host_key, keys)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        result: Any
        if op == "join":
            assert isinstance(side, Users)
            result = await side.join(cmd["count"], cmd["topic"], cmd["trickle"])
        elif op == "connect":
            assert isinstance(side, Agents)
            await side.connect(cmd["count"])
            result = len(side.clients)
        elif op == "take-live":
            assert isinstance(side, Agents)
            result = await side.take_live(cmd["count"])
        elif op == "route":
            assert isinstance(side, Agents)
            result = await side.route(cmd["count"], cmd["first"])
        elif op == "drain":
            assert isinstance(side, Agents)
            result = await side.drain()
        elif op == "views":
            assert isinstance(side, Agents)
            result = side.views()
        else:
            result = None
        print(json.dumps({"op": op, "result": result}), flush=True)


class Worker:
    """The coordinator's handle on a worker process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a worker died during {op}")
        return json.loads(line)["result"]

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 10)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# -- the broker's own figures ----------------------------------------------------------------


def usage(pid: int) -> tuple[float, float]:
    """CPU seconds used so far and resident memory in MB of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return cpu, rss


# -- the run ---------------------------------------------------------------------------------


async def run(queued: int, live: int, accepts: int, routers: int, user_procs: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"making {queued + live} user keys and {live + routers} agent keys...",
              file=sys.stderr)
        users = make_keys(root / "keys", "user", queued + live)
        agents = make_keys(root / "keys", "agent", live + routers)
        with Store(root / "b.db") as store:
            register(store, "user", users)
            register(store, "agent", agents)
        broker, port = await start_broker(root)
        host_key = ssh.openssh_key(asyncssh.read_private_key(str(root / "host_key")))
        workers: list[Worker] = []
        try:
            head, rest = users[:accepts], users[accepts:]
            for kind, share in [("agents", [agents[:live]]), ("agents", [agents[live:]]),
                                ("users", [head]),
                                ("users", [rest[i::user_procs] for i in range(user_procs)])]:
                for part in share:
                    keys_file = root / f"worker-{len(workers)}.json"
                    keys_file.write_text(json.dumps([str(p) for p in part]))
                    workers.append(Worker(await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "bench.load", "--worker", kind, "--port",
                        str(port), "--host-key", host_key, "--keys", str(keys_file),
                        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)))
            return await measure(broker.pid, workers[0], workers[1], workers[2], workers[3:],
                                 queued, live, accepts, routers)
        finally:
            for w in workers:
                await w.stop()
            broker.terminate()
            await broker.wait()


async def measure(pid: int, agents: Worker, router: Worker, head: Worker, users: list[Worker],
                  queued: int, live: int, accepts: int, routers: int) -> str:
    """Run the phases.

    ``head`` holds the users who will be routed (first in the queue) and
    ``router`` the agents who route them, each in a process of its own and as
    light on their machine as a real user or agent is; ``agents`` hold the
    live sessions, ``users`` everyone else.
    """
    phases: list[tuple[str, float, float, float]] = []
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        cpu, rss = usage(pid)
        now = time.perf_counter()
        phases.append((name, now - clock, cpu, rss))
        clock = now

    phase("started")
    # 1. live sessions, printing.
    await agents.ask("connect", count=live)
    await router.ask("connect", count=routers)
    per = -(-live // len(users))
    await asyncio.gather(*(u.ask("join", count=min(per, live - i * per), topic="live",
                                 trickle=True) for i, u in enumerate(users)))
    taken = await agents.ask("take-live", count=live)
    phase(f"{taken} live sessions")
    # 2. the queue fills: the users to be routed first, then everyone else.
    joins = await head.ask("join", count=accepts, topic="routed", trickle=False)
    rest = queued - accepts
    per = -(-rest // len(users))
    parts = await asyncio.gather(*(u.ask("join", count=min(per, rest - i * per),
                                         topic="waiting for help", trickle=False)
                                   for i, u in enumerate(users)))
    joins += [t for part in parts for t in part]
    phase(f"{len(joins)} queued")
    await asyncio.sleep(2.0)  # views settle; the trickle goes on
    before = await agents.ask("views")
    # 3. routing with the queue full.
    routing = await router.ask("route", count=accepts, first=0)
    phase(f"{accepts} routed")
    await asyncio.sleep(1.0)  # the last deltas arrive
    after = await agents.ask("views")
    # 4. drain.
    (drained, served), (drained2, served2) = await asyncio.gather(agents.ask("drain"),
                                                                  router.ask("drain"))
    drained, served = max(drained, drained2), served + served2
    phase(f"drained ({served} served)")
    changes = accepts  # each routed user left the queue
    per_change = [(b - a) / changes for a, b in zip(before["bytes"], after["bytes"],
                                                    strict=True)]
    print_table(f"broker load (separate process, 127.0.0.1): {queued} queued, {taken} live "
                "sessions printing 100 B every 0.25 s", [
                    ("join -> queued (after the SSH handshake)", len(joins), joins,
                     "p99 < 50 ms"),
                    ("routing: accept -> session started", len(routing), routing,
                     "p99 < 50 ms"),
                ])
    table = Table(title="broker process")
    for column in ("phase", "took s", "CPU s (total)", "RSS MB"):
        table.add_column(column)
    for name, took, cpu, rss in phases:
        table.add_row(name, f"{took:.1f}", f"{cpu:.1f}", f"{rss:.0f}")
    Console(width=100).print(table)
    views = Table(title="queue views per agent")
    for column in ("measure", "median", "max"):
        views.add_column(column)
    views.add_row("first page set (bytes)", f"{statistics.median(before['bytes']):.0f}",
                  f"{max(before['bytes']):.0f}")
    views.add_row("bytes per queue change", f"{statistics.median(per_change):.0f}",
                  f"{max(per_change):.0f}")
    views.add_row("queue length seen by agents", f"{statistics.median(after['sizes']):.0f}",
                  f"{max(after['sizes']):.0f}")
    Console(width=100).print(views)
    rss = max(p[3] for p in phases)
    print(f"drain: {served} users served in {drained:.1f} s "
          f"({served / max(drained, 1e-9):.0f} a second)")
    return (f"routing p99 {percentile(routing, 99) * 1000:.1f} ms, join p99 "
            f"{percentile(joins, 99) * 1000:.1f} ms, rss {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queued", type=int, default=2000, help="users waiting")
    parser.add_argument("--live", type=int, default=200, help="live sessions (agents)")
    parser.add_argument("--accepts", type=int, default=100, help="routings timed")
    parser.add_argument("--routers", type=int, default=10, help="agents that do the timing")
    parser.add_argument("--user-procs", type=int, default=2, help="user worker processes")
    parser.add_argument("--quick", action="store_true",
                        help="a small run (300 queued, 30 live) in well under a minute")
    parser.add_argument("--worker", choices=("users", "agents"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--host-key", help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_fast_loop()  # as the assist commands do
    if args.worker:
        asyncio.run(worker_main(args.worker, args.port, args.host_key, args.keys))
        return
    if args.quick:
        args.queued, args.live, args.accepts = 300, 30, 40
    print(asyncio.run(run(args.queued, args.live, args.accepts, args.routers,
                          args.user_procs)))


if __name__ == "__main__":
    main()
