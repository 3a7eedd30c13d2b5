"""A widget showing a terminal screen (an :class:`~assist.share.emulator.Emulator`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from assist.share.emulator import Cell, Emulator
from assist.tui.keys import key_bytes
from assist.tui.overlay import Overlay, paint

FRAME = 1 / 30
NUDGE_GAP = 0.008
"""Least time between two out-of-frame updates (see :meth:`TerminalView.nudge`)."""

DECCKM = 1 << 5
"""pyte stores private modes shifted by 5; mode 1 is application cursor keys."""

_NAMES = {"brown": "yellow", "brightbrown": "bright_yellow"}
PEN = Style(bgcolor="bright_magenta", color="black", bold=True)
"""The keyboard drawing cursor of the console."""
NOTICE = Style(bgcolor="yellow", color="black", bold=True)
"""A notice shown instead of the screen (the user paused sharing)."""


def _color(name: str) -> str:
    # The 16 palette colours and the terminal's default stay ANSI (the apps pass
    # them through: the viewer's own palette applies, as in tmux); the rest is RGB.
    if name == "default":
        return "default"
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return f"#{name}"
    name = _NAMES.get(name, name)
    return name.replace("bright", "bright_") if name.startswith("bright") and "_" not in name \
        else name


def cell_style(cell: Cell, cursor: bool = False) -> Style:
    """Rich style for a cell's attributes; ``cursor`` shows it the other way round."""
    return _style(cell.fg, cell.bg, cell.bold, cell.dim, cell.italics, cell.underscore,
                  cell.blink, cell.reverse != cursor, cell.invisible, cell.strike)


@lru_cache(maxsize=4096)
def _style(fg: str, bg: str, bold: bool, dim: bool, italic: bool, underline: bool,
           blink: bool, reverse: bool, conceal: bool, strike: bool) -> Style:
    # Cached: a screen repeats a few styles.
    return Style(color=_color(fg), bgcolor=_color(bg), bold=bold, dim=dim, italic=italic,
                 underline=underline, blink=blink, reverse=reverse, conceal=conceal,
                 strike=strike)


