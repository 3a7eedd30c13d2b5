"""Media tracks: the desktop as a WebRTC video track, and the receiving end.

:class:`ScreenTrack` is fed by :class:`assist.share.screen.ScreenCapture`.
The conversion from the captured BGRA pixels to the encoder's ``yuv420p``
happens in the capture thread right after the grab, so the asyncio loop only
moves a ready frame to aiortc's sender (which encodes it in an executor
thread). One frame slot, newest wins: if the encoder is slower than the
capture rate, frames are dropped at the source instead of queuing up latency.

:class:`VideoReceiver` pulls decoded frames from a remote track and keeps the
newest one as an RGB array for viewers, converting off the loop in its own
thread and skipping frames it cannot keep up with.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from assist.media.errors import MediaError
from assist.share.screen import CapturedFrame, CaptureError, ScreenCapture

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
"""RTP video clock rate (Hz): presentation timestamps count in these ticks."""
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)

Stamp = Callable[[CapturedFrame], object]


def to_encoder_frame(frame: CapturedFrame, start: float) -> VideoFrame:
    """Convert a BGRA capture into a ``yuv420p`` :class:`av.VideoFrame`.

    4:2:0 video needs even sizes: an odd last row or column is dropped.
    The timestamp counts from ``start`` (a ``time.monotonic()`` value) so the
    receiver's playout follows real capture times.
    """
    h, w = frame.height & ~1, frame.width & ~1
    pixels = frame.bgra if (h, w) == (frame.height, frame.width) else frame.bgra[:h, :w]
    video = VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgra")
    video = video.reformat(format="yuv420p")
    video.pts = max(0, round((frame.captured_at - start) * VIDEO_CLOCK))
    video.time_base = TIME_BASE
    return video


class ScreenTrack(MediaStreamTrack):
    """A video track of the desktop.

    Args:
        capture: a configured, not yet started capture; the track sets its
            frame callback and starts it on the first :meth:`recv`.
        stamp: optional hook run in the capture thread on each frame before
            conversion (benchmarks draw a frame-id barcode with it).
    """

    kind = "video"

    def __init__(self, capture: ScreenCapture, stamp: Stamp | None = None) -> None:
        super().__init__()
        self.capture = capture
        self.stamp = stamp
        self.sent = 0
        self.dropped = 0
        self._start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slot: tuple[int, VideoFrame] | None = None
        self._ready = asyncio.Event()
        self._failure: CaptureError | None = None
        self.capture.on_frame = self._on_frame
        self.capture.on_error = self._on_error

    def start(self) -> None:
        """Start capturing now (otherwise the first :meth:`recv` does).

        Raises:
            CaptureError: if the display, monitor or region is not usable.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._start = time.monotonic()
            self.capture.start()

    def pause(self) -> None:
        """Stop sending frames (the receiver keeps showing the last one)."""
        self.capture.pause()

    def resume(self) -> None:
        """Send frames again after :meth:`pause`."""
        self.capture.resume()

    # capture thread ---------------------------------------------------------------

    def _on_frame(self, frame: CapturedFrame) -> None:
        if self.stamp is not None:
            self.stamp(frame)
        video = to_encoder_frame(frame, self._start)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing under us
                loop.call_soon_threadsafe(self._put, frame.index, video)

    def _on_error(self, error: CaptureError) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._fail, error)

    # loop -------------------------------------------------------------------------

    def _put(self, index: int, video: VideoFrame) -> None:
        if self._slot is not None:
            self.dropped += 1
        self._slot = (index, video)
        self._ready.set()

    def _fail(self, error: CaptureError) -> None:
        self._failure = error
        self._ready.set()

    async def recv(self) -> VideoFrame:
        """The next captured frame, waiting for one if needed (aiortc's sender calls it)."""
        if self.readyState != "live":
            raise MediaStreamError
        self.start()
        while self._slot is None:
            if self._failure is not None:
                self.stop()
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
        _, video = self._slot
        self._slot = None
        self.sent += 1
        return video

    def stop(self) -> None:
        """End the track and the capture thread."""
        super().stop()
        self.capture.stop()
        self._ready.set()


@dataclass(frozen=True)
class ReceivedFrame:
    """A decoded frame ready for display.

    Attributes:
        rgb: pixels, shape ``(height, width, 3)``, R, G, B order.
        received_at: ``time.monotonic()`` when the decoded frame arrived.
        index: frames received on this track before this one.
    """

    rgb: npt.NDArray[np.uint8]
    received_at: float
    index: int


class VideoReceiver:
    """Consume a remote video track and keep its newest frame as RGB.

    Args:
        track: the remote track (from the peer's ``track`` event).
        on_frame: called on the loop with each converted frame.
        on_decoded: called on the loop with each raw decoded frame and its
            arrival time, before any conversion (for latency probes).
    """

    def __init__(self, track: Any, on_frame: Callable[[ReceivedFrame], object] | None = None,
                 on_decoded: Callable[[VideoFrame, float], object] | None = None) -> None:
        self.track = track
        self.on_frame = on_frame
        self.on_decoded = on_decoded
        self.latest: ReceivedFrame | None = None
        self.first_frame_at: float | None = None
        self.received = 0
        self.converted = 0
        self.ended = asyncio.Event()
        self._pending: tuple[int, VideoFrame, float] | None = None
        self._wake = asyncio.Event()
        self._new = asyncio.Condition()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="assist-video-rgb")
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start reading and converting."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._read()), loop.create_task(self._convert())]

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                now = time.monotonic()
                if self.first_frame_at is None:
                    self.first_frame_at = now
                if self.on_decoded is not None:
                    self.on_decoded(frame, now)
                self._pending = (self.received, frame, now)
                self.received += 1
                self._wake.set()
        except MediaStreamError:
            log.debug("remote video track ended")
        finally:
            self.ended.set()
            self._wake.set()

    async def _convert(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, None
            if pending is None:
                if self.ended.is_set():
                    async with self._new:  # wake waiters so they see the end
                        self._new.notify_all()
                    return
                continue
            index, frame, at = pending
            rgb = await loop.run_in_executor(self._pool, _to_rgb, frame)
            received = ReceivedFrame(rgb, at, index)
            self.latest = received
            self.converted += 1
            async with self._new:
                self._new.notify_all()
            if self.on_frame is not None:
                self.on_frame(received)

    async def wait_frame(self, after: int = -1, timeout: float = 5.0) -> ReceivedFrame:
        """Wait for a converted frame with ``index > after`` and return the newest.

        Raises:
            MediaError: if none arrives within ``timeout`` or the track ends.
        """
        async def newer() -> ReceivedFrame:
            async with self._new:
                while self.latest is None or self.latest.index <= after:
                    if self.ended.is_set() and self._pending is None:
                        raise MediaError("the shared screen ended")
                    await self._new.wait()
                return self.latest

        try:
            return await asyncio.wait_for(newer(), timeout)
        except TimeoutError:
            raise MediaError(f"no video frame arrived within {timeout:g} s; the share may "
                             "be paused or the connection blocked") from None

    async def stop(self) -> None:
        """Stop reading and converting."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._pool.shutdown(wait=False, cancel_futures=True)


def _to_rgb(frame: VideoFrame) -> npt.NDArray[np.uint8]:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
