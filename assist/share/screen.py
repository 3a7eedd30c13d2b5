"""Desktop capture with mss in its own thread.

The capture thread grabs the screen at a steady rate and hands each frame to
a callback *in that thread*, so a consumer can do its own heavy work there
(the media layer converts BGRA to YUV for the encoder) and the asyncio loop
never waits for a grab. While the consumer encodes frame ``n`` the thread is
already grabbing frame ``n + 1`` (prefetch); a consumer that falls behind
gets the newest frame, never a backlog.

What is captured: all monitors as one image (``monitor=0``, mss's combined
virtual screen), one monitor (``monitor=N``, 1-based like mss) or a
rectangle of the desktop (``region``, in desktop pixels). mss reads
``DISPLAY`` itself on X11 unless ``display`` is given.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mss
import mss.exception
import numpy as np
import numpy.typing as npt

from assist.errors import CaptureError

__all__ = ["DEFAULT_FPS", "CaptureError", "CapturedFrame", "FrameCallback", "Region",
           "ScreenCapture", "grab", "monitors", "resolve"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class Region:
    """A rectangle of the desktop, in pixels."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class CapturedFrame:
    """One grab of the screen.

    Attributes:
        index: 0 for the first frame of a capture, then counting up.
        captured_at: ``time.monotonic()`` just before the grab started.
        region: what was grabbed, in desktop pixels.
        bgra: pixels, shape ``(height, width, 4)``, bytes in B, G, R, A order;
            writable and owned by the frame (a fresh buffer per grab).
    """

    index: int
    captured_at: float
    region: Region
    bgra: npt.NDArray[np.uint8]

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.bgra.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.bgra.shape[0])


FrameCallback = Callable[[CapturedFrame], object]


def _open(display: str | None) -> Any:
    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10.2 renamed the factory
    kwargs: dict[str, Any] = {} if display is None else {"display": display}
    try:
        return factory(**kwargs)
    except mss.exception.ScreenShotError as exc:
        where = display or "$DISPLAY"
        raise CaptureError(f"cannot open the desktop ({where}): {exc}. Run inside a "
                           "graphical session, or share only the terminal") from None


def monitors(display: str | None = None) -> list[Region]:
    """The desktop's monitors as mss numbers them: ``[all, first, second, ...]``.

    Raises:
        CaptureError: if there is no desktop to capture.
    """
    with contextlib.closing(_open(display)) as shooter:
        return [Region(m["left"], m["top"], m["width"], m["height"]) for m in shooter.monitors]


def resolve(shooter: Any, monitor: int, region: Region | None) -> Region:
    """The rectangle to capture for ``monitor`` or ``region``.

    Raises:
        CaptureError: if the monitor does not exist or the region is empty or
            lies outside the desktop.
    """
    screens = [Region(m["left"], m["top"], m["width"], m["height"]) for m in shooter.monitors]
    if region is None:
        if not 0 <= monitor < len(screens):
            raise CaptureError(f"there is no monitor {monitor}; this desktop has "
                               f"{len(screens) - 1} (0 means all of them)")
        return screens[monitor]
    desktop = screens[0]
    inside = (region.width > 0 and region.height > 0 and region.left >= desktop.left
              and region.top >= desktop.top
              and region.left + region.width <= desktop.left + desktop.width
              and region.top + region.height <= desktop.top + desktop.height)
    if not inside:
        raise CaptureError(f"region {region.width}x{region.height}+{region.left}+{region.top} "
                           f"is not inside the desktop ({desktop.width}x{desktop.height}); "
                           "choose a smaller region")
    return region


def grab(shooter: Any, region: Region) -> npt.NDArray[np.uint8]:
    """Grab ``region`` with an open mss instance as a ``(h, w, 4)`` BGRA array."""
    try:
        shot = shooter.grab({"left": region.left, "top": region.top,
                             "width": region.width, "height": region.height})
    except mss.exception.ScreenShotError as exc:
        raise CaptureError(f"screen capture failed: {exc}") from None
    # mss hands over a fresh bytearray per grab: wrapping it is free and safe.
    return np.frombuffer(shot.raw, dtype=np.uint8).reshape(region.height, region.width, 4)


