"""Agent annotations drawn over a terminal view: boxes, arrows, highlights, labels.

Annotations are an overlay: they change how cells look on the screen of the
app, never what the shell receives. They are anchored to lines counted since
the session began (see :attr:`~assist.share.emulator.Emulator.top`), so they
scroll with the text they mark, and fade out before they expire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style

from assist.core.text import shown
from assist.protocol import messages as m

FADE = 3.0
"""Seconds before expiry during which an annotation is drawn dim."""

BOX = Style(bgcolor="magenta", color="bright_white", bold=True)
HIGHLIGHT = Style(bgcolor="yellow", color="black")
INK = Style(bgcolor="magenta", color="bright_white", bold=True)
DIM = Style(dim=True)


@dataclass
class Overlay:
    """The live annotations of one view, with their local expiry times."""

    marks: dict[str, tuple[m.Annotation, float]] = field(default_factory=dict)

    def on(self, line: int) -> bool:
        """Whether a mark may touch the row of absolute ``line`` (cheap, conservative)."""
        for a, _ in self.marks.values():
            if a.surface != "terminal":
                continue
            top, bottom = sorted((a.line, a.line2 if a.line2 or a.kind == "box" else a.line))
            if top <= line <= bottom:
                return True
        return False

    def add(self, annotation: m.Annotation, now: float | None = None) -> None:
        """Show ``annotation`` until its ttl runs out."""
        now = time.monotonic() if now is None else now
        self.marks[annotation.id] = (annotation, now + annotation.ttl)

    def clear(self, ids: tuple[str, ...] = ()) -> None:
        """Remove the given annotations (all when empty)."""
        if not ids:
            self.marks.clear()
        for i in ids:
            self.marks.pop(i, None)

    def expire(self, now: float | None = None) -> bool:
        """Drop expired annotations; return True if any is fading or was dropped."""
        now = time.monotonic() if now is None else now
        gone = [i for i, (_, until) in self.marks.items() if until <= now]
        for i in gone:
            del self.marks[i]
        return bool(gone) or any(until - now < FADE for _, until in self.marks.values())

    def __bool__(self) -> bool:
        return bool(self.marks)

    def styles_for_row(self, line: int, cols: int,
                       now: float | None = None) -> tuple[dict[int, Style], dict[int, str]]:
        """Per-cell style overrides and replacement characters for one screen row.

        Args:
            line: the absolute line number of the row (``top + y``).
            cols: the row's width.
        """
        now = time.monotonic() if now is None else now
        styles: dict[int, Style] = {}
        chars: dict[int, str] = {}
        for a, until in self.marks.values():
            if a.surface != "terminal":
                continue
            fading = until - now < FADE
            for x, style, char in _cells(a, line, cols):
                styles[x] = style + DIM if fading else style
                if char is not None:
                    chars[x] = char
        return styles, chars


def _cells(a: m.Annotation, line: int, cols: int) -> list[tuple[int, Style, str | None]]:
    """The cells of row ``line`` that ``a`` touches."""
    top, bottom = sorted((a.line, a.line2 if a.line2 or a.kind == "box" else a.line))
    left, right = sorted((a.x, a.x2 if a.x2 else a.x))
    out: list[tuple[int, Style, str | None]] = []
    if a.kind == "box":
        if not top <= line <= bottom:
            return out
        edge = line in (top, bottom)
        xs = range(left, right + 1) if edge else (left, right)
        out = [(x, BOX, None) for x in xs if 0 <= x < cols]
        if a.text and line == top:
            out += _text(f" {a.text} ", right + 2, INK, cols)
    elif a.kind == "highlight":
        if top <= line <= bottom:
            start = left if line == top else 0
            end = right if line == bottom else cols - 1
            out = [(x, HIGHLIGHT, None) for x in range(start, end + 1) if 0 <= x < cols]
    elif a.kind == "arrow" and line == a.line:
        if a.x2 and a.x2 != a.x:
            # Drawn from x to x2: as long as it was drawn, its head where the drag ended.
            lo, hi = sorted((a.x, a.x2))
            shaft = "━" * (hi - lo)
            out = _text(shaft + "▶" if a.x2 > a.x else "◀" + shaft, lo, INK, cols)
            if a.text:
                out += _text(f" {a.text}", hi + 1, INK, cols)
        else:
            # Points at (x, line) from the right: the text it marks stays readable.
            out = _text(f"◀━━ {a.text}".rstrip(), a.x + 1, INK, cols)
            if 0 <= a.x < cols:
                out.append((a.x, BOX, None))
    elif a.kind == "label" and line == a.line:
        out = _text(f" {a.text} ", a.x, INK, cols)
    return out


def _text(text: str, x: int, style: Style, cols: int) -> list[tuple[int, Style, str | None]]:
    # A label is the agent's text: one cell per printable character, nothing else.
    text = shown(text).replace("\n", " ")
    return [(x + i, style, ch) for i, ch in enumerate(text) if 0 <= x + i < cols]


def paint(segments: list[Segment], styles: dict[int, Style],
          chars: dict[int, str]) -> list[Segment]:
    """Apply per-cell overrides to a row made of one segment per cell."""
    if not styles:
        return segments
    out = []
    for x, seg in enumerate(segments):
        style = styles.get(x)
        if style is None:
            out.append(seg)
        elif not seg.text:  # the second half of a wide character: no room for a char
            out.append(Segment("", (seg.style or Style()) + style))
        else:
            text = chars.get(x, seg.text)
            if cell_len(seg.text) == 2 and cell_len(text) == 1:
                text += " "  # a mark's character over a wide one keeps the row's width
            out.append(Segment(text, (seg.style or Style()) + style))
    return out
