"""Pictures in the terminal: which mode this terminal takes, and the widget for it.

textual-image draws pictures with the Kitty graphics protocol, Sixel,
coloured half-block cells or plain characters; it asks the terminal what it
supports when it is first imported, which must happen before a Textual app
owns the terminal (the app's input thread would take the answers). The CLI
calls :func:`detect` before it starts an app; ``ASSIST_GRAPHICS`` (``kitty``,
``sixel``, ``halfcell``, ``text``) overrides what was detected. Inside tmux
or screen nothing is asked (they would take the Kitty query for a window
title) and half-blocks are used.

=========  =================================================================
mode       what the person sees
=========  =================================================================
kitty      real pixels (Kitty, Ghostty; the Kitty graphics protocol)
sixel      real pixels (xterm -ti vt340, foot, WezTerm, mlterm, Konsole...)
halfcell   two colour pixels per character cell (any 24-bit colour terminal)
text       coloured characters (no terminal at all: tests, pipes)
=========  =================================================================
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal

from textual.widget import Widget

from assist.errors import ConfigError

Mode = Literal["kitty", "sixel", "halfcell", "text"]
MODES: tuple[Mode, ...] = ("kitty", "sixel", "halfcell", "text")
WORDS: dict[Mode, str] = {
    "kitty": "pixels (Kitty graphics)",
    "sixel": "pixels (Sixel)",
    "halfcell": "half-blocks (no picture protocol here)",
    "text": "characters (not a terminal)",
}
"""Each mode in words, for the panel and the console."""

_detected: list[Mode] = []


def detect() -> Mode:
    """The mode this terminal takes (asked once; call before an app starts).

    Raises:
        ConfigError: if ``ASSIST_GRAPHICS`` names no mode.
    """
    if not _detected:
        _detected.append(_ask_terminal())
    wanted = os.environ.get("ASSIST_GRAPHICS", "").strip().lower()
    if wanted and wanted != "auto":
        for mode in MODES:
            if mode == wanted:
                return mode
        raise ConfigError(f"ASSIST_GRAPHICS={wanted!r}: use auto, kitty, sixel, halfcell or "
                          "text")
    return _detected[0]


def multiplexed(env: Mapping[str, str]) -> bool:
    """Inside tmux or screen: they take a Kitty graphics query for a window title."""
    return bool(env.get("TMUX") or env.get("STY")) or \
        env.get("TERM", "").startswith(("screen", "tmux"))


def _ask_terminal() -> Mode:
    # The import asks the terminal (Sixel in the device attributes, a Kitty graphics
    # query, the cell size in pixels), once; it must come before an app reads the
    # keyboard, or the answers would be taken for typing. Inside tmux or screen
    # nothing is asked (the query would retitle the window): half-blocks, which
    # they show in full colour.
    if multiplexed(os.environ):
        real, sys.__stdout__ = sys.__stdout__, io.StringIO()  # type: ignore[misc,assignment]
        try:
            import textual_image.widget  # asks nothing now
        finally:
            sys.__stdout__ = real  # type: ignore[misc]
        return "halfcell"
    import textual_image.widget  # noqa: F401  (the queries)
    from textual_image import renderable

    found: dict[Any, Mode] = {renderable.TGPImage: "kitty", renderable.SixelImage: "sixel",
                              renderable.HalfcellImage: "halfcell"}
    return found.get(renderable.Image, "text")


def image_widget(mode: Mode, widget_id: str) -> Widget:
    """A widget drawing a PIL image (its ``image`` property) in ``mode``."""
    from textual_image import widget as images

    from assist.tui.halfblocks import HalfBlocks

    # Half-blocks are drawn by assist itself: textual-image's take several times as long.
    kinds: dict[Mode, Any] = {"kitty": images.TGPImage, "sixel": images.SixelImage,
                              "halfcell": HalfBlocks, "text": images.UnicodeImage}
    made: Widget = kinds[mode](id=widget_id)
    return made


def cell_pixels() -> tuple[int, int]:
    """The size of a character cell in pixels, as the terminal said (10x20 if it did not)."""
    from textual_image._terminal import get_cell_size  # what the library scales with

    size = get_cell_size()
    return size.width, size.height


SIXEL_COLOURS = 64
"""Colours a Sixel picture is reduced to beforehand (the encoder's own reduction would
run on the loop, at several times the cost)."""


def prepare(rgb: Any, mode: Mode, cols: int, rows: int,
            background: tuple[int, int, int] = (0, 0, 0)) -> Any:
    """``rgb`` as a PIL image of exactly the pixels ``cols`` x ``rows`` cells show,
    the picture fitted inside with its shape kept (bands of ``background``).

    Meant for a worker thread: scaling (and reducing colours for Sixel) is the
    costly part of drawing, and then the loop only encodes what fits.
    """
    from PIL import Image

    width, height = cell_pixels()
    if mode in ("halfcell", "text"):
        width, height = 1, 2  # a cell shows two pixels, one above the other
    box = (max(1, cols * width), max(1, rows * height))
    picture = Image.fromarray(rgb)
    scale = min(box[0] / picture.width, box[1] / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    canvas = Image.new("RGB", box, background)
    canvas.paste(picture.resize(size, Image.Resampling.BILINEAR),
                 ((box[0] - size[0]) // 2, (box[1] - size[1]) // 2))
    if mode == "sixel":
        canvas = canvas.quantize(SIXEL_COLOURS).convert("RGB")
    return canvas


def frame_bytes(mode: Mode, cols: int, rows: int) -> float:
    """About how many bytes one picture of ``cols`` x ``rows`` cells costs the terminal.

    Cells cost two 24-bit colours each; Sixel about one byte per six pixels
    per colour band (~0.7 a pixel in practice); Kitty sends a base64 PNG.
    """
    if mode in ("halfcell", "text"):
        return cols * rows * 40.0
    width, height = cell_pixels()
    pixels = cols * width * rows * height
    return pixels * (0.7 if mode == "sixel" else 1.6)
