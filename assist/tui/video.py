"""A Textual widget that shows a shared desktop in the terminal.

Each terminal cell shows two pixels stacked: an upper half block (``▀``) in
the upper pixel's colour over a background of the lower pixel's colour, so a
120x40 widget shows a 120x80-pixel picture with square pixels. The frame is
scaled to fit (keeping its aspect ratio) or, when zoomed, only the zoom
rectangle is scaled up: the way to read small text on a big screen.

Scaling and building the cell lines happen in a worker thread with numpy
(nearest-neighbour sampling, runs of equal cells merged into one segment);
the UI thread only swaps in finished lines. Only the newest frame is ever
converted: frames arriving while a conversion runs replace each other.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from assist.errors import AssistError
from assist.media.errors import MediaError
from assist.media.snapshot import save_png

log = logging.getLogger(__name__)

HALF_BLOCK = "▀"
MIN_ZOOM = 16
"""Smallest zoom rectangle, in frame pixels, on its shorter side."""


@dataclass(frozen=True)
class Box:
    """A rectangle of the frame, in pixels."""

    x: int
    y: int
    width: int
    height: int


def fit(frame_w: int, frame_h: int, cols: int, rows: int) -> tuple[int, int]:
    """Pixel size ``(w, h)`` of the picture in ``cols`` x ``rows`` cells, aspect kept.

    ``h`` is even: two pixels per cell row.
    """
    if frame_w <= 0 or frame_h <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / frame_w, 2 * rows / frame_h)
    width = max(1, min(cols, round(frame_w * scale)))
    height = max(2, min(2 * rows, round(frame_h * scale)))
    return width, height - height % 2


def scale(rgb: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour resample of ``rgb`` to ``width`` x ``height`` (no copies but one)."""
    src_h, src_w = rgb.shape[:2]
    ys = (np.arange(height) * src_h // height).clip(0, src_h - 1)
    xs = (np.arange(width) * src_w // width).clip(0, src_w - 1)
    scaled: npt.NDArray[np.uint8] = rgb[ys[:, None], xs[None, :]]
    return scaled


class _Styles:
    """Rich styles by packed ``(top << 24) | bottom`` colour, made once each."""

    def __init__(self, limit: int = 65536) -> None:
        self._cache: dict[int, Style] = {}
        self._limit = limit

    def get(self, key: int) -> Style:
        style = self._cache.get(key)
        if style is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            top, bottom = key >> 24, key & 0xFFFFFF
            style = Style.from_color(
                Color.from_rgb(top >> 16, (top >> 8) & 0xFF, top & 0xFF),
                Color.from_rgb(bottom >> 16, (bottom >> 8) & 0xFF, bottom & 0xFF))
            self._cache[key] = style
        return style


def to_strips(rgb: npt.NDArray[np.uint8], styles: _Styles) -> list[Strip]:
    """Cell lines of an ``(h, w, 3)`` picture with even ``h``, two pixel rows per line."""
    packed = ((rgb[:, :, 0].astype(np.int64) << 16) | (rgb[:, :, 1].astype(np.int64) << 8)
              | rgb[:, :, 2].astype(np.int64))
    keys = (packed[0::2] << 24) | packed[1::2]
    strips = []
    for row in keys:
        # Start of every run of identical cells: one segment per run.
        starts = np.flatnonzero(np.concatenate(([True], row[1:] != row[:-1])))
        ends = np.append(starts[1:], len(row))
        segments = [Segment(HALF_BLOCK * int(end - start), styles.get(int(row[start])))
                    for start, end in zip(starts, ends, strict=True)]
        strips.append(Strip(segments, len(row)))
    return strips


class VideoView(Widget, can_focus=True):
    """The newest frame of a video, drawn with half blocks, with zoom and snapshots.

    Feed it with :meth:`update_frame` (for example from
    :class:`assist.media.tracks.VideoReceiver`'s ``on_frame``).

    Args:
        snapshot_dir: where :meth:`action_snapshot` saves PNG files.
    """

    DEFAULT_CSS = """
    VideoView {
        width: 1fr;
        height: 1fr;
        background: $background;
    }
    """

    BINDINGS = [
        Binding("plus,equals_sign", "zoom_in", "Zoom in"),
        Binding("minus", "zoom_out", "Zoom out"),
        Binding("0", "zoom_reset", "Whole screen"),
        Binding("left", "pan(-1, 0)", "Pan", show=False),
        Binding("right", "pan(1, 0)", "Pan", show=False),
        Binding("up", "pan(0, -1)", "Pan", show=False),
        Binding("down", "pan(0, 1)", "Pan", show=False),
        Binding("s", "snapshot", "Snapshot"),
    ]

    zoom: reactive[Box | None] = reactive(None, layout=False)
    """The part of the frame shown, in frame pixels; ``None`` shows it all."""

    class SnapshotSaved(Message):
        """A snapshot was written to ``path``."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    class SnapshotFailed(Message):
        """A snapshot could not be written; ``message`` says why and what to do."""

        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    def __init__(self, snapshot_dir: Path | None = None, *, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.snapshot_dir = snapshot_dir or Path.cwd()
        self.frame: npt.NDArray[np.uint8] | None = None
        self.frames_shown = 0
        self._lines: list[Strip] = []
        self._styles = _Styles()
        self._busy = False
        self._dirty = False

    # -- feeding ------------------------------------------------------------------

    def update_frame(self, rgb: npt.NDArray[np.uint8]) -> None:
        """Show ``rgb`` (``(h, w, 3)``, RGB); call on the UI thread."""
        self.frame = rgb
        if self.zoom is not None and not self._zoom_fits(self.zoom):
            self.zoom = None
        self._schedule()

    def zoom_to(self, x: int, y: int, width: int, height: int) -> None:
        """Show only this rectangle of the frame (clamped to the frame)."""
        self.zoom = self._clamp(Box(x, y, width, height))

    def watch_zoom(self) -> None:
        self._schedule()

    def on_resize(self) -> None:
        self._schedule()

    def render_line(self, y: int) -> Strip:
        """The cell line ``y`` of the newest converted frame."""
        if y < len(self._lines):
            return self._lines[y]
        return Strip.blank(self.size.width)

    # -- conversion off the UI thread --------------------------------------------------

    def _schedule(self) -> None:
        if self.frame is None or not self.is_mounted:
            return
        if self._busy:
            self._dirty = True
            return
        self._busy, self._dirty = True, False
        frame, zoom = self.frame, self.zoom
        cols, rows = self.size.width, self.size.height
        self.run_worker(lambda: self._convert(frame, zoom, cols, rows), thread=True,
                        group="video-convert", exit_on_error=False)

    def _convert(self, frame: npt.NDArray[np.uint8], zoom: Box | None, cols: int,
                 rows: int) -> None:
        started = time.perf_counter()
        if zoom is not None:
            frame = frame[zoom.y:zoom.y + zoom.height, zoom.x:zoom.x + zoom.width]
        width, height = fit(frame.shape[1], frame.shape[0], cols, rows)
        lines = to_strips(scale(frame, width, height), self._styles) if width else []
        log.debug("frame converted in %.1f ms", (time.perf_counter() - started) * 1000)
        with contextlib.suppress(RuntimeError):  # the app is shutting down
            self.app.call_from_thread(self._apply, lines)

    def _apply(self, lines: list[Strip]) -> None:
        self._lines = lines
        self.frames_shown += 1
        self._busy = False
        self.refresh()
        if self._dirty:
            self._schedule()

    # -- zoom -------------------------------------------------------------------------

    def _full(self) -> Box:
        assert self.frame is not None
        return Box(0, 0, int(self.frame.shape[1]), int(self.frame.shape[0]))

    def _zoom_fits(self, box: Box) -> bool:
        full = self._full()
        return box.x + box.width <= full.width and box.y + box.height <= full.height

    def _clamp(self, box: Box) -> Box | None:
        if self.frame is None:
            return box
        full = self._full()
        width = max(min(MIN_ZOOM, full.width), min(box.width, full.width))
        height = max(min(MIN_ZOOM, full.height), min(box.height, full.height))
        if (width, height) == (full.width, full.height):
            return None
        x = min(max(0, box.x), full.width - width)
        y = min(max(0, box.y), full.height - height)
        return Box(x, y, width, height)

    def _zoom_by(self, factor: float) -> None:
        if self.frame is None:
            return
        box = self.zoom or self._full()
        width, height = round(box.width * factor), round(box.height * factor)
        cx, cy = box.x + box.width // 2, box.y + box.height // 2
        self.zoom = self._clamp(Box(cx - width // 2, cy - height // 2, width, height))

    def action_zoom_in(self) -> None:
        """Show half the width and height around the centre."""
        self._zoom_by(0.5)

    def action_zoom_out(self) -> None:
        """Show twice the width and height."""
        self._zoom_by(2.0)

    def action_zoom_reset(self) -> None:
        """Show the whole frame."""
        self.zoom = None

    def action_pan(self, dx: int, dy: int) -> None:
        """Move the zoom rectangle by a quarter of its size."""
        if self.zoom is not None:
            box = self.zoom
            self.zoom = self._clamp(Box(box.x + dx * max(1, box.width // 4),
                                        box.y + dy * max(1, box.height // 4),
                                        box.width, box.height))

    # -- snapshots --------------------------------------------------------------------

    def save_snapshot(self, path: Path) -> Path:
        """Save the newest full frame (not just the zoomed part) as a PNG file.

        Blocking (PNG encoding takes tens of ms at 1080p): call it from a worker.

        Raises:
            MediaError: if there is no frame yet or the file cannot be written.
        """
        if self.frame is None:
            raise MediaError("there is no picture to save yet; wait for the shared screen")
        return save_png(self.frame, path)

    def action_snapshot(self) -> None:
        """Save a snapshot into :attr:`snapshot_dir` in a worker thread."""
        path = self.snapshot_dir / time.strftime("assist-snapshot-%Y%m%d-%H%M%S.png")

        def work() -> None:
            try:
                saved: Message = self.SnapshotSaved(self.save_snapshot(path))
            except AssistError as exc:
                saved = self.SnapshotFailed(exc.message)
            self.post_message(saved)

        self.run_worker(work, thread=True, group="video-snapshot", exit_on_error=False)
