"""Where desktop marks go on the screen: pure layout of boxes, points and labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from assist.protocol import messages as m

MAGENTA = 0xFF00FF
"""The colour of every mark, as 0xRRGGBB: rare on real desktops, easy to see."""
EDGE = 4
"""Thickness of a box's edges, pixels."""
DOT = 8
"""Side of the filled square at a point."""
ARM = (8, 20)
"""The crosshair's arms run from this far to this far from the point."""
ARM_WIDTH = 2
PAD = 3
"""Space around a label's text."""
MAX_TEXT = 60
"""Longer label texts are cut (the panel shows them whole)."""
MAX_MARKS = 32
"""More marks at once than this drop the oldest."""
RAISE_EVERY = 1.0
"""Seconds between re-raising the marks above windows the window manager raised."""

OverlayState = Literal["new", "starting", "open", "failed", "closed"]
Measure = Callable[[str], tuple[int, int]]


@dataclass(frozen=True)
class Rect:
    """A rectangle in pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Layout:
    """The windows that show one mark, in root-window pixels.

    Attributes:
        rects: filled windows in the mark's colour.
        label: top-left corner and text of the label window, if any.
    """

    rects: tuple[Rect, ...]
    label: tuple[int, int, str] | None = None


def fixed_size(text: str) -> tuple[int, int]:
    """Size of a label window for ``text`` in X's 6x13 ``fixed`` font."""
    return 6 * len(text) + 2 * PAD, 13 + 2 * PAD


def label_text(text: str) -> str:
    """``text`` as a label shows it: one line, printable, at most :data:`MAX_TEXT` chars."""
    line = "".join(c if c.isprintable() else " " for c in text).strip()
    return line if len(line) <= MAX_TEXT else line[:MAX_TEXT - 3] + "..."


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def layout(a: m.Annotation, area: Rect, *, edge: int = EDGE,
           measure: Measure = fixed_size) -> Layout:
    """Where to draw desktop mark ``a`` (shared-frame pixels) on the screen.

    Args:
        a: the mark; ``x``/``line`` (and ``x2``/``line2``) are pixels of the
            shared frame, clamped into it.
        area: the shared frame's rectangle in root-window pixels.
        edge: a box's edge thickness.
        measure: the label window's size for a text.

    A box's edges lie just outside the marked area, so they never hide what
    is marked; where the shared area ends they move inside instead.
    """
    right, bottom = area.x + area.width, area.y + area.height

    def at(x: int, y: int) -> tuple[int, int]:
        return (area.x + _clamp(x, 0, area.width - 1), area.y + _clamp(y, 0, area.height - 1))

    x1, y1 = at(a.x, a.line)
    text = label_text(a.text)
    size = measure(text) if text else (0, 0)
    rects: tuple[Rect, ...]
    if a.kind in ("box", "highlight") and (a.x2, a.line2) != (a.x, a.line):
        x2, y2 = at(a.x2, a.line2)
        left, far_x = sorted((x1, x2))
        top, far_y = sorted((y1, y2))
        ol, ot = max(left - edge, area.x), max(top - edge, area.y)
        or_ = max(min(far_x + 1 + edge, right) - edge, ol)
        ob = max(min(far_y + 1 + edge, bottom) - edge, ot)
        width, height = or_ + edge - ol, ob + edge - ot
        rects = (Rect(ol, ot, width, edge), Rect(ol, ob, width, edge),
                 Rect(ol, ot, edge, height), Rect(or_, ot, edge, height))
        lx, ly = ol, ot - size[1] if ot - size[1] >= area.y else ob + edge
    else:
        near, far = ARM
        arm, half = far - near, ARM_WIDTH // 2
        rects = (Rect(x1 - DOT // 2, y1 - DOT // 2, DOT, DOT),
                 Rect(x1 - far, y1 - half, arm, ARM_WIDTH),
                 Rect(x1 + near, y1 - half, arm, ARM_WIDTH),
                 Rect(x1 - half, y1 - far, ARM_WIDTH, arm),
                 Rect(x1 - half, y1 + near, ARM_WIDTH, arm))
        lx, ly = x1 + far + 2, y1 - size[1] // 2
    if not text:
        return Layout(rects)
    lx = max(min(lx, right - size[0]), area.x)
    ly = max(min(ly, bottom - size[1]), area.y)
    return Layout(rects, (lx, ly, text))
