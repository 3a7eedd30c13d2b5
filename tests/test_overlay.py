"""The agent's desktop marks on the user's real screen (X11 overlay windows).

The layout is pure and tested as such. The drawing is tested on a private
Xvfb: the screen is grabbed with mss and the marks' pixels are checked where
they must be (magenta) and where they must not be (inside a box, after a
clear, after the ttl). Last, the help app under Pilot draws a mark the agent
sends through a real broker.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mss
import numpy as np
import numpy.typing as npt
import pytest

from assist.broker.server import Broker
from assist.config import ClientConfig
from assist.protocol import messages as m
from assist.share import marks, xlib
from assist.share.marks import EDGE, Layout, Rect, label_text, layout
from assist.share.overlay import DesktopOverlay
from tests.helpers import KeyPair, agent_client, until
from tests.xvfb import XVFB, Xvfb, running

WIDTH, HEIGHT = 320, 240
BACKGROUND = 0x303030
SCREEN = Rect(0, 0, WIDTH, HEIGHT)

Pixels = npt.NDArray[np.uint8]


def mark(id: str, kind: str = "box", x: int = 0, y: int = 0, x2: int = 0, y2: int = 0,
         text: str = "", ttl: float = 30.0) -> m.Annotation:
    return m.Annotation(id=id, kind=kind, x=x, line=y, x2=x2, line2=y2,  # type: ignore[arg-type]
                        text=text, ttl=ttl, surface="desktop")


# -- layout (pure) -----------------------------------------------------------------------


def test_a_box_is_four_edges_just_outside_it_whichever_way_it_was_drawn() -> None:
    expected = Layout((Rect(96, 46, 109, EDGE), Rect(96, 101, 109, EDGE),
                       Rect(96, 46, EDGE, 59), Rect(201, 46, EDGE, 59)))
    assert layout(mark("b", x=100, y=50, x2=200, y2=100), SCREEN) == expected
    assert layout(mark("b", x=200, y=100, x2=100, y2=50), SCREEN) == expected
    assert layout(mark("b", kind="highlight", x=100, y=50, x2=200, y2=100), SCREEN) == expected


def test_a_box_at_the_border_keeps_its_edges_visible_inside_the_shared_area() -> None:
    area = Rect(1000, 500, 320, 240)  # a monitor or region away from the root's corner
    edges = layout(mark("b", x=0, y=0, x2=319, y2=239), area).rects
    assert edges == (Rect(1000, 500, 320, EDGE), Rect(1000, 736, 320, EDGE),
                     Rect(1000, 500, EDGE, 240), Rect(1316, 500, EDGE, 240))
    # Coordinates beyond the frame are clamped into it.
    assert layout(mark("b", x=-50, y=-50, x2=9999, y2=9999), area).rects == edges


def test_a_point_is_a_square_with_a_crosshair_and_text_gets_a_label() -> None:
    area = Rect(100, 10, 320, 240)
    shape = layout(mark("p", kind="arrow", x=50, y=60), area)
    dot = shape.rects[0]
    assert (dot.x, dot.y, dot.width, dot.height) == (146, 66, 8, 8)
    assert len(shape.rects) == 5 and shape.label is None
    # A click (a "box" without size) is a point too.
    assert layout(mark("p", x=50, y=60, x2=50, y2=60), area).rects == shape.rects
    labelled = layout(mark("l", kind="label", x=50, y=60, text="click\there"), area,
                      measure=lambda text: (6 * len(text), 13))
    assert labelled.label == (172, 64, "click here")


def test_labels_stay_on_the_shared_area_and_are_short() -> None:
    box = layout(mark("b", x=10, y=2, x2=100, y2=50, text="save"), SCREEN,
                 measure=lambda text: (30, 19))
    assert box.label == (6, 55, "save")  # no room above the box: below its bottom edge
    right = layout(mark("p", kind="arrow", x=310, y=100, text="here"), SCREEN,
                   measure=lambda text: (30, 19))
    assert right.label is not None and right.label[0] == WIDTH - 30
    assert len(label_text("x" * 500)) == marks.MAX_TEXT
    assert label_text(" two\nlines ") == "two lines"


# -- drawing on a private X server ---------------------------------------------------------


@pytest.fixture(scope="module")
def xserver() -> Iterator[Xvfb]:
    if XVFB is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    with running(WIDTH, HEIGHT) as x:
        x.paint([], background=BACKGROUND)
        yield x


@pytest.fixture
def overlay(xserver: Xvfb) -> Iterator[DesktopOverlay]:
    o = DesktopOverlay(xserver.display)
    yield o
    o.close(timeout=5)
    assert o.state == "closed"


def grab(x: Xvfb) -> Pixels:
    with mss.MSS(display=x.display) as shooter:
        shot = shooter.grab({"left": 0, "top": 0, "width": x.width, "height": x.height})
    bgra = np.frombuffer(shot.raw, dtype=np.uint8).reshape(x.height, x.width, 4)
    return bgra[:, :, 2::-1]  # RGB


def magenta(rgb: Pixels, x: int, y: int) -> bool:
    return tuple(int(v) for v in rgb[y, x]) == (255, 0, 255)


def blank(rgb: Pixels) -> bool:
    return bool((rgb == np.array([0x30, 0x30, 0x30], dtype=np.uint8)).all())


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_marks_are_drawn_where_the_agent_put_them_and_cleared(
        xserver: Xvfb, overlay: DesktopOverlay) -> None:
    assert blank(grab(xserver))
    assert overlay.show(mark("b", x=100, y=60, x2=200, y2=140, text="this one"))
    assert overlay.show(mark("p", kind="arrow", x=260, y=200))
    assert overlay.settle() and overlay.state == "open"
    assert overlay.shown == {"b", "p"}
    rgb = grab(xserver)
    # The box's four edges, just outside the marked area...
    for x, y in ((150, 57), (150, 142), (97, 100), (202, 100), (96, 56), (203, 143)):
        assert magenta(rgb, x, y), (x, y)
    # ...and nothing inside it or beyond the edges: what is marked stays visible.
    assert blank(rgb[60:141, 100:201])
    assert not magenta(rgb, 230, 52) and not magenta(rgb, 150, 146)
    # Its label, black text on magenta, above the box.
    label = rgb[30:56, 96:160]
    assert (label == [255, 0, 255]).all(axis=2).any() and (label == 0).all(axis=2).any()
    # The point: a filled square on it and a crosshair around it, not a filled block.
    for x, y in ((260, 200), (257, 197), (263, 203), (245, 200), (275, 200), (260, 185)):
        assert magenta(rgb, x, y), (x, y)
    assert not magenta(rgb, 250, 190)

    overlay.remove(["p"])
    assert overlay.settle() and overlay.shown == {"b"}
    rgb = grab(xserver)
    assert not magenta(rgb, 260, 200) and magenta(rgb, 150, 57)

    overlay.clear()
    assert overlay.settle() and overlay.shown == frozenset()
    assert blank(grab(xserver))


def test_a_mark_goes_at_its_ttl_and_the_same_id_replaces_it(
        xserver: Xvfb, overlay: DesktopOverlay) -> None:
    overlay.show(mark("p", kind="arrow", x=50, y=50))
    overlay.show(mark("p", kind="arrow", x=150, y=100, ttl=0.3))  # moved, and short-lived
    assert overlay.settle()
    rgb = grab(xserver)
    assert magenta(rgb, 150, 100) and not magenta(rgb, 50, 50)
    assert wait_for(lambda: overlay.shown == frozenset(), timeout=3)
    assert blank(grab(xserver))


def test_marks_follow_the_shared_area_on_the_screen(
        xserver: Xvfb, overlay: DesktopOverlay) -> None:
    # Sharing the region 100,50 160x120: the frame's 10,10 is the screen's 110,60.
    overlay.show(mark("p", kind="arrow", x=10, y=10), area=(100, 50, 160, 120))
    assert overlay.settle()
    rgb = grab(xserver)
    assert magenta(rgb, 110, 60) and not magenta(rgb, 10, 10)


def test_closing_removes_the_marks_and_ignores_later_ones(xserver: Xvfb) -> None:
    o = DesktopOverlay(xserver.display)
    o.show(mark("b", x=10, y=10, x2=50, y2=50))
    assert o.settle() and not blank(grab(xserver))
    o.close(timeout=5)
    assert o.state == "closed" and not o.usable
    assert blank(grab(xserver))
    assert o.show(mark("c", x=10, y=10, x2=50, y2=50)) is False
    o.close()  # idempotent


def test_without_a_display_the_overlay_steps_aside_quietly(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    for o in (DesktopOverlay(), DesktopOverlay(":4711")):
        o.show(mark("b", x=10, y=10, x2=50, y2=50))
        assert o.settle()
        assert o.state == "failed" and "cannot open the X display" in o.error
        assert o.show(mark("c", x=1, y=1)) is False
        o.remove(["b"])
        o.clear()
        o.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    never = DesktopOverlay()
    never.close()
    assert never.show(mark("p", kind="arrow", x=1, y=1)) is False
    assert never.state == "closed"


def test_without_libx11_the_overlay_steps_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlib, "_libs", {})
    monkeypatch.setattr(xlib.ctypes.util, "find_library", lambda name: None)
    o = DesktopOverlay(":0")
    o.show(mark("p", kind="arrow", x=1, y=1))
    assert o.settle() and o.state == "failed" and o.error == "libX11 is not installed"


def test_a_vanishing_x_server_does_not_end_the_program() -> None:
    if XVFB is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    # In a child process: libX11 before 1.7 would end it, and pytest with it.
    code = textwrap.dedent("""
        from assist.protocol import messages as m
        from assist.share.overlay import DesktopOverlay
        from tests.xvfb import running
        a = m.Annotation(id="p", kind="arrow", x=5, line=5, surface="desktop")
        with running(64, 48) as x:
            o = DesktopOverlay(x.display)
            o.show(a)
            assert o.settle() and o.state == "open", o.error
        o.show(m.Annotation(id="q", kind="arrow", x=9, line=9, surface="desktop"))
        assert o.settle() and o.state == "failed", o.state
        print("survived:", o.error)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, check=False, cwd=Path(__file__).resolve().parent.parent)
    libx11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    if not hasattr(libx11, "XSetIOErrorExitHandler") and result.returncode != 0:
        pytest.skip("this libX11 predates XSetIOErrorExitHandler: X clients die with it")
    assert result.returncode == 0, result.stderr
    assert "survived: drawing failed: the connection to the X server broke" in result.stdout
    assert "Traceback" not in result.stderr and "XIO" not in result.stderr


