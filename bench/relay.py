"""The floors under assist's keystroke echo: SSH crossings in asyncssh, a NATS round trip.

An agent's keystroke reaches the user's shell through the broker, and its
echo comes back the same way: four SSH crossings between three processes,
all in Python (asyncssh). This measures those crossings alone, with none of
assist's work: a client sends a keystroke-sized line to a relay process
(an asyncssh server), which passes the bytes over a second SSH connection
to an echo process and the answer back, with the same ciphers and transport
settings as assist (:mod:`assist.transport.ssh`), on uvloop, on 127.0.0.1::

    python -m bench.relay [--keys 1000]

bench/session.py prints it next to assist's echo and ``ssh -tt`` + ``tmux
attach``: what asyncssh costs by itself, and what assist adds on top.

Across nodes an agent's keystroke and its echo each cross the bus once: one
round trip through ``nats-server`` in nats-py, which :func:`nats_round_trips`
measures alone (a publisher here, an echo in another process), for
bench/cluster.py to print next to the cross-node echo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncssh

from assist.cli.runtime import use_fast_loop
from assist.transport import ssh_packets
from assist.transport.ssh import CIPHERS, WINDOW
from bench.stats import print_table

LINE = b'{"t":"keys","session":"c828bc531f6f","grant":"b59503e103b9","data":"OA=="}\n'
"""The size of an agent's keystroke as it goes to the broker."""
WARMUP = 100


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return True


def _options() -> dict[str, object]:
    return {"encryption_algs": CIPHERS, "compression_algs": None}


async def _listen(process: Callable[[asyncssh.SSHServerProcess[bytes]], Awaitable[None]]
                  ) -> None:
    server = await asyncssh.create_server(
        _Server, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        process_factory=process, encoding=None, window=WINDOW, **_options())
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def _connect(port: int) -> tuple[asyncssh.SSHClientConnection,
                                       asyncssh.SSHWriter[bytes], asyncssh.SSHReader[bytes]]:
    conn = await asyncssh.connect(
        "127.0.0.1", port, username="bench", known_hosts=None,
        client_keys=[asyncssh.generate_private_key("ssh-ed25519")], **_options())
    writer, reader, _ = await conn.open_session(encoding=None)
    return conn, writer, reader


async def serve_echo() -> None:
    """The user's end: send back what comes."""
    async def process(proc: asyncssh.SSHServerProcess[bytes]) -> None:
        while data := await proc.stdin.read(65536):
            proc.stdout.write(data)

    await _listen(process)


async def serve_relay(to: int) -> None:
    """The broker: pass bytes on to the echo process and its answers back."""
    async def process(proc: asyncssh.SSHServerProcess[bytes]) -> None:
        conn, writer, reader = await _connect(to)

        async def back() -> None:
            while data := await reader.read(65536):
                proc.stdout.write(data)

        answers = asyncio.ensure_future(back())
        while data := await proc.stdin.read(65536):
            writer.write(data)
        answers.cancel()
        conn.close()

    await _listen(process)


async def serve_nats_echo(url: str) -> None:
    """The other node: publish back on ``bench.back`` what comes on ``bench.to``."""
    import nats

    client = await nats.connect(url)

    async def echo(msg: Any) -> None:
        await client.publish("bench.back", msg.data)

    await client.subscribe("bench.to", cb=echo)
    await client.flush()
    print(0, flush=True)
    await asyncio.Event().wait()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.relay", *args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"bench.relay {' '.join(args)} did not start")
        return proc, int(line)
    except BaseException:
        await _stop(proc)  # not left running behind a bench that gave up
        raise


@contextlib.asynccontextmanager
async def ssh_relay() -> AsyncIterator[Callable[[int], Awaitable[list[float]]]]:
    """A running relay chain: yields ``send(count)``, seconds per line to its echo."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        echo, echo_port = await _start("--echo")
        procs.append(echo)
        relay, relay_port = await _start("--relay", str(echo_port))
        procs.append(relay)
        conn, writer, reader = await _connect(relay_port)

        async def send(count: int) -> list[float]:
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                writer.write(LINE)
                got = 0
                while got < len(LINE):
                    data = await reader.read(65536)
                    if not data:
                        raise RuntimeError("the relay closed the connection")
                    got += len(data)
                samples.append(time.perf_counter() - start)
            return samples

        await send(WARMUP)
        try:
            yield send
        finally:
            conn.close()
    finally:
        for proc in procs:
            await _stop(proc)


@contextlib.asynccontextmanager
async def nats_round_trips(url: str) -> AsyncIterator[Callable[[int], Awaitable[list[float]]]]:
    """An echo on the NATS server at ``url``: yields ``send(count)``, seconds per round trip."""
    import nats

    echo, _ = await _start("--nats-echo", url)
    client: Any = None
    try:
        client = await nats.connect(url)
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []

        async def back(msg: Any) -> None:
            if waiting and not waiting[0].done():
                waiting[0].set_result(None)

        await client.subscribe("bench.back", cb=back)
        await client.flush()

        async def send(count: int) -> list[float]:
            samples = []
            for _ in range(count):
                waiting[:] = [loop.create_future()]
                start = time.perf_counter()
                await client.publish("bench.to", b"D" + LINE)
                await asyncio.wait_for(waiting[0], 5)
                samples.append(time.perf_counter() - start)
            return samples

        await send(WARMUP)
        yield send
    finally:
        if client is not None:
            await client.close()
        await _stop(echo)


async def _measure(keys: int) -> list[float]:
    async with ssh_relay() as send:
        return await send(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1000, help="lines timed")
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nats-echo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_fast_loop()
    ssh_packets.install()
    if args.echo:
        asyncio.run(serve_echo())
    elif args.nats_echo:
        asyncio.run(serve_nats_echo(args.nats_echo))
    elif args.relay:
        asyncio.run(serve_relay(args.relay))
    else:
        samples = asyncio.run(_measure(args.keys))
        print_table("four SSH crossings in asyncssh through a relay process (127.0.0.1)", [
            ("line -> its echo, client -> relay -> echo and back", len(samples), samples,
             "the floor under assist's keystroke echo"),
        ])


if __name__ == "__main__":
    main()