class ScreenCapture:
    """Grab the desktop at ``fps`` in a background thread.

    Args:
        on_frame: called in the capture thread with every frame; keep it
            short of ``1 / fps`` seconds or frames are skipped (never queued).
        monitor: 0 for all monitors, N for the N-th (1-based).
        region: a rectangle of the desktop; overrides ``monitor``.
        fps: frames per second to aim for.
        display: X display name; ``None`` lets mss use ``$DISPLAY``.
        on_error: called in the capture thread if capture fails for good.
    """

    def __init__(self, on_frame: FrameCallback | None = None, *, monitor: int = 0,
                 region: Region | None = None, fps: float = DEFAULT_FPS,
                 display: str | None = None,
                 on_error: Callable[[CaptureError], object] | None = None) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.on_frame = on_frame
        self.on_error = on_error
        self.monitor = monitor
        self.requested_region = region
        self.fps = fps
        self.display = display
        self.region: Region | None = None
        self.error: CaptureError | None = None
        self.frames = 0
        self.skipped = 0
        self._latest: CapturedFrame | None = None
        self._cond = threading.Condition()
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------

    def start(self) -> Region:
        """Open the display, start the thread and return the captured rectangle.

        Raises:
            CaptureError: if the display, monitor or region is not usable.
        """
        if self._thread is not None:
            raise RuntimeError("capture already started")
        # Open once here so that configuration errors reach the caller, not a thread.
        with contextlib.closing(_open(self.display)) as shooter:
            self.region = resolve(shooter, self.monitor, self.requested_region)
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="assist-capture", daemon=True)
        self._thread.start()
        log.debug("capturing %s at %g fps", self.region, self.fps)
        return self.region

    def pause(self) -> None:
        """Stop grabbing until :meth:`resume`; the thread stays ready."""
        self._running.clear()

    def resume(self) -> None:
        """Grab again after :meth:`pause`."""
        self._running.set()

    @property
    def paused(self) -> bool:
        """``True`` while paused."""
        return not self._running.is_set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds)."""
        self._stopped.set()
        self._running.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- frames ----------------------------------------------------------------------

    @property
    def latest(self) -> CapturedFrame | None:
        """The newest frame, if any."""
        return self._latest

    def wait_frame(self, after: int = -1, timeout: float | None = None) -> CapturedFrame:
        """Block until a frame with ``index > after`` exists and return the newest.

        Raises:
            CaptureError: if capture failed, stopped, or ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._latest.index > after:
                    return self._latest
                if self.error is not None:
                    raise self.error
                if self._stopped.is_set():
                    raise CaptureError("screen capture stopped")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CaptureError(f"no screen frame within {timeout:g} s")
                self._cond.wait(left)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        assert self.region is not None
        period = 1.0 / self.fps
        try:
            with contextlib.closing(_open(self.display)) as shooter:
                next_at = time.monotonic()
                while not self._stopped.is_set():
                    if not self._running.is_set():
                        self._running.wait()
                        next_at = time.monotonic()
                        continue
                    now = time.monotonic()
                    if now < next_at:
                        self._stopped.wait(next_at - now)
                        continue
                    self._one(shooter, now)
                    next_at += period
                    if next_at < time.monotonic():  # fell behind: skip, do not burst
                        behind = int((time.monotonic() - next_at) / period) + 1
                        self.skipped += behind
                        next_at += behind * period
        except CaptureError as exc:
            self._fail(exc)
        except Exception as exc:  # the thread must report, never die silently
            log.exception("screen capture crashed")
            self._fail(CaptureError(f"screen capture failed unexpectedly: {exc}"))

    def _one(self, shooter: Any, started: float) -> None:
        assert self.region is not None
        frame = CapturedFrame(self.frames, started, self.region, grab(shooter, self.region))
        self.frames += 1
        with self._cond:
            self._latest = frame
            self._cond.notify_all()
        if self.on_frame is not None:
            self.on_frame(frame)

    def _fail(self, error: CaptureError) -> None:
        log.warning("%s", error.message)
        with self._cond:
            self.error = error
            self._cond.notify_all()
        if self.on_error is not None:
            self.on_error(error)
