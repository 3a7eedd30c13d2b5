"""The camera path of the call: the agent's face, decoded and drawn in the user's panel.

An *agent* process answers the call (:class:`~assist.media.call.CallAnswer`)
with a moving 320x240 picture at 30 frames a second and silence as its
voice; this process is the user's side: the real
:class:`~assist.media.call.CallOffer` (microphone closed, as without a
grant), the decoded pictures handed to the real
:class:`~assist.tui.face.FaceView` in a headless Textual app, for each way
of drawing and for a local terminal and one over SSH (the pacer's budget).
Signalling goes over the agent process's pipes; media over 127.0.0.1.

Measured per run: pictures received and drawn a second, the user's process
CPU (cores: receive, decode, convert, draw), the bytes a second the
pictures cost the terminal (the pacer's estimate; Kitty's is counted), and
how late the user's loop (the one that shows the shell) wakes from a 10 ms
sleep, median and p99, against the same call with the face not drawn::

    python -m bench.media --only camera [--seconds 5]   (or python -m bench.camera)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import io
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from assist.protocol import codec
from assist.protocol import messages as m
from bench.stats import percentile

SESSION = "bench-call"
FPS = 30
SIZE = (320, 240)
MODES = ("off", "halfcell", "sixel", "kitty")
"""``off``: the call runs and pictures are decoded, but none is drawn (the baseline)."""
PROBE = 0.01
LINKS = {"local": {}, "ssh": {"SSH_CONNECTION": "127.0.0.1 50000 127.0.0.1 22"}}


class PipeLink:
    """Signalling over a pair of byte streams, one protocol message a line."""

    def __init__(self, reader: asyncio.StreamReader, write: Callable[[bytes], None]) -> None:
        self.reader = reader
        self.write = write

    async def send(self, msg: m.Msg) -> None:
        """Send one message."""
        self.write(codec.encode(msg))

    async def wait_for(self, match: Callable[[m.Msg], bool],
                       timeout: float | None = None) -> m.Msg:
        """The next message that matches."""
        async with asyncio.timeout(timeout):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise ConnectionError("the other process ended")
                msg = codec.decode(line)
                if match(msg):
                    return msg


def _no_device() -> Any:
    raise RuntimeError("the bench opens no sound device")


def moving_track() -> Any:
    """A 320x240 video track with a box that moves, at :data:`FPS`."""
    from aiortc import MediaStreamTrack
    from av import VideoFrame

    class Moving(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.start = 0.0

        async def recv(self) -> VideoFrame:
            if not self.start:
                self.start = time.monotonic()
            await asyncio.sleep(max(0.0, self.start + self.count / FPS - time.monotonic()))
            w, h = SIZE
            rgb = np.full((h, w, 3), (60, 90, 140), dtype=np.uint8)
            x = (self.count * 4) % (w - 60)
            rgb[80:160, x:x + 60] = (240, 200, 120)
            frame = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = self.count * 3000, fractions.Fraction(1, 90_000)
            self.count += 1
            return frame

    return Moving()


async def agent() -> None:
    """The agent's side, in its own process: answer the call with the moving picture."""
    from assist.media import network
    from assist.media.call import CallAnswer, MicGate
    from assist.media.peer import MediaPeer

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def write(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    link = PipeLink(reader, write)
    call = CallAnswer(link, SESSION, MediaPeer(host_addresses=network.LOOPBACK),
                      MicGate(lambda: False, _no_device), camera=moving_track())
    offer = await link.wait_for(lambda msg: isinstance(msg, m.Signal) and msg.kind == "offer")
    assert isinstance(offer, m.Signal)
    await call.handle(offer)
    with contextlib.suppress(ConnectionError):
        await link.wait_for(lambda msg: False)  # until the user's side closes the pipe
    await call.peer.close()


@dataclass
class Run:
    """One measured way of drawing."""

    mode: str
    link: str
    received: float
    drawn: float
    cpu: float
    terminal_kb: float
    late: list[float]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(mode: str, link_name: str, seconds: float) -> Run:
    """The user's side of one call, drawn in ``mode`` for a ``link_name`` terminal."""
    from textual.app import App, ComposeResult

    from assist.core.pace import FramePacer, link_budget
    from assist.media import network
    from assist.media.call import CallOffer, MicGate
    from assist.media.peer import MediaPeer
    from assist.tui.face import FaceView

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.camera", "--role", "agent",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    stdin = child.stdin
    link = PipeLink(child.stdout, stdin.write)
    drawn = "halfcell" if mode == "off" else mode
    face = FaceView(drawn, FramePacer(link_budget(LINKS[link_name])), id="face")  # type: ignore[arg-type]
    face.display = mode != "off"

    class Panel(App[None]):
        CSS = "FaceView { width: 40; }"

        def compose(self) -> ComposeResult:
            yield face

    written = io.StringIO()
    real = sys.__stdout__
    sys.__stdout__ = written  # type: ignore[misc]  # Kitty pictures go straight to the terminal
    try:
        async with Panel().run_test(size=(80, 24)):
            mic = MicGate(lambda: False, _no_device)  # closed, as without the mic grant
            call = CallOffer(link, SESSION, MediaPeer(host_addresses=network.LOOPBACK), mic,
                             on_face=face.show)
            await call.start(15)
            await asyncio.sleep(1.0)  # the encoder's rate settles
            offered, shown, cpu, wall = face.offered, face.shown, _cpu(), time.monotonic()
            bytes0 = len(written.getvalue())
            late = await _lateness(seconds)
            span = time.monotonic() - wall
            run = Run(mode, link_name, (face.offered - offered) / span,
                      (face.shown - shown) / span, (_cpu() - cpu) / span,
                      ((len(written.getvalue()) - bytes0) if mode == "kitty" else
                       face.pacer.cost * (face.shown - shown)) / span / 1024, late)
            await call.stop()
    finally:
        sys.__stdout__ = real  # type: ignore[misc]
        stdin.close()
        await child.wait()
    return run


async def _lateness(seconds: float) -> list[float]:
    """How late each 10 ms sleep of this loop wakes, for ``seconds``."""
    late: list[float] = []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        await asyncio.sleep(PROBE)
        late.append(time.monotonic() - now - PROBE)
    return late


def print_runs(runs: list[Run], seconds: float) -> None:
    """The table of the camera path."""
    table = Table(title=f"the agent's face in the user's panel: {SIZE[0]}x{SIZE[1]} at {FPS} "
                        f"fps, 40x9 cells, {seconds:g} s each (target: a few pictures/s "
                        "over SSH, 15-30 locally, the shell not slowed)")
    for column in ("drawn as", "terminal", "received /s", "drawn /s", "CPU user side",
                   "to the terminal KB/s", "loop late median ms", "p99 ms", "p99 vs off"):
        table.add_column(column, justify="left" if column in ("drawn as", "terminal")
                         else "right")
    base = {run.link: percentile(run.late, 99) for run in runs if run.mode == "off"}
    for run in runs:
        p99 = percentile(run.late, 99)
        ratio = p99 / base[run.link] if base.get(run.link) else float("nan")
        table.add_row(run.mode, run.link, f"{run.received:.1f}", f"{run.drawn:.1f}",
                      f"{run.cpu:.2f}", f"{run.terminal_kb:.0f}",
                      f"{statistics.median(run.late) * 1000:.2f}", f"{p99 * 1000:.2f}",
                      f"{ratio:.2f}")
    Console(width=160).print(table)
    print("CPU in cores of the user's process (receive, decode, convert, draw); bytes: "
          "counted for Kitty, the pacer's estimate otherwise.")


async def run_all(seconds: float) -> list[Run]:
    """Every way of drawing, local and over SSH."""
    return [await measure(mode, link, seconds) for mode in MODES for link in LINKS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--role", choices=("agent",), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "agent":
        asyncio.run(agent())
        return
    print_runs(asyncio.run(run_all(args.seconds)), args.seconds)


if __name__ == "__main__":
    main()
