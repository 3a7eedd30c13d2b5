"""A terminal screen model fed off the hot path.

``pyte`` parses dense text at only 0.3-1 MB/s, far slower than a shell can
print, so the screen model must never gate the stream: bytes go out raw at
once, and the emulator catches up in slices bounded in time between frames
(a small slice while output keeps coming, a bigger one once it is quiet, so
the shell keeps most of the CPU during bulk output and the screen settles
quickly after). When it falls too far behind (say ``cat`` of a large file)
it skips to the tail of the backlog: the screen of scrolling output is
rebuilt by its last lines, and viewers that need an exact picture get a
snapshot once output stops.

Output that arrives while the terminal reads a secret (``receive(data,
hidden=True)``) is shown on the user's own screen as usual, but the lines it
wrote on are remembered and left blank in every snapshot, the picture that
leaves the machine, until visible output wipes them (scrolling or drawing
over part of a line does not make it clean).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import pyte
from pyte import modes
from wcwidth import wcswidth

log = logging.getLogger(__name__)

MAX_BACKLOG = 128 * 1024
"""Beyond this, older unparsed bytes are skipped."""
KEEP_TAIL = 16 * 1024
"""How much of the backlog is kept when skipping (more for big screens, see ``_tail``)."""
SLICE = 2048
"""Bytes parsed between two clock checks."""
BUSY_SECONDS = 0.006
"""Parse time per frame while output keeps arriving (about 20% of a core at 30 fps)."""
QUIET_SECONDS = 0.03
"""Parse time per frame once nothing new arrived since the last frame."""

_SGR_FG = {"black": 30, "red": 31, "green": 32, "brown": 33, "yellow": 33, "blue": 34,
           "magenta": 35, "cyan": 36, "white": 37}
_SGR_BRIGHT = {"brightblack": 90, "brightred": 91, "brightgreen": 92, "brightbrown": 93,
               "brightyellow": 93, "brightblue": 94, "brightmagenta": 95, "brightcyan": 96,
               "brightwhite": 97}


@dataclass(frozen=True)
class Cell:
    """One screen cell as a renderer needs it.

    ``char`` is "" for the second cell of a wide character (the character
    before it takes both): a renderer draws nothing there.
    """

    char: str
    fg: str
    bg: str
    bold: bool
    italics: bool
    underscore: bool
    reverse: bool
    strike: bool = False
    blink: bool = False
    dim: bool = False
    invisible: bool = False


class _Char(NamedTuple):
    """pyte's character, plus the attributes pyte drops (dim, invisible)."""

    data: str
    fg: str = "default"
    bg: str = "default"
    bold: bool = False
    italics: bool = False
    underscore: bool = False
    strikethrough: bool = False
    reverse: bool = False
    blink: bool = False
    dim: bool = False
    invisible: bool = False


_BASIC = ("black", "red", "green", "brown", "blue", "magenta", "cyan", "white")
"""pyte's names of the 8 basic colours (brown is yellow); ``bright`` + name for 8-15."""


def _indexed(n: int) -> str:
    """The name of palette colour ``n`` < 16, as pyte names ``ESC[3Xm`` and ``ESC[9Xm``."""
    return _BASIC[n] if n < 8 else f"bright{_BASIC[n - 8]}"


