"""A private X server (Xvfb) for screen tests, and a tiny X client to paint it.

``Xvfb -displayfd`` picks a free display number itself and tells us which, so
parallel runs never collide. Painting uses libX11 through ctypes (libX11 is
installed wherever mss can capture X11), setting a pixmap as the root
window's background: the pattern stays on screen until the server exits,
with no window manager or toolkit involved.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

XVFB = shutil.which("Xvfb")


@dataclass(frozen=True)
class Rect:
    """A filled rectangle of ``rgb`` colour (0xRRGGBB)."""

    x: int
    y: int
    width: int
    height: int
    rgb: int


class Xvfb:
    """A running Xvfb server; use :func:`running`."""

    def __init__(self, process: subprocess.Popen[bytes], display: str, width: int,
                 height: int) -> None:
        self.process = process
        self.display = display
        self.width = width
        self.height = height

    def paint(self, rects: list[Rect], background: int = 0x000000) -> None:
        """Fill the screen with ``background`` and draw ``rects`` on it."""
        paint(self.display, self.width, self.height, rects, background)


@contextlib.contextmanager
def running(width: int = 640, height: int = 480) -> Iterator[Xvfb]:
    """Start ``Xvfb`` on a free display (only on the local socket) and stop it after."""
    if XVFB is None:
        raise FileNotFoundError("Xvfb is not installed (Debian package xvfb)")
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [XVFB, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        number = _read_display(read_fd, process)
        yield Xvfb(process, f":{number}", width, height)
    finally:
        os.close(read_fd)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_display(fd: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or process.poll() is not None:
            raise RuntimeError("Xvfb did not start")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                raise RuntimeError("Xvfb exited before naming its display")
            data += chunk
    return int(data.strip())


def _xlib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    vp, ul, ci, ui = ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_uint
    lib.XOpenDisplay.restype = vp
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultScreen.argtypes = [vp]
    lib.XRootWindow.restype = ul
    lib.XRootWindow.argtypes = [vp, ci]
    lib.XDefaultDepth.argtypes = [vp, ci]
    lib.XCreatePixmap.restype = ul
    lib.XCreatePixmap.argtypes = [vp, ul, ui, ui, ui]
    lib.XCreateGC.restype = vp
    lib.XCreateGC.argtypes = [vp, ul, ul, vp]
    lib.XSetForeground.argtypes = [vp, vp, ul]
    lib.XFillRectangle.argtypes = [vp, ul, vp, ci, ci, ui, ui]
    lib.XSetWindowBackgroundPixmap.argtypes = [vp, ul, ul]
    lib.XClearWindow.argtypes = [vp, ul]
    lib.XFreeGC.argtypes = [vp, vp]
    lib.XFreePixmap.argtypes = [vp, ul]
    lib.XSync.argtypes = [vp, ci]
    lib.XSetCloseDownMode.argtypes = [vp, ci]
    lib.XCloseDisplay.argtypes = [vp]
    return lib


RETAIN_PERMANENT = 1


def paint(display: str, width: int, height: int, rects: list[Rect],
          background: int = 0x000000) -> None:
    """Set the root window of ``display`` to a picture of ``rects`` on ``background``.

    On a 24-bit TrueColor visual (Xvfb's ``WxHx24``) a pixel value is 0xRRGGBB.
    """
    x = _xlib()
    dpy = x.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open X display {display}")
    try:
        screen = x.XDefaultScreen(dpy)
        root = x.XRootWindow(dpy, screen)
        pixmap = x.XCreatePixmap(dpy, root, width, height, x.XDefaultDepth(dpy, screen))
        gc = x.XCreateGC(dpy, pixmap, 0, None)
        x.XSetForeground(dpy, gc, background)
        x.XFillRectangle(dpy, pixmap, gc, 0, 0, width, height)
        for r in rects:
            x.XSetForeground(dpy, gc, r.rgb)
            x.XFillRectangle(dpy, pixmap, gc, r.x, r.y, r.width, r.height)
        x.XSetWindowBackgroundPixmap(dpy, root, pixmap)
        x.XClearWindow(dpy, root)
        x.XFreeGC(dpy, gc)
        # The root keeps its background after we disconnect only if our
        # resources are kept: retain them (the server frees them on exit).
        x.XSetCloseDownMode(dpy, RETAIN_PERMANENT)
        x.XSync(dpy, 0)
    finally:
        x.XCloseDisplay(dpy)


# -- the known picture the media tests share and look for ---------------------------

WIDTH, HEIGHT = 640, 480
PATTERN = [
    Rect(0, 0, 320, 240, 0xE02020),      # red
    Rect(320, 0, 320, 240, 0x20C040),    # green
    Rect(0, 240, 320, 240, 0x2040E0),    # blue
    Rect(320, 240, 320, 240, 0xF0F0F0),  # white, with a black square inside
    Rect(440, 320, 80, 80, 0x000000),
]
CHECKS = {  # (x, y) of a probe -> expected RGB
    (160, 120): (0xE0, 0x20, 0x20), (480, 120): (0x20, 0xC0, 0x40),
    (160, 360): (0x20, 0x40, 0xE0), (360, 280): (0xF0, 0xF0, 0xF0),
    (480, 360): (0x00, 0x00, 0x00),
}
TOLERANCE = 24
"""Per-channel error allowed after VP8/H264 at share bitrates (4:2:0 chroma, flat areas)."""
