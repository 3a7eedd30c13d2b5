"""A Textual widget that shows a shared desktop in the terminal.

Where the terminal takes the Kitty graphics protocol or Sixel (see
:mod:`assist.tui.graphics`), the picture is drawn in real pixels by a
textual-image widget inside the view. Elsewhere each terminal cell shows two
pixels stacked: an upper half block (``▀``) in the upper pixel's colour over a
background of the lower pixel's colour, so a 120x40 widget shows a
120x80-pixel picture with square pixels. Either way the frame is fitted to
the widget's cells (keeping its aspect ratio) or, when zoomed, only the zoom
rectangle is scaled up: the way to read small text on a big screen.

Both ways share one picture of what is visible (:func:`visible`: the zoom
rectangle, scaled, with the marks drawn in) and one fit in cells, so zoom,
pan, marks and the mouse mean the same desktop pixels in every mode.
Scaling, drawing marks and building the cell lines happen in a worker thread
with numpy (nearest-neighbour sampling, runs of equal cells merged into one
segment); the UI thread only swaps in finished lines or pictures. Only the
newest frame is ever converted: frames arriving while a conversion runs
replace each other. In pixel modes the library encodes the picture (PNG or
Sixel) on the UI loop as it draws, so a :class:`~assist.core.pace.FramePacer`
spaces the pictures by their bytes and by what drawing them cost the loop,
and Sixel pictures get their colours reduced in the thread beforehand.

Marks (boxes and points in frame pixels, e.g. the agent's annotations) are
drawn into the scaled picture, so they stay on what they mark while zooming.
With :attr:`VideoView.mark_mode` on, a mouse drag (or click) on the picture
posts :class:`VideoView.Marked` with frame-pixel coordinates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget

from assist.core.pace import FramePacer, link_budget
from assist.errors import AssistError
from assist.media.errors import MediaError
from assist.media.snapshot import save_png
from assist.tui import graphics
from assist.tui.halfblocks import CellStyles, to_strips

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

MIN_ZOOM = 16
"""Smallest zoom rectangle, in frame pixels, on its shorter side."""
MARK_RGB = (255, 0, 255)
"""Colour of marks drawn on the picture: magenta, as on the terminal overlay."""
PIXEL_MODES: tuple[graphics.Mode, ...] = ("kitty", "sixel")
"""Modes drawn in real pixels by a textual-image widget; the others use half blocks."""
MAX_PICTURE_CELLS = 297
"""Most cells a pixel picture spans either way: textual-image numbers Kitty's
placeholder cells with 297 diacritics and refuses wider pictures."""


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


def fit_cells(frame_w: int, frame_h: int, cols: int, rows: int,
              cell: tuple[int, int]) -> tuple[int, int]:
    """Cells ``(across, down)`` a real-pixel picture takes in ``cols`` x ``rows``, aspect kept.

    ``cell`` is a terminal cell's size in pixels: the picture is drawn at
    ``across * cell[0]`` x ``down * cell[1]`` pixels, so it fills whole cells.
    """
    cell_w, cell_h = cell
    if min(frame_w, frame_h, cols, rows, cell_w, cell_h) <= 0:
        return 0, 0
    scale = min(cols * cell_w / frame_w, rows * cell_h / frame_h)
    return (max(1, min(cols, round(frame_w * scale / cell_w))),
            max(1, min(rows, round(frame_h * scale / cell_h))))


def scale(rgb: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour resample of ``rgb`` to ``width`` x ``height`` (no copies but one)."""
    src_h, src_w = rgb.shape[:2]
    ys = (np.arange(height) * src_h // height).clip(0, src_h - 1)
    xs = (np.arange(width) * src_w // width).clip(0, src_w - 1)
    scaled: npt.NDArray[np.uint8] = rgb[ys[:, None], xs[None, :]]
    return scaled


def draw_marks(picture: npt.NDArray[np.uint8], marks: list[Box], view: Box,
               thickness: int = 1) -> None:
    """Draw ``marks`` (frame pixels) as outlines into ``picture``, the scaled ``view``.

    A mark of zero size is a point, drawn as a small cross. Lines are
    ``thickness`` pixels wide (real-pixel pictures need more than one to be
    seen). Parts outside the picture are clipped; ``picture`` is changed in place.
    """
    height, width = picture.shape[:2]
    if not width or not height or not view.width or not view.height:
        return
    sx, sy, t = width / view.width, height / view.height, max(1, thickness)
    for mark in marks:
        left = int((mark.x - view.x) * sx)
        top = int((mark.y - view.y) * sy)
        if mark.width == 0 and mark.height == 0:
            _fill(picture, left - 2 * t, top, left + 3 * t, top + t)
            _fill(picture, left, top - 2 * t, left + t, top + 3 * t)
            continue
        right = max(left + t, int((mark.x + mark.width - view.x) * sx))
        bottom = max(top + t, int((mark.y + mark.height - view.y) * sy))
        _fill(picture, left, top, right, top + t)
        _fill(picture, left, bottom - t, right, bottom)
        _fill(picture, left, top, left + t, bottom)
        _fill(picture, right - t, top, right, bottom)


def visible(frame: npt.NDArray[np.uint8], view: Box, marks: list[Box], width: int,
            height: int, thickness: int = 1) -> npt.NDArray[np.uint8]:
    """What the view shows of ``frame``: the ``view`` rectangle scaled to ``width`` x
    ``height`` pixels, with ``marks`` drawn in (so they stay on what they mark when zoomed).

    The one way both the half-block and the real-pixel drawing compute their picture.
    """
    crop = frame[view.y:view.y + view.height, view.x:view.x + view.width]
    picture = scale(crop, width, height)  # a fresh array: safe to draw on
    draw_marks(picture, marks, view, thickness)
    return picture


def _fill(picture: npt.NDArray[np.uint8], x0: int, y0: int, x1: int, y1: int) -> None:
    height, width = picture.shape[:2]
    x0, x1 = max(0, x0), min(width, x1)
    y0, y1 = max(0, y0), min(height, y1)
    if x0 < x1 and y0 < y1:
        picture[y0:y1, x0:x1] = MARK_RGB


class VideoView(Widget, can_focus=True):
    """The newest frame of a video, in real pixels or half blocks, with zoom and snapshots.

    Feed it with :meth:`update_frame` (for example from
    :class:`assist.media.tracks.VideoReceiver`'s ``on_frame``).

    Messages:
        VideoView.Marked: a drag or click on the picture in :attr:`mark_mode`.
        VideoView.SnapshotSaved / VideoView.SnapshotFailed: after ``s``.

    Args:
        snapshot_dir: where :meth:`action_snapshot` saves PNG files.
        mode: how the picture is drawn: ``"kitty"`` or ``"sixel"`` in real pixels
            by a textual-image widget; ``"halfcell"``, ``"text"`` or ``None``
            (the default) with the view's own half blocks.
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

    def __init__(self, snapshot_dir: Path | None = None, *, mode: graphics.Mode | None = None,
                 name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.snapshot_dir = snapshot_dir or Path.cwd()
        self.mode = mode
        """How the picture is drawn (see the class); fixed for the view's life."""
        self._picture: Widget | None = None  # the textual-image widget, in pixel modes
        self._cell: tuple[int, int] | None = None  # a cell in pixels, in pixel modes
        self._picture_cells: tuple[int, int] = (0, 0)  # the picture widget's size
        self.pacer = FramePacer(link_budget(os.environ))
        """Spaces the pictures of pixel modes (half blocks cost the loop little)."""
        self._waiting: Timer | None = None
        self.frame: npt.NDArray[np.uint8] | None = None
        self.frames_shown = 0
        self._lines: list[Strip] = []
        self._styles = CellStyles()
        self._busy = False
        self._dirty = False
        self.mark_mode = False
        """Mouse drags mark the picture (posting :class:`Marked`) instead of nothing."""
        self.marks: dict[str, tuple[Box, float]] = {}
        # What is shown and the cells it takes from the top left: (view, across, down).
        self._layout: tuple[Box, int, int] | None = None
        self._drag: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        """The textual-image widget in pixel modes; nothing otherwise (lines are rendered)."""
        if self.mode in PIXEL_MODES:
            assert self.mode is not None
            self._picture = graphics.image_widget(self.mode, "video-picture")
            # Asked once by textual-image as it is imported, so this is only a look-up.
            self._cell = graphics.cell_pixels()
            yield self._picture

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
        if self._picture is not None:
            self._picture.image = None  # type: ignore[attr-defined]  # textual-image's property
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
        # Every mode maps through the fit in cells, so a cell means one desktop pixel.
        view, across, down = self._layout
        if not (0 <= x < across and 0 <= y < down):
            return None
        # The middle of the cell (for half blocks: the boundary of its two pixel rows).
        px = view.x + int((x + 0.5) * view.width / across)
        py = view.y + int((2 * y + 1) * view.height / (2 * down))
        return min(px, view.x + view.width - 1), min(py, view.y + view.height - 1)

    def _cell_of(self, event: events.MouseEvent) -> tuple[int, int]:
        # In pixel modes a press lands on the picture widget and bubbles up with
        # offsets relative to it; the screen offset means the same cell in any mode.
        return event.screen_x - self.region.x, event.screen_y - self.region.y

    def on_mouse_down(self, event: events.MouseDown) -> None:
        cell = self._cell_of(event)
        if self.mark_mode and self.pixel_at(*cell) is not None:
            self._drag = cell
            self.capture_mouse()
            event.stop()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._drag is None:
            return
        start_cell, self._drag = self._drag, None
        self.release_mouse()
        event.stop()
        x, y = self._cell_of(event)
        start = self.pixel_at(*start_cell)
        end = self._clamped_pixel(x, y)
        if start is not None and end is not None:
            if (x, y) == start_cell:
                end = start  # a click is a point, not a one-cell box
            self.post_message(self.Marked(self, start, end))

    def _clamped_pixel(self, x: int, y: int) -> tuple[int, int] | None:
        if self._layout is None:
            return None
        _, across, down = self._layout
        return self.pixel_at(max(0, min(x, across - 1)), max(0, min(y, down - 1)))

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
        if self._busy or self._waiting is not None:
            self._dirty = True
            return
        if self._picture is not None:
            now = time.monotonic()
            if not self.pacer.ready(now):
                self._dirty = True
                self._waiting = self.set_timer(max(0.001, self.pacer.next_at - now),
                                               self._waited)
                return
            self.pacer.shown(now, graphics.frame_bytes(self.mode or "kitty", *self._cells()))
        self._busy, self._dirty = True, False
        frame, zoom = self.frame, self.zoom
        marks = [box for box, _ in self.marks.values()]
        cols, rows = self.size.width, self.size.height
        self.run_worker(lambda: self._convert(frame, zoom, marks, cols, rows), thread=True,
                        group="video-convert", exit_on_error=False)

    def _waited(self) -> None:
        self._waiting = None
        if self._dirty:
            self._schedule()

    def _cells(self) -> tuple[int, int]:
        across, down = self._picture_cells
        return (across or self.size.width), (down or self.size.height)

    def _fit(self, view: Box, cols: int, rows: int) -> tuple[int, int, int, int, int]:
        """Cells across and down the picture of ``view`` takes, its size in pixels, and
        how thick marks are drawn."""
        if self._cell is None:  # half blocks: two square pixels a cell
            width, height = fit(view.width, view.height, cols, rows)
            return width, height // 2, width, height, 1
        cell_w, cell_h = self._cell
        across, down = fit_cells(view.width, view.height, min(cols, MAX_PICTURE_CELLS),
                                 min(rows, MAX_PICTURE_CELLS), self._cell)
        # Drawn at exactly its cells' pixels, textual-image has nothing left to scale.
        return across, down, across * cell_w, down * cell_h, max(1, cell_h // 6)

    def _convert(self, frame: npt.NDArray[np.uint8], zoom: Box | None, marks: list[Box],
                 cols: int, rows: int) -> None:
        started = time.perf_counter()
        view = zoom or Box(0, 0, int(frame.shape[1]), int(frame.shape[0]))
        across, down, width, height, thickness = self._fit(view, cols, rows)
        lines: list[Strip] = []
        image: PILImage | None = None
        if across and down:
            picture = visible(frame, view, marks, width, height, thickness)
            if self._picture is not None:
                from PIL import Image  # only pixel modes need Pillow (via textual-image)

                image = Image.fromarray(picture)
                if self.mode == "sixel":
                    image = image.quantize(graphics.SIXEL_COLOURS).convert("RGB")
            else:
                lines = to_strips(picture, self._styles)
        log.debug("frame converted in %.1f ms", (time.perf_counter() - started) * 1000)
        with contextlib.suppress(RuntimeError):  # the app is shutting down
            self.app.call_from_thread(self._apply, lines, image, (view, across, down))

    def _apply(self, lines: list[Strip], image: PILImage | None,
               layout: tuple[Box, int, int]) -> None:
        self._lines = lines
        self._layout = layout
        if self._picture is not None:
            if layout[1:] != self._picture_cells:
                # Sized to the fitted cells from the top left, as the half blocks are.
                self._picture_cells = layout[1:]
                self._picture.styles.width, self._picture.styles.height = layout[1:]
            # The library encodes (PNG or Sixel) and sends it when it next renders: this
            # thread's CPU time until then is what the picture cost the loop.
            started = time.thread_time()
            self._picture.image = image  # type: ignore[attr-defined]  # textual-image's property
            self.call_after_refresh(lambda: self.pacer.drew(time.thread_time() - started))
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
