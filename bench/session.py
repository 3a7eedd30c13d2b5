"""Live-session benchmarks: accept to first frame, output to agent view, bulk output.

Three real processes on 127.0.0.1: ``assist serve`` (the broker), a user
process running a real shell in a pty through the same ``UserSession`` as
``assist help``, and this process as the agent with
the console's ``TerminalViewer``, parsed as messages arrive and once per frame
with the console's time budget::

    python -m bench.session [--rounds 15] [--marks 200] [--keys 200] [--mb 50] [--repeats 5]

Measures:

* accept -> first frame: the agent's accept request until the user's screen
  is on the agent's view (first snapshot parsed);
* output -> agent view: a line leaves the user's pty (read by assist) until
  it is parsed into the agent's screen (CLOCK_MONOTONIC is shared by the
  processes);
* agent keystroke -> echo: the agent, verified and granted control, types
  one key at a time; measured until the echo is parsed into its own view;
  in the same run, the same keystrokes through ``ssh -tt`` to a private
  sshd running ``tmux attach`` (:mod:`bench.sshd`), and the ratio; and
  the floor under it: the same four SSH crossings in asyncssh through a
  relay process doing nothing else (:mod:`bench.relay`);
* ``cat`` of a large file in the user's shell with sharing off and on,
  alternated in one session, and how long the agent's view takes to match
  the user's screen after the output stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
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
from assist.client import AgentClient
from assist.client.share import TerminalViewer
from assist.client.user_events import GrantAsked, UserEvent
from assist.client.user_session import UserSession
from assist.config import ClientConfig
from assist.core import pubkey
from assist.protocol import messages as m
from assist.store import Store
from assist.transport import ssh
from bench.broker import connect, make_key, start_broker
from bench.relay import ssh_relay
from bench.sshd import ssh_tmux
from bench.stats import percentile, print_table

FRAME = 1 / 30
BLOCKS = 5
"""Keystroke samples are taken in this many turns, assist's and the baseline's."""
MARK = re.compile(rb"mk(\d+)x")
DONE = re.compile(rb"done-42\r\n(\x1b\[\?2004h)?\$ ")
"""The end of a timed command: its marker, then the prompt (bash may turn on bracketed
paste before it)."""
COLS, ROWS = 100, 30


# -- the user process ------------------------------------------------------------


class UserSide:
    """Runs in the child: one shell in a pty per request, shared through a real UserSession."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.user: UserSession | None = None
        self.marks: dict[int, float] = {}
        self.waiters: dict[re.Pattern[bytes], asyncio.Future[float]] = {}
        self.tail = b""
        self.watch_marks = False

    def output(self, data: bytes) -> None:
        """Every chunk the shell writes, timed before assist shows or sends it."""
        if not self.watch_marks and not self.waiters:
            return  # typing: the bench's own scans stay off the echo's path
        now = time.perf_counter()
        if self.watch_marks:
            for found in MARK.finditer(data):
                self.marks.setdefault(int(found.group(1)), now)
        window = self.tail + data
        for marker, future in list(self.waiters.items()):
            if marker.search(window) and not future.done():
                future.set_result(now)
        self.tail = window[-32:]

    def event(self, event: UserEvent) -> None:
        # The bench's user says yes to whatever is asked (the agent types).
        if isinstance(event, GrantAsked) and self.user is not None:
            self.user.answer(event.ask, True)

    async def parse_loop(self, user: UserSession) -> None:
        # As the help app's terminal view does: a time-bounded slice per frame.
        while True:
            user.emulator.process()
            await asyncio.sleep(FRAME)

    async def run_command(self, user: UserSession, command: str,
                          marker: re.Pattern[bytes]) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[marker] = future
        self.tail = b""
        start = time.perf_counter()
        user.write(command.encode() + b"\n")
        end = await future
        del self.waiters[marker]
        return end - start

    async def session(self, commands: asyncio.Queue[str]) -> None:
        self.user = user = UserSession(
            self.config, "bench", self.event, command=["bash", "--norc", "--noprofile"],
            size=(COLS, ROWS), env={"PS1": "$ ", "HISTFILE": "/dev/null"},
            on_output=self.output)
        user.start()
        parser = asyncio.ensure_future(self.parse_loop(user))
        runner = asyncio.ensure_future(user.run())
        try:
            while True:
                getter = asyncio.ensure_future(commands.get())
                done, _ = await asyncio.wait({runner, getter},
                                             return_when=asyncio.FIRST_COMPLETED)
                if runner in done:
                    getter.cancel()
                    break
                await self.command(user, getter.result())
        finally:
            with contextlib.suppress(Exception):
                await runner
            parser.cancel()
            await user.close()
        print(json.dumps({"ended": True}), flush=True)

    async def command(self, user: UserSession, line: str) -> None:
        word, _, arg = line.partition(" ")
        if word == "marks":
            count, gap = int(arg), 0.02
            self.watch_marks = True
            for n in range(count):
                user.write(f"echo mk$(({n}+0))x\n".encode())
                await asyncio.sleep(gap)
            await asyncio.sleep(0.5)
            self.watch_marks = False
            print(json.dumps({"marks": self.marks}), flush=True)
        elif word == "cat":
            shared, path = arg.split(" ", 1)
            user.streaming = shared == "on"
            # Until the prompt after it is out: the screen compared with is the final one.
            elapsed = await self.run_command(user, f"cat {path}; echo done-$((6*7))",
                                             DONE)
            stopped = time.perf_counter()
            user.streaming = True
            if shared == "off" and user.share is not None:
                user.share.snapshot()  # what the agent missed while sharing was off
            # Let the local emulator finish, so the screen to compare with is final.
            while user.emulator.backlog:
                await asyncio.sleep(FRAME)
            print(json.dumps({"cat": elapsed, "stopped": stopped,
                              "screen": user.emulator.text()}), flush=True)


