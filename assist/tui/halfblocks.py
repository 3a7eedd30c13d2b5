"""Pictures as coloured half-block cells: two pixels a cell, one above the other.

Each cell is an upper half block (``▀``) in the upper pixel's colour over a
background of the lower pixel's colour, so any truecolour terminal (tmux
too) shows a picture with square pixels. Runs of equal cells become one
segment and each colour pair's style is made once: a face-sized picture
takes well under a millisecond, a fraction of what textual-image's own
half-cell drawing costs, so this module draws that mode for the desktop view
and the agent's face alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

HALF_BLOCK = "▀"


class CellStyles:
    """Rich styles by packed ``(top << 24) | bottom`` colour, made once each."""

    def __init__(self, limit: int = 65536) -> None:
        self._cache: dict[int, Style] = {}
        self._limit = limit

    def get(self, key: int) -> Style:
        """The style of a cell whose upper and lower colours are packed in ``key``."""
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


def to_strips(rgb: npt.NDArray[np.uint8], styles: CellStyles) -> list[Strip]:
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


class HalfBlocks(Widget):
    """A picture in half-block cells, with textual-image's ``image`` property.

    The picture is drawn as given, from the top left: size it to the widget
    (two pixel rows a cell) beforehand, as :func:`assist.tui.graphics.prepare` does.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._image: Any = None
        self._lines: list[Strip] = []
        self._styles = CellStyles()

    @property
    def image(self) -> Any:
        """The picture shown (a PIL image), or ``None``."""
        return self._image

    @image.setter
    def image(self, value: Any) -> None:
        self._image = value
        if value is None:
            self._lines = []
        else:
            rgb = np.asarray(value.convert("RGB"), dtype=np.uint8)
            self._lines = to_strips(rgb[:rgb.shape[0] & ~1], self._styles)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """One line of the picture (blank below it)."""
        return self._lines[y] if y < len(self._lines) else Strip.blank(self.size.width)
