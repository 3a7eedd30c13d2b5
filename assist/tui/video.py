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

Marks (boxes and points in frame pixels, e.g. the agent's annotations) are
drawn into the scaled picture, so they stay on what they mark while zooming.
With :attr:`VideoView.mark_mode` on, a mouse drag (or click) on the picture
posts :class:`VideoView.Marked` with frame-pixel coordinates.
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
from textual import events
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
MARK_RGB = (255, 0, 255)
"""Colour of marks drawn on the picture: magenta, as on the terminal overlay."""


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


def draw_marks(picture: npt.NDArray[np.uint8], marks: list[Box], view: Box) -> None:
    """Draw ``marks`` (frame pixels) as outlines into ``picture``, the scaled ``view``.

    A mark of zero size is a point, drawn as a small cross. Parts outside the
    picture are clipped; ``picture`` is changed in place.
    """
    height, width = picture.shape[:2]
    if not width or not height or not view.width or not view.height:
        return
    sx, sy = width / view.width, height / view.height
    for mark in marks:
        left = int((mark.x - view.x) * sx)
        top = int((mark.y - view.y) * sy)
        if mark.width == 0 and mark.height == 0:
            _fill(picture, left - 2, top, left + 3, top + 1)
            _fill(picture, left, top - 2, left + 1, top + 3)
            continue
        right = max(left + 1, int((mark.x + mark.width - view.x) * sx))
        bottom = max(top + 1, int((mark.y + mark.height - view.y) * sy))
        _fill(picture, left, top, right, top + 1)
        _fill(picture, left, bottom - 1, right, bottom)
        _fill(picture, left, top, left + 1, bottom)
        _fill(picture, right - 1, top, right, bottom)


def _fill(picture: npt.NDArray[np.uint8], x0: int, y0: int, x1: int, y1: int) -> None:
    height, width = picture.shape[:2]
    x0, x1 = max(0, x0), min(width, x1)
    y0, y1 = max(0, y0), min(height, y1)
    if x0 < x1 and y0 < y1:
        picture[y0:y1, x0:x1] = MARK_RGB


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

    Messages:
        VideoView.Marked: a drag or click on the picture in :attr:`mark_mode`.
        VideoView.SnapshotSaved / VideoView.SnapshotFailed: after ``s``.

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

    class Marked(Message):
        """The mouse marked the picture from ``start`` to ``end``.

        Both are frame pixels ``(x, y)``; they are equal for a click.
        """

        def __init__(self, view: VideoView, start: tuple[int, int],
                     end: tuple[int, int]) -> None:
            super().__init__()
            self.view = view
            self.start = start
            self.end = end

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
        self.mark_mode = False
        """Mouse drags mark the picture (posting :class:`Marked`) instead of nothing."""
        self.marks: dict[str, tuple[Box, float]] = {}
        self._layout: tuple[Box, int, int] | None = None
        self._drag: tuple[int, int] | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self._expire_marks)

    # -- feeding ------------------------------------------------------------------

    def update_frame(self, rgb: npt.NDArray[np.uint8]) -> None:
        """Show ``rgb`` (``(h, w, 3)``, RGB); call on the UI thread."""
        self.frame = rgb
        if self.zoom is not None and not self._zoom_fits(self.zoom):
            self.zoom = None
        self._schedule()

    def clear(self) -> None:
        """Show nothing (the share is over); marks and zoom are dropped too."""
        self.frame = None
        self.marks.clear()
        self.zoom = None
        self._lines = []
        self._layout = None
        self.refresh()

    def zoom_to(self, x: int, y: int, width: int, height: int) -> None:
        """Show only this rectangle of the frame (clamped to the frame)."""
        self.zoom = self._clamp(Box(x, y, width, height))

    def add_mark(self, key: str, box: Box, ttl: float) -> None:
        """Draw ``box`` (frame pixels; zero size: a point) for ``ttl`` seconds."""
        self.marks[key] = (box, time.monotonic() + ttl)
        self._schedule()

    def clear_marks(self, keys: tuple[str, ...] = ()) -> None:
        """Remove the given marks (all when empty)."""
        if not keys:
            self.marks.clear()
        for key in keys:
            self.marks.pop(key, None)
        self._schedule()

    def _expire_marks(self) -> None:
        now = time.monotonic()
        gone = [key for key, (_, until) in self.marks.items() if until <= now]
        if gone:
            self.clear_marks(tuple(gone))

    def pixel_at(self, x: int, y: int) -> tuple[int, int] | None:
        """The frame pixel under the cell at widget offset ``(x, y)``; ``None`` off the picture."""
        if self._layout is None:
            return None
        view, width, height = self._layout
        if not (0 <= x < width and 0 <= 2 * y < height):
            return None
        # The middle of the cell: half a column across, the boundary of its two pixel rows.
        px = view.x + int((x + 0.5) * view.width / width)
        py = view.y + int((2 * y + 1) * view.height / height)
        return min(px, view.x + view.width - 1), min(py, view.y + view.height - 1)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if self.mark_mode and self.pixel_at(event.x, event.y) is not None:
            self._drag = (event.x, event.y)
            self.capture_mouse()
            event.stop()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._drag is None:
            return
        start_cell, self._drag = self._drag, None
        self.release_mouse()
        event.stop()
        start = self.pixel_at(*start_cell)
        end = self._clamped_pixel(event.x, event.y)
        if start is not None and end is not None:
            if abs(event.x - start_cell[0]) + abs(event.y - start_cell[1]) == 0:
                end = start  # a click is a point, not a one-cell box
            self.post_message(self.Marked(self, start, end))

    def _clamped_pixel(self, x: int, y: int) -> tuple[int, int] | None:
        if self._layout is None:
            return None
        _, width, height = self._layout
        return self.pixel_at(max(0, min(x, width - 1)), max(0, min(y, height // 2 - 1)))

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
        marks = [box for box, _ in self.marks.values()]
        cols, rows = self.size.width, self.size.height
        self.run_worker(lambda: self._convert(frame, zoom, marks, cols, rows), thread=True,
                        group="video-convert", exit_on_error=False)

    def _convert(self, frame: npt.NDArray[np.uint8], zoom: Box | None, marks: list[Box],
                 cols: int, rows: int) -> None:
        started = time.perf_counter()
        view = zoom or Box(0, 0, int(frame.shape[1]), int(frame.shape[0]))
        if zoom is not None:
            frame = frame[zoom.y:zoom.y + zoom.height, zoom.x:zoom.x + zoom.width]
        width, height = fit(frame.shape[1], frame.shape[0], cols, rows)
        lines: list[Strip] = []
        if width:
            picture = scale(frame, width, height)  # a fresh array: safe to draw on
            draw_marks(picture, marks, view)
            lines = to_strips(picture, self._styles)
        log.debug("frame converted in %.1f ms", (time.perf_counter() - started) * 1000)
        with contextlib.suppress(RuntimeError):  # the app is shutting down
            self.app.call_from_thread(self._apply, lines, (view, width, height))

    def _apply(self, lines: list[Strip], layout: tuple[Box, int, int]) -> None:
        self._lines = lines
        self._layout = layout
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