# -- the help app ------------------------------------------------------------------------------


def client_config(broker: Broker, key: KeyPair, tmp: Path) -> ClientConfig:
    return ClientConfig(host="127.0.0.1", port=broker.port, host_key=broker.public_key,
                        voice=False, audio=(),
                        key=key.private, file=tmp / "client.toml", state=tmp / "state")


async def test_the_help_app_draws_the_agents_desktop_mark_on_the_screen(
        xserver: Xvfb, broker: Broker, keys: dict[str, KeyPair], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from assist.tui.help_app import HelpApp

    monkeypatch.setenv("DISPLAY", xserver.display)
    app = HelpApp(client_config(broker, keys["alice"], tmp_path), "marks",
                  ["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: app.request is not None and app.request.status.phase == "queued")
        carol = await agent_client(broker, keys["carol"])
        info = await carol.accept()
        await until(lambda: app.guard is not None)
        await carol.ask_grant(info.session, "annotate")
        answer = asyncio.ensure_future(carol.wait_grant(info.session, "annotate", 10))
        await until(lambda: len(app.screen_stack) > 1)
        await pilot.pause(1.1)  # Allow works only after a moment
        await pilot.press("tab", "enter")
        grant = await answer
        await carol.annotate(info.session, grant.grant,
                             mark("m1", x=100, y=60, x2=200, y2=140, text="here"))
        await until(lambda: app.overlay is not None and app.overlay.shown == {"m1"})
        rgb = await asyncio.to_thread(grab, xserver)
        assert magenta(rgb, 150, 57) and blank(rgb[60:141, 100:201])
        # The words stay in the panel for everyone.
        status = str(app.panel.query_one("#status").render())
        assert 'carol marks the area 100,60 to 200,140 on your screen: "here"' in status

        await carol.clear_annotations(info.session)
        overlay = app.overlay
        assert overlay is not None
        await until(lambda: overlay.shown == frozenset())
        assert blank(await asyncio.to_thread(grab, xserver))

        await carol.annotate(info.session, grant.grant, mark("m2", kind="arrow", x=30, y=30))
        await until(lambda: overlay.shown == {"m2"})
        await pilot.press("f8")  # the user clears the marks
        await until(lambda: overlay.shown == frozenset())

        await carol.annotate(info.session, grant.grant, mark("m3", kind="arrow", x=30, y=30))
        await until(lambda: overlay.shown == {"m3"})
        await carol.end(info.session, "shown where", resolved=True)
        await until(lambda: app.overlay is None and overlay.state == "closed")
        assert blank(await asyncio.to_thread(grab, xserver))
        await carol.link.close()