def _extra_sgr(attrs: Sequence[int]) -> dict[str, Any]:
    """What pyte gets wrong or leaves out of one SGR: dim (2/22), invisible (8/28),
    and the 16 palette colours asked for by index (``38;5;1`` is ``31``, so the
    viewer's palette applies to both), which pyte turns into fixed RGB."""
    out: dict[str, Any] = {}
    it: Iterator[int] = iter(attrs)
    for attr in it:
        if attr == 0:
            out.update(dim=False, invisible=False)
        elif attr == 2:
            out["dim"] = True
        elif attr == 22:
            out["dim"] = False
        elif attr == 8:
            out["invisible"] = True
        elif attr == 28:
            out["invisible"] = False
        elif attr in (38, 48):
            key = "fg" if attr == 38 else "bg"
            kind = next(it, None)
            if kind == 5:
                index = next(it, None)
                if index is not None and 0 <= index < 16:
                    out[key] = _indexed(index)
                elif index is not None and 16 <= index < 256:
                    # Kept as an index (pyte makes it RGB): a terminal of 256 colours
                    # shows exactly that colour, not the nearest to an RGB value.
                    out[key] = f"color({index})"
                else:
                    out.pop(key, None)
            elif kind == 2:
                for _ in range(3):
                    next(it, None)
                out.pop(key, None)
        elif 30 <= attr <= 37 or 90 <= attr <= 97 or attr == 39:
            out.pop("fg", None)
        elif attr == 105:
            out["bg"] = "brightmagenta"  # pyte's table misspells it
        elif 40 <= attr <= 47 or 100 <= attr <= 107 or attr == 49:
            out.pop("bg", None)
    return out


def _color_sgr(color: str, background: bool) -> str:
    if color == "default":
        return "49" if background else "39"
    if color in _SGR_FG:
        return str(_SGR_FG[color] + (10 if background else 0))
    if color in _SGR_BRIGHT:
        return str(_SGR_BRIGHT[color] + (10 if background else 0))
    if color.startswith("color("):
        return f"{48 if background else 38};5;{color[6:-1]}"
    if len(color) == 6:
        try:
            r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            return "49" if background else "39"
        return f"{48 if background else 38};2;{r};{g};{b}"
    return "49" if background else "39"


class _Screen(pyte.Screen):
    """pyte's screen, tolerant of the private SGR that vim and others send."""

    scrolled = 0
    """Lines scrolled off the top so far: anchors annotations to their text."""

    @property
    def default_char(self) -> _Char:  # type: ignore[override]
        return _Char(data=" ", reverse=modes.DECSCNM in self.mode)

    def select_graphic_rendition(self, *attrs: int, private: bool = False) -> None:
        # CSI > ... m (xterm modifyOtherKeys) sets key modes, not colours.
        if private:
            return
        if not isinstance(self.cursor.attrs, _Char):  # a fresh cursor has pyte's kind
            self.cursor.attrs = cast(Any, _Char(*self.cursor.attrs))
        super().select_graphic_rendition(*attrs)
        extra = _extra_sgr(attrs)
        if extra:
            self.cursor.attrs = self.cursor.attrs._replace(**extra)

    def index(self) -> None:
        # Count only whole-screen scrolls: a full-screen program scrolling a
        # region (vim, less) does not move the shell's lines.
        if self.cursor.y == self.lines - 1 and self.margins in (None, (0, self.lines - 1)):
            self.scrolled += 1
        super().index()

    def __init__(self, columns: int, lines: int) -> None:
        # Which lines text was written on, and which were wiped, by the bytes being
        # parsed (counted from the start, as ``scrolled``): see Emulator.hidden_lines.
        self.written: set[int] = set()
        self.wiped: set[int] = set()
        super().__init__(columns, lines)

    def draw(self, data: str) -> None:
        if not data.isprintable():
            # Format characters (bidi overrides, zero-width space) would reach the
            # viewer's terminal from a cell and reorder what it shows; pyte also
            # stops drawing at one. C0/C1 controls never get here (the stream runs them).
            data = "".join(ch for ch in data if ch.isprintable())
        start = self.scrolled + self.cursor.y
        super().draw(data)
        self.written.update(range(start, self.scrolled + self.cursor.y + 1))

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        if how == 2 or (how == 0 and self.cursor.x == 0):
            self.wiped.add(self.scrolled + self.cursor.y)
        with self._blank_pen():
            super().erase_in_line(how, private)

    def erase_in_display(self, how: int = 0, *args: object, **kwargs: object) -> None:
        here = self.scrolled + self.cursor.y
        top, bottom = self.scrolled, self.scrolled + self.lines - 1
        if how == 0:
            self.wiped.update(range(here if self.cursor.x == 0 else here + 1, bottom + 1))
        elif how == 1:
            self.wiped.update(range(top, here))
        else:
            self.wiped.update(range(top, bottom + 1))
        with self._blank_pen():
            super().erase_in_display(how, *args, **kwargs)

    def scroll_up(self, count: int | None = None, *rest: int) -> None:
        """CSI S: the scrolling region's lines move up ``count``; blank lines come in below."""
        self._scroll(count, up=True)

    def scroll_down(self, count: int | None = None, *rest: int) -> None:
        """CSI T: the region's lines move down ``count`` (htop scrolls its list so)."""
        if rest:
            return  # CSI T with five values starts mouse highlighting, not a scroll
        self._scroll(count, up=False)

    def _scroll(self, count: int | None, up: bool) -> None:
        # pyte has no SU/SD: the region's first line deletes or inserts ``count`` lines.
        top = self.margins.top if self.margins else 0
        x, y = self.cursor.x, self.cursor.y
        self.cursor.y = top
        with self._blank_pen():
            if up:
                self.delete_lines(count or 1)
            else:
                self.insert_lines(count or 1)
        self.cursor.x, self.cursor.y = x, y

    def erase_characters(self, count: int | None = None) -> None:
        with self._blank_pen():
            super().erase_characters(count)

    @contextlib.contextmanager
    def _blank_pen(self) -> Iterator[None]:
        # Erased cells keep only the background colour, as xterm and tmux leave
        # them: not the pen's colour, weight or other attributes (pyte keeps all).
        pen = self.cursor.attrs
        self.cursor.attrs = cast(Any, self.default_char._replace(bg=pen.bg))
        try:
            yield
        finally:
            self.cursor.attrs = pen


