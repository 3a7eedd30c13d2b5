"""Desktop capture (mss) on a private Xvfb screen: what, how fast, pause/stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from assist.share.screen import CaptureError, Region, ScreenCapture, monitors
from tests.xvfb import XVFB, Rect, Xvfb, running

WIDTH, HEIGHT = 320, 240


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Xvfb]:
    """A private Xvfb with a red and a green box on blue; ``DISPLAY`` points at it."""
    if XVFB is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    with running(WIDTH, HEIGHT) as x:
        monkeypatch.setenv("DISPLAY", x.display)
        x.paint([Rect(10, 20, 100, 50, 0xFF0000), Rect(200, 100, 50, 40, 0x00FF00)],
                background=0x0000FF)
        yield x


def bgr(rgb: int) -> list[int]:
    return [rgb & 0xFF, (rgb >> 8) & 0xFF, rgb >> 16]


def test_whole_desktop_is_captured_exactly(screen: Xvfb) -> None:
    assert monitors()[0] == Region(0, 0, WIDTH, HEIGHT)
    capture = ScreenCapture(fps=30)
    assert capture.start() == Region(0, 0, WIDTH, HEIGHT)
    try:
        frame = capture.wait_frame(timeout=2)
    finally:
        capture.stop()
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    assert frame.bgra[30, 20, :3].tolist() == bgr(0xFF0000)
    assert frame.bgra[120, 220, :3].tolist() == bgr(0x00FF00)
    assert frame.bgra[0, 0, :3].tolist() == bgr(0x0000FF)
    assert frame.bgra.flags.writeable  # stamping hooks draw into it


def test_monitor_and_region(screen: Xvfb) -> None:
    capture = ScreenCapture(monitor=1, fps=30)
    assert capture.start() == Region(0, 0, WIDTH, HEIGHT)
    capture.stop()
    capture = ScreenCapture(region=Region(200, 100, 50, 40), fps=30)
    capture.start()
    try:
        frame = capture.wait_frame(timeout=2)
    finally:
        capture.stop()
    assert frame.bgra.shape == (40, 50, 4)
    assert (frame.bgra[:, :, :3] == np.array(bgr(0x00FF00), dtype=np.uint8)).all()


def test_configuration_errors_say_what_to_do(screen: Xvfb) -> None:
    with pytest.raises(CaptureError, match="no monitor 5"):
        ScreenCapture(monitor=5).start()
    with pytest.raises(CaptureError, match="not inside the desktop"):
        ScreenCapture(region=Region(300, 200, 100, 100)).start()
    with pytest.raises(CaptureError, match="graphical session"):
        ScreenCapture(display=":4095").start()


def test_thread_paces_pauses_resumes_and_stops(screen: Xvfb) -> None:
    seen: list[int] = []
    capture = ScreenCapture(lambda f: seen.append(f.index), fps=20)
    capture.start()
    try:
        time.sleep(0.5)
        running = len(seen)
        assert 5 <= running <= 12, f"{running} frames in 0.5 s at 20 fps"
        assert seen == list(range(running))
        capture.pause()
        time.sleep(0.1)
        paused_at = len(seen)
        time.sleep(0.3)
        assert len(seen) == paused_at and capture.paused
        capture.resume()
        capture.wait_frame(after=seen[-1], timeout=2)
    finally:
        capture.stop()
    assert capture._thread is not None and not capture._thread.is_alive()
    with pytest.raises(CaptureError, match="stopped"):
        capture.wait_frame(after=10**9, timeout=1)


async def test_capture_does_not_block_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    if XVFB is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    with running(1920, 1080) as x:
        monkeypatch.setenv("DISPLAY", x.display)
        frames: list[float] = []
        capture = ScreenCapture(lambda f: frames.append(f.captured_at), fps=30)
        capture.start()
        try:
            worst = 0.0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                worst = max(worst, time.monotonic() - before - 0.005)
        finally:
            capture.stop()
    print(f"\n1080p capture: {len(frames)} frames in 1 s, worst loop stall {worst * 1000:.1f} ms")
    assert len(frames) >= 15
    assert worst < 0.1
