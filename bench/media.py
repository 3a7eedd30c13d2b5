"""Desktop-share benchmark: fps, capture-to-decode latency, bitrate and CPU.

For each resolution and codec a private Xvfb shows a desktop-like picture;
a *sharer* process captures it (mss), encodes and sends it (aiortc) and a
*viewer* process receives, decodes and converts it to RGB as the console
would. Both run as separate processes so each one's CPU is its own; the
offer and answer are relayed through this process's pipes. All media stays
on 127.0.0.1.

Each frame gets its capture id drawn as a barcode into its top-left corner
right after the grab; the viewer reads it back from each decoded picture, so
latency is measured per frame from the start of the grab to the end of
decoding (both processes read the same monotonic clock). A moving striped
box keeps the encoder busy, like scrolling text::

    python -m bench.media [--seconds 6] [--only 720p|1080p|camera]

It ends with the camera path of the call (:mod:`bench.camera`): the agent's
face decoded and drawn in the user's panel in every mode, locally and as
over SSH (``--only camera`` runs that alone, without Xvfb).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.stats import percentile

BITS = 16
CELL = 16
"""Barcode: 16 id bits then their complement, each a 16x16 block (one macroblock)."""
WARMUP = 1.0
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
CODECS = ("VP8", "H264")


# -- barcode ----------------------------------------------------------------------------


def draw_barcode(bgra: Any, frame_id: int) -> None:
    """Write ``frame_id`` (mod 2**16) into the top-left corner of a BGRA frame."""
    value = frame_id & 0xFFFF
    bits = [(value >> i) & 1 for i in range(BITS)] + [1 - ((value >> i) & 1) for i in range(BITS)]
    for i, bit in enumerate(bits):
        bgra[0:CELL, i * CELL:(i + 1) * CELL, :3] = 255 if bit else 0


def read_barcode(luma: Any) -> int | None:
    """The id in a decoded frame's luma plane, or ``None`` if it does not check out."""
    centre = luma[CELL // 2, [i * CELL + CELL // 2 for i in range(2 * BITS)]]
    bits = (centre > 128).astype(int)
    if not (bits[:BITS] ^ bits[BITS:]).all():
        return None
    return int(sum(int(b) << i for i, b in enumerate(bits[:BITS])))


def luma_of(frame: Any) -> Any:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
    return rows[:CELL, :plane.width]


def busy_box(bgra: Any, frame_id: int) -> None:
    """A 480x270 box of fine stripes that moves a little every frame (scrolling text)."""
    h, w = bgra.shape[:2]
    x = 64 + (frame_id * 7) % max(1, w - 600)
    y = 64 + (frame_id * 3) % max(1, h - 400)
    rows = (np.arange(270)[:, None] + frame_id * 2) % 12 < 2
    cols = (np.arange(480)[None, :] // 6) % 3 == 0
    bgra[y:y + 270, x:x + 480, :3] = np.where((rows | cols)[:, :, None], 20, 235)


def desktop(width: int, height: int) -> list[Any]:
    """Rectangles that look like a desktop: panels and lines of 'text'."""
    from tests.xvfb import Rect

    rects = [Rect(0, 0, width, 28, 0x2B2B2B), Rect(40, 60, width // 2, height - 120, 0xFAFAFA),
             Rect(width // 2 + 80, 60, width // 2 - 120, height // 2, 0x1E1E1E)]
    for line in range((height - 160) // 18):
        for word in range(12):
            rects.append(Rect(60 + word * (width // 28), 80 + line * 18,
                              (width // 28) - 8 - (word * line) % 17, 10, 0x202020))
    return rects


# -- the two roles (child processes) -------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _line() -> dict[str, Any]:
    raw = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return json.loads(raw) if raw.strip() else {}


def _say(**data: Any) -> None:
    print(json.dumps(data), flush=True)


async def share(args: argparse.Namespace) -> None:
    from assist.media import network
    from assist.media.peer import MediaPeer
    from assist.media.tracks import ScreenTrack
    from assist.share.screen import CapturedFrame, ScreenCapture

    captured: dict[int, float] = {}

    def stamp(frame: CapturedFrame) -> None:
        busy_box(frame.bgra, frame.index)
        draw_barcode(frame.bgra, frame.index)
        captured[frame.index] = frame.captured_at

    peer = MediaPeer(host_addresses=network.LOOPBACK, codec=args.codec,
                     tune_malloc=args.mallopt)
    track = ScreenTrack(ScreenCapture(display=args.display, fps=args.fps), stamp=stamp)
    track.start()  # as ScreenShare does: the first frame is ready before the answer
    peer.send_video(track)
    _say(offer=await peer.offer())
    await peer.accept((await _line())["answer"])
    await peer.wait_connected(10)
    await asyncio.sleep(WARMUP)
    cpu0, wall0, bytes0 = _cpu(), time.monotonic(), (await peer.stats())["bytes_sent"]
    await asyncio.sleep(args.seconds)
    cpu1, wall1, bytes1 = _cpu(), time.monotonic(), (await peer.stats())["bytes_sent"]
    _say(result={"captured": {str(k): v for k, v in captured.items()},
                 "cpu": (cpu1 - cpu0) / (wall1 - wall0),
                 "mbps": (bytes1 - bytes0) * 8 / (wall1 - wall0) / 1e6,
                 "window": [wall0, wall1], "dropped": track.dropped,
                 "skipped": track.capture.skipped})
    await _line()  # wait for the viewer to finish before closing the connection
    await peer.close()


async def view(args: argparse.Namespace) -> None:
    from assist.media import network
    from assist.media.peer import MediaPeer
    from assist.media.tracks import VideoReceiver

    decoded: dict[int, float] = {}
    receivers: list[VideoReceiver] = []

    def on_decoded(frame: Any, at: float) -> None:
        frame_id = read_barcode(luma_of(frame))
        if frame_id is not None and frame_id not in decoded:
            decoded[frame_id] = at

    def on_track(kind: str, track: Any) -> None:
        if kind == "video":
            receiver = VideoReceiver(track, on_decoded=on_decoded)
            receiver.start()
            receivers.append(receiver)

    peer = MediaPeer(host_addresses=network.LOOPBACK, codec=args.codec, on_track=on_track,
                     tune_malloc=args.mallopt)
    _say(ready=True)
    _say(answer=await peer.answer((await _line())["offer"]))
    await peer.wait_connected(10)
    await asyncio.sleep(WARMUP)
    cpu0, wall0 = _cpu(), time.monotonic()
    await asyncio.sleep(args.seconds + 0.3)  # the last frames are still in flight
    cpu1, wall1 = _cpu(), time.monotonic()
    converted = receivers[0].converted if receivers else 0
    _say(result={"decoded": {str(k): v for k, v in decoded.items()},
                 "cpu": (cpu1 - cpu0) / (wall1 - wall0), "converted": converted})
    await peer.close()


# -- orchestration -----------------------------------------------------------------------


@dataclass
class Run:
    """One measured configuration."""

    label: str
    codec: str
    fps: float
    latencies: list[float]
    mbps: float
    cpu_share: float
    cpu_view: float
    first_frame: float


async def _child(role: str, args: argparse.Namespace, codec: str, display: str,
                 mallopt: bool) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.media", "--role", role, "--codec", codec,
        "--display", display, "--seconds", str(args.seconds), "--fps", str(args.fps),
        *([] if mallopt else ["--no-mallopt"]),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def _read(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        raise RuntimeError("a bench process died; run it alone to see its error")
    result: dict[str, Any] = json.loads(line)
    return result


def _send(proc: asyncio.subprocess.Process, **data: Any) -> None:
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(data) + "\n").encode())


async def measure(args: argparse.Namespace, size: str, codec: str, mallopt: bool) -> Run:
    from tests.xvfb import running

    width, height = SIZES[size]
    with running(width, height) as x:
        x.paint(desktop(width, height), background=0x3A6EA5)
        sharer = await _child("share", args, codec, x.display, mallopt)
        viewer = await _child("view", args, codec, x.display, mallopt)
        await _read(viewer)  # imported and ready: start-up is not part of the first frame
        offer = await _read(sharer)
        offered_at = time.monotonic()
        _send(viewer, offer=offer["offer"])
        _send(sharer, answer=(await _read(viewer))["answer"])
        shared, viewed = (await _read(sharer))["result"], (await _read(viewer))["result"]
        _send(sharer)
        for proc in (sharer, viewer):
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()
    captured = {int(k): v for k, v in shared["captured"].items()}
    decoded = {int(k): v for k, v in viewed["decoded"].items()}
    start, end = shared["window"]
    in_window = [i for i, t in captured.items() if start <= t < end]
    latencies = [decoded[i] - captured[i] for i in in_window if i in decoded]
    first = min(decoded.values()) - offered_at if decoded else float("nan")
    label = f"{size} {codec}" + ("" if mallopt else " (no mallopt)")
    unread = sum(1 for i in in_window if i not in decoded)
    if args.verbose:
        print(f"{label}: captured {len(in_window)}, decoded+read {len(latencies)}, "
              f"not seen {unread}, dropped before encoding {shared['dropped']}, "
              f"capture skipped {shared['skipped']}, converted to RGB {viewed['converted']}")
    return Run(label, codec, len(latencies) / (end - start), latencies, shared["mbps"],
               shared["cpu"], viewed["cpu"], first)


def print_runs(runs: list[Run], seconds: float, fps: float) -> None:
    table = Table(title=f"desktop share on 127.0.0.1, {seconds:g} s each at {fps:g} fps "
                        "(target 1080p: 30 fps, < 80 ms, < 1 core)")
    for column in ("configuration", "fps", "latency median ms", "p99 ms", "max ms",
                   "Mbit/s", "CPU share", "CPU view", "first frame ms"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for run in runs:
        lat = run.latencies or [float("nan")]
        table.add_row(run.label, f"{run.fps:.1f}", f"{statistics.median(lat) * 1000:.1f}",
                      f"{percentile(lat, 99) * 1000:.1f}", f"{max(lat) * 1000:.1f}",
                      f"{run.mbps:.2f}", f"{run.cpu_share:.2f}", f"{run.cpu_view:.2f}",
                      f"{run.first_frame * 1000:.0f}")
    Console(width=160).print(table)
    print("latency: start of the grab to the end of decoding, per frame (barcode id); "
          "CPU in cores (share: capture+convert+encode+send; view: receive+decode+RGB); "
          "first frame: offer relayed to first decoded frame.")


async def run_all(args: argparse.Namespace) -> None:
    from bench import camera

    if args.only == "camera":
        camera.print_runs(await camera.run_all(args.seconds), args.seconds)
        return
    plans = [(size, codec, True) for size in SIZES for codec in CODECS
             if args.only in (None, size)]
    if args.only in (None, "1080p"):
        plans += [("1080p", codec, False) for codec in CODECS]
    runs = [await measure(args, size, codec, mallopt) for size, codec, mallopt in plans]
    print_runs(runs, args.seconds, args.fps)
    if args.only is None:
        camera.print_runs(await camera.run_all(args.seconds), args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--only", choices=[*sorted(SIZES), "camera"])
    parser.add_argument("--verbose", action="store_true", help="print frame accounting")
    parser.add_argument("--role", choices=("share", "view"), help=argparse.SUPPRESS)
    parser.add_argument("--codec", default="VP8", help=argparse.SUPPRESS)
    parser.add_argument("--display", help=argparse.SUPPRESS)
    parser.add_argument("--no-mallopt", dest="mallopt", action="store_false",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "share":
        asyncio.run(share(args))
    elif args.role == "view":
        asyncio.run(view(args))
    else:
        asyncio.run(run_all(args))


if __name__ == "__main__":
    main()
