"""The shared desktop in real pixels (Kitty graphics, Sixel) and in half blocks.

Each test feeds :class:`~assist.tui.video.VideoView` a frame of four coloured
quarters and reads what would reach the terminal: the PNG that textual-image
writes straight to ``sys.__stdout__`` for Kitty, the Sixel data its child
widget renders, or the half-block cells. Zoom, pan, marks and the mouse must
mean the same desktop pixels in every mode.
"""

from __future__ import annotations

import base64
import io
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot

from assist.tui.graphics import Mode
from assist.tui.video import MARK_RGB, Box, VideoView

QUARTERS = {(0, 0): (230, 30, 30), (1, 0): (30, 200, 40), (0, 1): (40, 60, 220),
            (1, 1): (240, 240, 240)}
"""(column, row) of each quarter of the desktop and its colour."""
MODES: tuple[Mode, ...] = ("kitty", "sixel", "halfcell")
SIZE = (40, 12)
"""The app's size in cells: the 200x100 desktop fits as 40x10 cells in every mode."""
TOLERANCE = 6  # Sixel colours travel as percentages

RGB = npt.NDArray[np.uint8]


def desktop() -> RGB:
    """A 200x100 desktop of four 100x50 quarters."""
    rgb = np.zeros((100, 200, 3), dtype=np.uint8)
    for (col, row), colour in QUARTERS.items():
        rgb[row * 50:(row + 1) * 50, col * 100:(col + 1) * 100] = colour
    return rgb