class TerminalView(Widget, can_focus=True):
    """Renders an emulator's screen at its own size; optionally types into it.

    Messages:
        TerminalView.Input: keys typed while focused (if not read-only).
    """

    DEFAULT_CSS = """
    TerminalView { width: auto; height: auto; background: $background; }
    TerminalView:focus { background-tint: $foreground 0%; }
    """

    class Input(Message):
        """Bytes typed into the terminal view."""

        def __init__(self, view: TerminalView, data: bytes) -> None:
            super().__init__()
            self.view = view
            self.data = data

    class Drawn(Message):
        """A mouse drag over the view in draw mode: from one cell to another.

        Cells are ``(x, line)`` with ``line`` counted since the session began.
        """

        def __init__(self, view: TerminalView, start: tuple[int, int],
                     end: tuple[int, int]) -> None:
            super().__init__()
            self.view = view
            self.start = start
            self.end = end

    def __init__(self, emulator: Emulator, read_only: bool = False,
                 on_frame: Callable[[], None] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.emulator = emulator
        self.read_only = read_only
        self.on_frame = on_frame
        self._generation = -1
        self._ticked = 0.0
        self.overlay = Overlay()
        self.draw_mode = False
        self.pen: tuple[int, int] | None = None
        self._drag: tuple[int, int] | None = None
        self.notice: str | None = None
        """Shown alone, centred, instead of the screen while set (see :meth:`set_notice`)."""

    def on_mount(self) -> None:
        self.set_interval(FRAME, self._tick)

    def set_emulator(self, emulator: Emulator) -> None:
        """Show another emulator (e.g. after a snapshot replaced the screen)."""
        self.emulator = emulator
        self._generation = -1
        self.refresh(layout=True)

    def set_notice(self, notice: str | None) -> None:
        """Show ``notice`` (text, never markup) instead of the screen, or the screen again."""
        if notice != self.notice:
            self.notice = notice
            self.refresh()

    def nudge(self) -> None:
        """New bytes arrived: show them now rather than at the next frame.

        Keeps an agent's view within milliseconds of the user's shell; bursts
        are still folded into one update per :data:`NUDGE_GAP`.
        """
        if time.perf_counter() - self._ticked >= NUDGE_GAP:
            self._tick()

    def _tick(self) -> None:
        self._ticked = time.perf_counter()
        # Time-bounded: keeps the app (and the shell) responsive whatever is printed.
        self.emulator.process()
        if self.overlay and self.overlay.expire():
            self.refresh()
        if self.emulator.generation != self._generation:
            resized = self.size != Size(*self.emulator.size)
            self._generation = self.emulator.generation
            self.refresh(layout=resized)
            if self.on_frame is not None:
                self.on_frame()

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self.emulator.size[0]

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.emulator.size[1]

    def render_line(self, y: int) -> Strip:
        cols, rows = self.emulator.size
        if y >= rows:
            return Strip.blank(self.size.width)
        if self.notice is not None:
            return self._notice_line(y, cols, rows)
        cx, cy, visible = self.emulator.cursor
        line = self.emulator.top + y
        plain = not (visible and cy == y and self.has_focus) and (
            self.pen is None or self.pen[1] != line) and not self.overlay.on(line)
        if plain:
            # Nothing drawn over this row: whole runs at once (scrolling output
            # redraws every row every frame).
            return Strip([Segment(text, _style(*attrs)) for text, attrs
                          in self.emulator.runs(y)], cols)
        segments = []
        for x, cell in enumerate(self.emulator.cells(y)):
            style = cell_style(cell, visible and x == cx and y == cy and self.has_focus)
            # The second half of a wide character is drawn by it: an empty segment
            # keeps one segment per cell (see overlay.paint).
            segments.append(Segment(cell.char, style))
        if self.overlay or self.pen is not None:
            styles, chars = self.overlay.styles_for_row(self.emulator.top + y, cols)
            if self.pen is not None and self.pen[1] == self.emulator.top + y:
                styles[self.pen[0]] = PEN
            segments = paint(segments, styles, chars)
        return Strip(Segment.simplify(segments), cols)

    def _notice_line(self, y: int, cols: int, rows: int) -> Strip:
        # Centred in the part of the screen a viewer sees (a scrolling box may hold
        # the view), not the user's whole width.
        box = self.parent.size if isinstance(self.parent, Widget) else Size(cols, rows)
        width = max(1, min(cols, box.width or cols))
        text = f" {self.notice} "[:width]
        if y != min(rows, box.height or rows) // 2:
            return Strip.blank(cols)
        pad = (width - len(text)) // 2
        return Strip([Segment(" " * pad), Segment(text, NOTICE),
                      Segment(" " * (cols - pad - len(text)))], cols)

    def cell_at(self, x: int, y: int) -> tuple[int, int]:
        """The ``(x, line)`` of the cell at widget offset ``(x, y)``, kept on screen."""
        cols, rows = self.emulator.size
        return max(0, min(x, cols - 1)), self.emulator.top + max(0, min(y, rows - 1))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if self.draw_mode:
            self._drag = self.cell_at(event.x, event.y)
            self.capture_mouse()
            event.stop()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._drag is not None:
            start, self._drag = self._drag, None
            self.release_mouse()
            self.post_message(self.Drawn(self, start, self.cell_at(event.x, event.y)))
            event.stop()

    async def on_key(self, event: events.Key) -> None:
        if self.read_only:
            return
        app_cursor = DECCKM in self.emulator.screen.mode
        data = key_bytes(event.key, event.character, app_cursor)
        if data:
            event.stop()
            event.prevent_default()
            self.post_message(self.Input(self, data))

    def on_paste(self, event: events.Paste) -> None:
        if not self.read_only and event.text:
            self.post_message(self.Input(self, event.text.encode()))