class _Stream(pyte.ByteStream):
    """pyte's stream, with the scrolls it leaves out (SU, SD)."""

    csi = {**pyte.ByteStream.csi, "S": "scroll_up", "T": "scroll_down"}


class Emulator:
    """A pyte screen with a bounded-work feeding policy and ANSI snapshots."""

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        self.screen = _Screen(cols, rows)
        self.stream = _Stream(self.screen)
        self._backlog = bytearray()
        self._hidden: list[list[int]] = []
        """Spans ``[start, end)`` of the backlog that arrived while a secret was read."""
        self.hidden_lines: set[int] = set()
        """Lines (counted from the start, as :attr:`top`) written by hidden output."""
        self._fresh = False
        self.skipped = 0
        self.generation = 0

    @property
    def size(self) -> tuple[int, int]:
        """``(cols, rows)``."""
        return self.screen.columns, self.screen.lines

    @property
    def top(self) -> int:
        """The line number (since the start) of the screen's first row."""
        return self.screen.scrolled

    @top.setter
    def top(self, value: int) -> None:
        self.screen.scrolled = value

    @property
    def backlog(self) -> int:
        """Bytes received but not parsed yet."""
        return len(self._backlog)

    def receive(self, data: bytes, hidden: bool = False) -> None:
        """Queue bytes for parsing; cheap, safe on the hot path.

        ``hidden``: they were printed while the terminal read a secret.
        """
        start = len(self._backlog)
        self._backlog += data
        self._fresh = True
        if hidden and data:
            if self._hidden and self._hidden[-1][1] == start:
                self._hidden[-1][1] += len(data)
            else:
                self._hidden.append([start, start + len(data)])
        if len(self._backlog) > MAX_BACKLOG:
            # Enough to rebuild a full screen of coloured text, whatever its size.
            keep = max(KEEP_TAIL, self.screen.columns * self.screen.lines * 4)
            tail = bytes(self._backlog[-keep:])
            # Restart at a line boundary so a cut escape sequence is not replayed.
            cut = tail.find(b"\n")
            tail = tail[cut + 1 :] if cut >= 0 else tail
            skipped = len(self._backlog) - len(tail)
            # Approximate: the skipped lines scrolled by; snapshots carry the exact count.
            self.screen.scrolled += self._backlog.count(b"\n", 0, skipped)
            self.skipped += skipped
            self._backlog = bytearray(b"\x1b[0m" + tail)
            # The reset prefix shifts what is kept by its 4 bytes.
            self._shift_hidden(skipped - 4)

    def process(self, seconds: float | None = None) -> bool:
        """Parse queued bytes for about ``seconds``; return True if the screen changed.

        Without ``seconds`` the budget is :data:`BUSY_SECONDS` while output
        keeps arriving and :data:`QUIET_SECONDS` once it has stopped.
        """
        if not self._backlog:
            return False
        if seconds is None:
            seconds = BUSY_SECONDS if self._fresh else QUIET_SECONDS
        self._fresh = False
        deadline = time.perf_counter() + seconds
        while self._backlog:
            self._parse(SLICE)
            if time.perf_counter() >= deadline:
                break
        self.generation += 1
        return True

    def _shift_hidden(self, consumed: int) -> None:
        """The backlog's first ``consumed`` bytes are gone: move the hidden spans."""
        self._hidden = [[max(0, start - consumed), end - consumed]
                        for start, end in self._hidden if end - consumed > 0]

    def _parse(self, size: int) -> None:
        # A piece is all hidden or all visible, so the lines it touches are known to be one.
        hidden = bool(self._hidden) and self._hidden[0][0] == 0
        if hidden:
            size = min(size, self._hidden[0][1])
        elif self._hidden:
            size = min(size, self._hidden[0][0])
        chunk = bytes(self._backlog[:size])
        del self._backlog[:size]
        self._shift_hidden(len(chunk))
        screen = self.screen
        screen.written, screen.wiped = set(), set()
        try:
            self.stream.feed(chunk)
        except Exception:
            # A parser bug must not take the view down: drop the chunk and start
            # a fresh parser (pyte's parser cannot resume after raising).
            log.warning("terminal emulator could not parse %d bytes; skipped", len(chunk))
            self.stream = _Stream(self.screen)
        if hidden:
            self.hidden_lines |= screen.written
        elif self.hidden_lines:
            # Only a line wiped by visible output is clean again: text merely
            # drawn over part of it, or scrolled, may still show the secret.
            self.hidden_lines -= screen.wiped
            self.hidden_lines = {n for n in self.hidden_lines if n >= screen.scrolled}

    def feed(self, data: bytes) -> None:
        """Parse ``data`` now, completely (tests, snapshots, small inputs).

        Large inputs are still cut to their tail first, as :meth:`receive` does.
        """
        self.receive(data)
        while self._backlog:
            self._parse(1 << 20)
        self.generation += 1

    def resize(self, cols: int, rows: int) -> None:
        """Change the screen size (content is kept where it fits)."""
        self.screen.resize(rows, cols)
        self.generation += 1

    def cells(self, y: int) -> list[Cell]:
        """The cells of row ``y``."""
        line = self.screen.buffer[y]
        default = self.screen.default_char
        out = []
        for x in range(self.screen.columns):
            c = line.get(x, default) if hasattr(line, "get") else line[x]
            out.append(Cell(c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.reverse,
                            c.strikethrough, c.blink, getattr(c, "dim", False),
                            getattr(c, "invisible", False)))
        return out

    def runs(self, y: int) -> list[tuple[str, tuple[Any, ...]]]:
        """Row ``y`` as runs of characters that look alike: ``(text, attributes)``.

        The attributes are fg, bg, bold, dim, italics, underscore, blink,
        reverse, invisible, strike; a renderer draws a run at once. Much
        cheaper than :meth:`cells` when whole screens scroll by.
        """
        line = self.screen.buffer[y]
        default = self.screen.default_char
        out: list[tuple[str, tuple[Any, ...]]] = []
        text: list[str] = []
        key: tuple[Any, ...] | None = None
        for x in range(self.screen.columns):
            c = line.get(x, default)
            attrs = (c.fg, c.bg, c.bold, getattr(c, "dim", False), c.italics, c.underscore,
                     c.blink, c.reverse, getattr(c, "invisible", False), c.strikethrough)
            if attrs != key:
                if text:
                    out.append(("".join(text), key))  # type: ignore[arg-type]
                text, key = [c.data], attrs
            else:
                text.append(c.data)
        if text:
            out.append(("".join(text), key))  # type: ignore[arg-type]
        return out

    def text(self) -> list[str]:
        """The screen as plain text lines (trailing spaces kept)."""
        return list(self.screen.display)

    @property
    def cursor(self) -> tuple[int, int, bool]:
        """``(x, y, visible)``."""
        c = self.screen.cursor
        return c.x, c.y, not c.hidden

    def _masked(self, patterns: Sequence[re.Pattern[str]]) -> set[tuple[int, int]]:
        """Cells covered by a match of any pattern in the screen's reading text."""
        text: list[str] = []
        where: list[tuple[int, int] | None] = []
        cols = self.screen.columns
        for y in range(self.screen.lines):
            row = self.cells(y)
            for x, cell in enumerate(row):
                # One entry per character: a wide one's second half has none, a
                # letter with a combining mark has two, both on that cell.
                text.extend(cell.char)
                where.extend((x, y) for _ in cell.char)
            if cols and row[-1].char == " ":
                # A row that does not run to the edge ends its line.
                text.append("\n")
                where.append(None)
        joined = "".join(text)
        hidden: set[tuple[int, int]] = set()
        for pattern in patterns:
            for found in pattern.finditer(joined):
                hidden.update(p for p in where[found.start():found.end()] if p is not None)
        return hidden

    def snapshot(self, mask: Sequence[re.Pattern[str]] = (), plain: bool = False) -> bytes:
        """Bytes that redraw this screen on a blank terminal of the same size.

        Lines written while a secret was read are left blank.

        Args:
            mask: patterns whose matches on the screen are drawn as ``*``. They
                are matched on the text as a person reads it: a row that runs
                to the last column continues on the next, colours do not split
                a match.
            plain: leave colours and attributes out (a smaller picture).
        """
        hidden = self._masked(mask) if mask else set()
        parts = ["\x1b[0m\x1b[H\x1b[2J"]
        for y in range(self.screen.lines):
            parts.append(f"\x1b[{y + 1};1H")
            if self.screen.scrolled + y in self.hidden_lines:
                continue  # written while a secret was read: it never leaves the machine
            current = ""
            for x, cell in enumerate(self.cells(y)):
                if not cell.char:
                    continue  # the second half of a wide character: drawn with it
                if not plain:
                    sgr = ";".join(["0", *(
                        code for flag, code in ((cell.bold, "1"), (cell.dim, "2"),
                                                (cell.italics, "3"), (cell.underscore, "4"),
                                                (cell.blink, "5"), (cell.reverse, "7"),
                                                (cell.invisible, "8"), (cell.strike, "9"))
                        if flag), _color_sgr(cell.fg, False), _color_sgr(cell.bg, True)])
                    if sgr != current:
                        parts.append(f"\x1b[{sgr}m")
                        current = sgr
                parts.append("*" * max(1, wcswidth(cell.char)) if (x, y) in hidden
                             else cell.char)
        x, y, visible = self.cursor
        parts.append(f"\x1b[0m\x1b[{y + 1};{x + 1}H\x1b[?25{'h' if visible else 'l'}")
        return "".join(parts).encode("utf-8", "replace")