@pytest.fixture(autouse=True)
def cells_of_10x20(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells of 10x20 pixels (what textual-image assumes without a terminal), even when
    the tests run in one that would answer otherwise."""
    from textual_image._terminal import CellSize, get_cell_size

    monkeypatch.setattr(get_cell_size, "_result", CellSize(10, 20), raising=False)


@contextmanager
def terminal() -> Iterator[io.StringIO]:
    """What textual-image writes straight to the terminal (Kitty pictures)."""
    written = io.StringIO()
    real = sys.__stdout__
    sys.__stdout__ = written  # type: ignore[misc]
    try:
        yield written
    finally:
        sys.__stdout__ = real  # type: ignore[misc]


class Viewer(App[None]):
    def __init__(self, mode: Mode) -> None:
        super().__init__()
        self.mode: Mode = mode
        self.marked: list[VideoView.Marked] = []

    def compose(self) -> ComposeResult:
        yield VideoView(mode=self.mode)

    def on_video_view_marked(self, message: VideoView.Marked) -> None:
        self.marked.append(message)


async def shown(view: VideoView, count: int, pilot: Pilot[None]) -> None:
    """Wait until ``count`` frames were converted and drawn."""
    for _ in range(300):
        if view.frames_shown >= count and not view._busy:
            await pilot.pause()  # the picture widget renders (Kitty: writes) after layout
            await pilot.pause()
            return
        await pilot.pause(0.01)
    raise AssertionError("frame not converted")


def kitty_picture(written: str) -> RGB:
    """The last picture sent with the Kitty graphics protocol, decoded."""
    chunks: dict[str, list[str]] = {}
    for keys, payload in re.findall(r"\x1b_G([^;\x1b]*f=100[^;\x1b]*);([^\x1b]*)\x1b\\",
                                    written):
        image_id = dict(kv.split("=", 1) for kv in keys.split(","))["i"]
        chunks.setdefault(image_id, []).append(payload)
    assert chunks, "a Kitty graphics picture was sent"
    last = list(chunks.values())[-1]
    with Image.open(io.BytesIO(base64.b64decode("".join(last)))) as image:
        return np.asarray(image.convert("RGB"))


def sixel_palette(view: VideoView) -> set[tuple[int, ...]]:
    """The colours of the Sixel picture the view's image widget renders."""
    impl = view.query_one("#video-picture").children[0]  # it draws the Sixel data
    lines = impl.render_lines(Region(0, 0, *impl.size))
    data = "".join(s.text for line in lines for s in line)
    assert "\x1bP" in data, "a Sixel picture in the output"
    return {tuple(round(int(v) * 255 / 100) for v in p)
            for p in re.findall(r"#\d+;2;(\d+);(\d+);(\d+)", data)}


def halfcell_picture(view: VideoView) -> RGB:
    """The half-block cells read back into pixels (two a cell)."""
    rows = []
    for y in range(view.size.height):
        top: list[tuple[int, int, int]] = []
        bottom: list[tuple[int, int, int]] = []
        for segment in view.render_line(y):
            style = segment.style
            if style is None or style.color is None or style.bgcolor is None:
                continue
            up, down = style.color.get_truecolor(), style.bgcolor.get_truecolor()
            top += [(up.red, up.green, up.blue)] * len(segment.text)
            bottom += [(down.red, down.green, down.blue)] * len(segment.text)
        if top:
            rows += [top, bottom]
    return np.array(rows, dtype=np.uint8)


def near(colour: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return max(abs(a - b) for a, b in zip(colour, expected, strict=True)) <= TOLERANCE


def colours(picture: RGB) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(picture.reshape(-1, 3), axis=0)}


def assert_quarters(picture: RGB) -> None:
    height, width = picture.shape[:2]
    for (col, row), colour in QUARTERS.items():
        y, x = (2 * row + 1) * height // 4, (2 * col + 1) * width // 4
        assert near(tuple(int(v) for v in picture[y, x]), colour), ((col, row), picture[y, x])


def drawn(view: VideoView, mode: Mode, written: io.StringIO) -> set[tuple[int, ...]]:
    """The colours that reached the terminal."""
    if mode == "sixel":
        return sixel_palette(view)
    picture = kitty_picture(written.getvalue()) if mode == "kitty" else halfcell_picture(view)
    return colours(picture)


@pytest.mark.parametrize("mode", MODES)
async def test_the_video_view_draws_the_desktop_in_each_mode(mode: Mode) -> None:
    with terminal() as written:
        app = Viewer(mode)
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(VideoView)
            view.update_frame(desktop())
            await shown(view, 1, pilot)
            if mode == "kitty":
                picture = kitty_picture(written.getvalue())
                # 40x10 cells of 10x20 pixels: the desktop doubled, nothing lost.
                assert picture.shape == (200, 400, 3)
                assert_quarters(picture)
                target = view.query_one("#video-picture")
                assert target.size == (40, 10)
                lines = [target.render_line(y) for y in range(target.size.height)]
                assert any(chr(0x10EEEE) in s.text for line in lines for s in line), \
                    "Kitty placeholder cells"
            elif mode == "sixel":
                palette = sixel_palette(view)
                for colour in QUARTERS.values():
                    assert any(near(c, colour) for c in palette), (colour, palette)
                assert view.query_one("#video-picture").size == (40, 10)
            else:
                picture = halfcell_picture(view)
                assert picture.shape == (20, 40, 3)
                assert_quarters(picture)


@pytest.mark.parametrize("mode", MODES)
async def test_zoom_pan_and_marks_reach_the_pixels(mode: Mode) -> None:
    white, blue = QUARTERS[(1, 1)], QUARTERS[(0, 1)]
    with terminal() as written:
        app = Viewer(mode)
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(VideoView)
            view.focus()
            view.update_frame(desktop())
            await shown(view, 1, pilot)

            view.zoom_to(120, 60, 40, 20)  # inside the white quarter only
            await shown(view, 2, pilot)
            seen = drawn(view, mode, written)
            assert all(near(c, white) for c in seen), seen
            if mode == "kitty":
                assert len(seen) == 1, "the zoomed Kitty picture is one colour"

            await pilot.press("left", "left", "left", "left")  # 4 x 10 pixels: into blue
            assert view.zoom == Box(80, 60, 40, 20)
            await shown(view, 6, pilot)
            seen = drawn(view, mode, written)
            assert any(near(c, white) for c in seen) and any(near(c, blue) for c in seen)
            if mode != "sixel":
                picture = (kitty_picture(written.getvalue()) if mode == "kitty"
                           else halfcell_picture(view))
                # Frame pixels 80..100 are blue, 100..120 white: halves of the picture.
                width = picture.shape[1]
                assert near(tuple(picture[0, width // 4]), blue)
                assert near(tuple(picture[0, 3 * width // 4]), white)

            view.add_mark("box", Box(90, 65, 20, 10), ttl=60)
            await shown(view, 7, pilot)
            seen = drawn(view, mode, written)
            assert any(near(c, MARK_RGB) for c in seen), ("the mark is drawn", seen)
            view.clear_marks()
            await shown(view, 8, pilot)
            assert not any(near(c, MARK_RGB) for c in drawn(view, mode, written))


async def mapping(mode: Mode) -> dict[str, Any]:
    """Where cells fall on the desktop in ``mode``, whole and zoomed, and what the mouse marks."""
    found: dict[str, Any] = {}
    with terminal():
        app = Viewer(mode)
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(VideoView)
            view.update_frame(desktop())
            await shown(view, 1, pilot)
            cells = [(0, 0), (1, 0), (0, 1), (19, 4), (39, 9), (40, 0), (0, 10), (-1, 0)]
            found["whole"] = [view.pixel_at(x, y) for x, y in cells]
            view.mark_mode = True
            await pilot.click(VideoView, offset=(5, 3))
            await pilot.mouse_down(VideoView, offset=(10, 2))
            await pilot.mouse_up(VideoView, offset=(30, 8))
            await pilot.mouse_down(VideoView, offset=(35, 8))
            await pilot.mouse_up(VideoView, offset=(39, 11))  # below the picture: clamped
            await pilot.pause()
            found["marked"] = [(m.start, m.end) for m in app.marked]
            view.zoom_to(50, 25, 100, 50)
            await shown(view, 2, pilot)
            found["zoomed"] = [view.pixel_at(x, y) for x, y in cells]
    return found


async def test_the_mouse_means_the_same_desktop_pixels_in_every_mode() -> None:
    halfcell = await mapping("halfcell")
    assert halfcell["whole"][:3] == [(2, 5), (7, 5), (2, 15)]
    assert halfcell["whole"][4:] == [(197, 95), None, None, None]
    assert halfcell["marked"] == [((27, 35), (27, 35)), ((52, 25), (152, 85)),
                                  ((177, 85), (197, 95))]
    assert halfcell["zoomed"][0] == (51, 27)
    for mode in ("kitty", "sixel"):
        assert await mapping(mode) == halfcell, mode