async def user_main(port: int, host_key: str, key: Path, state: Path) -> None:
    config = ClientConfig(host="127.0.0.1", port=port, host_key=host_key, key=key,
                          voice=False, audio=(),
                          file=state / "client.toml", state=state)
    side = UserSide(config)
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    session: asyncio.Task[None] | None = None
    while line := (await reader.readline()).decode().strip():
        if line == "join":
            session = asyncio.ensure_future(side.session(commands))
        else:
            await commands.put(line)
        if session is not None and session.done():
            session = None
    if session is not None:
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await session


# -- the agent (this process) ------------------------------------------------------------


class Child:
    """The user process, driven by command lines; answers are JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def answer(self, key: str, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("the user process died")
                data: dict[str, Any] = json.loads(line)
                if key in data:
                    return data


class AgentSide:
    """The console's part: a viewer fed as messages arrive, parsed at the frame budget."""

    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent
        self.viewer: TerminalViewer | None = None
        self.first_frame: asyncio.Future[float] | None = None
        self.marks: dict[int, float] = {}
        self.watch_marks = True
        self.changed = asyncio.Event()

    def fast(self, msg: m.Msg) -> bool:
        """Terminal output straight from the reader, as the console takes it."""
        if isinstance(msg, m.Output) and self.viewer is not None and self.viewer.handle(msg):
            self.parse()
            return True
        return False

    async def pump(self) -> None:
        self.agent.link.fast = self.fast
        async for msg in self.agent.events():
            if isinstance(msg, m.Started):
                self.viewer = TerminalViewer(msg.info.session, msg.info.cols, msg.info.rows)
            elif self.viewer is not None and self.viewer.handle(msg):
                self.parse()
                if self.first_frame is not None and not self.first_frame.done() \
                        and any(line.strip() for line in self.viewer.emulator.text()):
                    self.first_frame.set_result(time.perf_counter())

    def parse(self) -> None:
        assert self.viewer is not None
        emulator = self.viewer.emulator
        if emulator.process():
            self.changed.set()
            if self.watch_marks:  # reading the whole screen is the bench's cost, not assist's
                now = time.perf_counter()
                for found in MARK.finditer("\n".join(emulator.text()).encode()):
                    self.marks.setdefault(int(found.group(1)), now)

    async def frames(self) -> None:
        # The console view also parses its backlog once per frame.
        while True:
            if self.viewer is not None:
                self.parse()
            await asyncio.sleep(FRAME)

    async def take_control(self, session: str) -> str:
        """Verify the user and get a control grant; return its id."""
        verified = asyncio.ensure_future(
            self.agent.link.wait_for(lambda x: isinstance(x, m.Verified), 10))
        await self.agent.verify(session, "key")
        await verified
        answer = asyncio.ensure_future(self.agent.wait_grant(session, "control", 10))
        await self.agent.ask_grant(session, "control", 300)
        return (await answer).grant

    async def keystrokes(self, session: str, grant: str, count: int) -> list[float]:
        """Agent keystroke (granted) to its echo parsed into the agent's view, one at a time."""
        assert self.viewer is not None
        samples: list[float] = []
        typed = ""
        for n in range(count):
            if len(typed) >= 40:  # Ctrl-U clears the line before it wraps
                await self.agent.send_keys(session, grant, b"\x15")
                await self._line_is("")
                typed = ""
            key = "0123456789"[n % 10]
            start = time.perf_counter()
            await self.agent.send_keys(session, grant, key.encode())
            typed += key
            await self._line_is(typed)
            samples.append(time.perf_counter() - start)
        await self.agent.send_keys(session, grant, b"\x15")
        await self._line_is("")  # a clean prompt for what comes next
        return samples

    async def _line_is(self, typed: str, timeout: float = 5.0) -> None:
        """Wait until the agent's view shows the prompt followed by exactly ``typed``."""
        want = f"$ {typed}".rstrip()
        async with asyncio.timeout(timeout):
            while True:
                assert self.viewer is not None
                emulator = self.viewer.emulator
                row = emulator.screen.buffer[emulator.cursor[1]]
                line = "".join(row[x].data for x in range(emulator.size[0])).rstrip()
                if not emulator.backlog and line == want:
                    return
                self.changed.clear()
                await self.changed.wait()

    async def converge(self, screen: list[str], stopped: float, timeout: float = 10.0) -> float:
        """Seconds after the user's output stopped until the agent's screen matches."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            assert self.viewer is not None
            if self.viewer.emulator.text() == screen and not self.viewer.emulator.backlog:
                return time.perf_counter() - stopped
            await asyncio.sleep(0.005)
        assert self.viewer is not None
        diff = [(a, b) for a, b in zip(self.viewer.emulator.text(), screen, strict=False)
                if a != b]
        print(f"agent's view never matched the user's screen: {diff[:3]}", file=sys.stderr)
        return float("inf")


async def run(rounds: int, marks: int, megabytes: int, repeats: int, keys: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        user_key, agent_key = make_key(root / "user"), make_key(root / "agent")
        with Store(root / "b.db") as store:
            store.directory.add("user", "bench-user", pubkey.load(Path(f"{user_key}.pub")), 0)
            store.directory.add("agent", "bench-agent", pubkey.load(Path(f"{agent_key}.pub")), 0)
        big = root / "big.txt"
        line = b"".join(bytes([48 + (i % 75)]) for i in range(99)) + b"\n"
        with big.open("wb") as handle:
            for _ in range(megabytes * 1024 * 1024 // len(line)):
                handle.write(line)
        broker, port = await start_broker(root)
        host_key = ssh.openssh_key(asyncssh.read_private_key(str(root / "host_key")))
        child = Child(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.session", "--user", "--port", str(port),
            "--host-key", host_key, "--key", str(user_key), "--state", str(root / "state"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        agent = AgentClient(await connect(port, host_key, "agent", agent_key))
        try:
            await agent.hello()
            await agent.set_status("available")
            await measure(child, agent, rounds, marks, big, repeats, keys)
        finally:
            await agent.link.close()
            if child.proc.stdin is not None:
                child.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.proc.wait(), 5)
            broker.terminate()
            await broker.wait()


async def measure(child: Child, agent: AgentClient, rounds: int, marks: int, big: Path,
                  repeats: int, keys: int) -> None:
    side = AgentSide(agent)
    pump = asyncio.ensure_future(side.pump())
    frames = asyncio.ensure_future(side.frames())
    first_frames: list[float] = []
    latencies: list[float] = []
    keystrokes: list[float] = []
    baseline: list[float] = []
    floor: list[float] = []
    plain: list[float] = []
    shared: list[float] = []
    converge: list[float] = []
    for round_ in range(rounds):
        child.send("join")
        await agent.link.wait_for(
            lambda msg: isinstance(msg, m.QueueDelta) and bool(msg.joined), 30)
        side.first_frame = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        info = await agent.accept()
        first_frames.append(await side.first_frame - start)
        if round_ == 0:
            child.send(f"marks {marks}")
            sent = (await child.answer("marks"))["marks"]
            await asyncio.sleep(0.2)
            latencies = [side.marks[int(n)] - t for n, t in sent.items()
                         if int(n) in side.marks]
            side.watch_marks = False
            grant = await side.take_control(info.session)
            # In turns with the ssh + tmux baseline: noise on this shared machine hits
            # both alike, and the ratio is taken over the same minutes.
            async with ssh_tmux() as baseline_keys, ssh_relay() as floor_keys:
                block = max(1, keys // BLOCKS)
                for _ in range(BLOCKS):
                    keystrokes += await side.keystrokes(info.session, grant, block)
                    baseline += await baseline_keys(block)
                    floor += await floor_keys(block)
            for _ in range(repeats):
                for mode in ("off", "on"):
                    child.send(f"cat {mode} {big}")
                    result = await child.answer("cat", timeout=300)
                    (plain if mode == "off" else shared).append(result["cat"])
                    converge.append(await side.converge(result["screen"], result["stopped"]))
        await agent.end(info.session, "bench", True)
        await child.answer("ended")
    pump.cancel()
    frames.cancel()
    print_table("live session (broker, user and agent in separate processes, 127.0.0.1)", [
        ("accept -> first frame on the agent's view", len(first_frames), first_frames,
         "< 100 ms"),
        ("output -> agent view (parsed)", len(latencies), latencies, "p50 < 5 / p99 < 20 ms"),
        ("agent keystroke (granted) -> echo on the agent's view", len(keystrokes), keystrokes,
         "p50 < 5 / p99 < 20 ms"),
        ("baseline: keystroke -> echo, ssh -tt + tmux attach", len(baseline), baseline,
         "same run, same machine"),
        ("floor: the same four SSH crossings in asyncssh, relayed, no assist work",
         len(floor), floor, "same run (bench.relay)"),
        ("agent view converges after bulk output", len(converge), converge, "< 1000 ms"),
    ])
    print_echo_ratios(keystrokes, baseline, floor)
    size = big.stat().st_size / 1e6
    table = Table(title=f"cat {size:.0f} MB in the user's shell, alternated, {repeats} each")
    for column in ("sharing", "median s", "runs s", "MB/s"):
        table.add_column(column)
    for name, samples in (("off", plain), ("on", shared)):
        med = statistics.median(samples)
        table.add_row(name, f"{med:.2f}", " ".join(f"{s:.2f}" for s in samples),
                      f"{size / med:.0f}")
    ratio = statistics.median(shared) / statistics.median(plain)
    table.caption = f"ratio shared/unshared = {ratio:.2f} (target <= 1.10)"
    Console(width=100).print(table)


def print_echo_ratios(keystrokes: list[float], baseline: list[float],
                      floor: list[float]) -> None:
    """assist's echo against ssh + tmux, and against asyncssh's own floor."""
    ratio_p50 = statistics.median(keystrokes) / statistics.median(baseline)
    ratio_p99 = percentile(keystrokes, 99) / percentile(baseline, 99)
    console = Console(width=100)
    console.print(f"keystroke echo, assist / (ssh + tmux): median {ratio_p50:.2f}x, "
                  f"p99 {ratio_p99:.2f}x (target <= 2)")
    floor_p50 = statistics.median(floor)
    console.print(f"asyncssh's four crossings alone / (ssh + tmux): median "
                  f"{floor_p50 / statistics.median(baseline):.2f}x; assist / that floor: "
                  f"median {statistics.median(keystrokes) / floor_p50:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="sessions accepted")
    parser.add_argument("--marks", type=int, default=200, help="lines timed to the agent")
    parser.add_argument("--keys", type=int, default=200, help="keystrokes timed (each way)")
    parser.add_argument("--mb", type=int, default=50, help="size of the file to cat")
    parser.add_argument("--repeats", type=int, default=5, help="cat runs per mode")
    parser.add_argument("--user", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--host-key", help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_fast_loop()  # as the assist commands do
    if args.user:
        os.environ.pop("ASSIST_BROKER", None)
        asyncio.run(user_main(args.port, args.host_key, args.key, args.state))
    else:
        asyncio.run(run(args.rounds, args.marks, args.mb, args.repeats, args.keys))


if __name__ == "__main__":
    main()
