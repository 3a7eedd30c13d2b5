"""libX11 through ctypes, just what the desktop overlay needs (no new dependency)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from assist.share.marks import PAD, Layout, Rect, fixed_size

log = logging.getLogger(__name__)


class XUnavailable(Exception):
    """X11 cannot be used here (no libX11, no display)."""


class _XErrorEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("display", ctypes.c_void_p),
                ("resourceid", ctypes.c_ulong), ("serial", ctypes.c_ulong),
                ("error_code", ctypes.c_ubyte), ("request_code", ctypes.c_ubyte),
                ("minor_code", ctypes.c_ubyte)]


class _XSetWindowAttributes(ctypes.Structure):
    _fields_ = [("background_pixmap", ctypes.c_ulong), ("background_pixel", ctypes.c_ulong),
                ("border_pixmap", ctypes.c_ulong), ("border_pixel", ctypes.c_ulong),
                ("bit_gravity", ctypes.c_int), ("win_gravity", ctypes.c_int),
                ("backing_store", ctypes.c_int), ("backing_planes", ctypes.c_ulong),
                ("backing_pixel", ctypes.c_ulong), ("save_under", ctypes.c_int),
                ("event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("colormap", ctypes.c_ulong),
                ("cursor", ctypes.c_ulong)]


class _XColor(ctypes.Structure):
    _fields_ = [("pixel", ctypes.c_ulong), ("red", ctypes.c_ushort),
                ("green", ctypes.c_ushort), ("blue", ctypes.c_ushort),
                ("flags", ctypes.c_char), ("pad", ctypes.c_char)]


class _XCharStruct(ctypes.Structure):
    _fields_ = [("lbearing", ctypes.c_short), ("rbearing", ctypes.c_short),
                ("width", ctypes.c_short), ("ascent", ctypes.c_short),
                ("descent", ctypes.c_short), ("attributes", ctypes.c_ushort)]


class _XFontStruct(ctypes.Structure):
    _fields_ = [("ext_data", ctypes.c_void_p), ("fid", ctypes.c_ulong),
                ("direction", ctypes.c_uint), ("min_char_or_byte2", ctypes.c_uint),
                ("max_char_or_byte2", ctypes.c_uint), ("min_byte1", ctypes.c_uint),
                ("max_byte1", ctypes.c_uint), ("all_chars_exist", ctypes.c_int),
                ("default_char", ctypes.c_uint), ("n_properties", ctypes.c_int),
                ("properties", ctypes.c_void_p), ("min_bounds", _XCharStruct),
                ("max_bounds", _XCharStruct), ("per_char", ctypes.c_void_p),
                ("ascent", ctypes.c_int), ("descent", ctypes.c_int)]


_ErrorHandler = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_XErrorEvent))
_IOErrorHandler = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_IOExitHandler = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)

CW_BACK_PIXEL = 1 << 1
CW_OVERRIDE_REDIRECT = 1 << 9
INPUT_OUTPUT = 1
SHAPE_INPUT = 2
SHAPE_SET = 0
UNSORTED = 0

_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL | None] = {}
_lost: set[int] = set()
"""Displays (their addresses) whose connection to the server broke."""
_errors = 0


def _on_error(display: int | None, event: Any) -> int:
    # Called by libX11 inside an X call of the overlay thread (or of any other
    # Xlib user in this process): log and carry on, never exit.
    global _errors  # noqa: PLW0603
    with contextlib.suppress(BaseException):  # nothing may escape into C
        _errors += 1
        if _errors <= 20:
            e = event.contents
            log.warning("desktop marks: X error %d (request %d.%d)", e.error_code,
                        e.request_code, e.minor_code)
    return 0


def _on_io_error(display: int | None) -> int:
    with contextlib.suppress(BaseException):
        log.warning("desktop marks: the connection to the X server broke")
    return 0


def _on_io_exit(display: int | None, data: int | None) -> None:
    # Returning (instead of exiting) leaves the display marked dead; the
    # overlay sees it in ``_lost`` and stops using it.
    if display:
        _lost.add(display)


# The C callbacks must live as long as the process: libX11 keeps pointers to them.
_ERROR_HANDLER = _ErrorHandler(_on_error)
_IO_ERROR_HANDLER = _IOErrorHandler(_on_io_error)
_IO_EXIT_HANDLER = _IOExitHandler(_on_io_exit)


def _load(name: str, setup: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL | None:
    with _lock:
        if name not in _libs:
            lib: ctypes.CDLL | None = None
            path = ctypes.util.find_library(name)
            if path:
                try:
                    lib = ctypes.CDLL(path)
                    setup(lib)
                except (OSError, AttributeError) as exc:
                    log.info("desktop marks: lib%s unusable: %s", name, exc)
                    lib = None
            _libs[name] = lib
        return _libs[name]


def _setup_x11(lib: ctypes.CDLL) -> None:
    vp, ul, ci, ui, cp = (ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_uint,
                          ctypes.c_char_p)
    signatures: dict[str, tuple[list[Any], Any]] = {
        "XOpenDisplay": ([cp], vp),
        "XCloseDisplay": ([vp], ci),
        "XDefaultScreen": ([vp], ci),
        "XRootWindow": ([vp, ci], ul),
        "XDisplayWidth": ([vp, ci], ci),
        "XDisplayHeight": ([vp, ci], ci),
        "XDefaultColormap": ([vp, ci], ul),
        "XBlackPixel": ([vp, ci], ul),
        "XDefaultDepth": ([vp, ci], ci),
        "XAllocColor": ([vp, ul, ctypes.POINTER(_XColor)], ci),
        "XCreateWindow": ([vp, ul, ci, ci, ui, ui, ui, ci, ui, vp, ul,
                           ctypes.POINTER(_XSetWindowAttributes)], ul),
        "XStoreName": ([vp, ul, cp], ci),
        "XMapRaised": ([vp, ul], ci),
        "XRaiseWindow": ([vp, ul], ci),
        "XDestroyWindow": ([vp, ul], ci),
        "XCreatePixmap": ([vp, ul, ui, ui, ui], ul),
        "XFreePixmap": ([vp, ul], ci),
        "XCreateGC": ([vp, ul, ul, vp], vp),
        "XFreeGC": ([vp, vp], ci),
        "XSetForeground": ([vp, vp, ul], ci),
        "XSetFont": ([vp, vp, ul], ci),
        "XFillRectangle": ([vp, ul, vp, ci, ci, ui, ui], ci),
        "XDrawString": ([vp, ul, vp, ci, ci, cp, ci], ci),
        "XLoadQueryFont": ([vp, cp], ctypes.POINTER(_XFontStruct)),
        "XFreeFont": ([vp, ctypes.POINTER(_XFontStruct)], ci),
        "XTextWidth": ([ctypes.POINTER(_XFontStruct), cp, ci], ci),
        "XSetWindowBackgroundPixmap": ([vp, ul, ul], ci),
        "XClearWindow": ([vp, ul], ci),
        "XSync": ([vp, ci], ci),
        "XSetErrorHandler": ([_ErrorHandler], vp),
        "XSetIOErrorHandler": ([_IOErrorHandler], vp),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    exit_handler = getattr(lib, "XSetIOErrorExitHandler", None)  # libX11 >= 1.7
    if exit_handler is not None:
        exit_handler.argtypes, exit_handler.restype = [vp, _IOExitHandler, vp], None


def _setup_xext(lib: ctypes.CDLL) -> None:
    vp, ci, pi = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
    lib.XShapeQueryExtension.argtypes, lib.XShapeQueryExtension.restype = [vp, pi, pi], ci
    lib.XShapeQueryVersion.argtypes, lib.XShapeQueryVersion.restype = [vp, pi, pi], ci
    lib.XShapeCombineRectangles.argtypes = [vp, ctypes.c_ulong, ci, ci, ci, vp, ci, ci, ci]
    lib.XShapeCombineRectangles.restype = None


class XScreen:
    """One connection to the X server, used only by the overlay's thread."""

    def __init__(self, display: str | None, colour: int) -> None:
        x = _load("X11", _setup_x11)
        if x is None:
            raise XUnavailable("libX11 is not installed")
        self.x = x
        # Before opening: errors of this connection must never reach the
        # default handler, which ends the process.
        x.XSetErrorHandler(_ERROR_HANDLER)
        dpy = x.XOpenDisplay(display.encode() if display else None)
        if not dpy:
            raise XUnavailable(f"cannot open the X display {display or '$DISPLAY'}")
        self.dpy: int = dpy
        try:
            self._setup(colour)
        except Exception:
            x.XCloseDisplay(dpy)
            raise

    def _setup(self, colour: int) -> None:
        x, dpy = self.x, self.dpy
        exit_handler = getattr(x, "XSetIOErrorExitHandler", None)
        if exit_handler is not None:
            x.XSetIOErrorHandler(_IO_ERROR_HANDLER)
            exit_handler(dpy, _IO_EXIT_HANDLER, None)
        screen = x.XDefaultScreen(dpy)
        self.root: int = x.XRootWindow(dpy, screen)
        self.size = (x.XDisplayWidth(dpy, screen), x.XDisplayHeight(dpy, screen))
        self.depth: int = x.XDefaultDepth(dpy, screen)
        self.colour = self._pixel(x.XDefaultColormap(dpy, screen), colour)
        self.black: int = x.XBlackPixel(dpy, screen)
        font = x.XLoadQueryFont(dpy, b"fixed")
        self.font: Any = font if font else None
        self.shape = self._shape()

    @property
    def lost(self) -> bool:
        """``True`` once the connection broke; nothing may be sent any more."""
        return self.dpy in _lost

    def _pixel(self, colormap: int, rgb: int) -> int:
        colour = _XColor(0, ((rgb >> 16) & 0xFF) * 257, ((rgb >> 8) & 0xFF) * 257,
                         (rgb & 0xFF) * 257)
        if self.x.XAllocColor(self.dpy, colormap, ctypes.byref(colour)):
            return int(colour.pixel)
        return rgb  # TrueColor 24-bit: the pixel value is the colour

    def _shape(self) -> ctypes.CDLL | None:
        ext = _load("Xext", _setup_xext)
        if ext is None:
            return None
        a, b = ctypes.c_int(), ctypes.c_int()
        if not ext.XShapeQueryExtension(self.dpy, ctypes.byref(a), ctypes.byref(b)):
            return None
        if not ext.XShapeQueryVersion(self.dpy, ctypes.byref(a), ctypes.byref(b)):
            return None
        return ext if (a.value, b.value) >= (1, 1) else None  # input shapes came in 1.1

    def measure(self, text: str) -> tuple[int, int]:
        """Size of a label window for ``text``."""
        if self.font is None:
            return fixed_size(text)
        raw = text.encode("latin-1", "replace")
        info = self.font.contents
        return (self.x.XTextWidth(self.font, raw, len(raw)) + 2 * PAD,
                info.ascent + info.descent + 2 * PAD)

    def window(self, r: Rect, background: int | None = None) -> int:
        """Map an override-redirect window of the mark's colour at ``r``."""
        attrs = _XSetWindowAttributes()
        attrs.override_redirect = 1
        attrs.background_pixel = self.colour if background is None else background
        win: int = self.x.XCreateWindow(self.dpy, self.root, r.x, r.y, max(r.width, 1),
                                        max(r.height, 1), 0, 0, INPUT_OUTPUT, None,
                                        CW_OVERRIDE_REDIRECT | CW_BACK_PIXEL,
                                        ctypes.byref(attrs))
        self.x.XStoreName(self.dpy, win, b"assist: agent's mark")
        if self.shape is not None:  # clicks pass through even the mark itself
            self.shape.XShapeCombineRectangles(self.dpy, win, SHAPE_INPUT, 0, 0, None, 0,
                                               SHAPE_SET, UNSORTED)
        self.x.XMapRaised(self.dpy, win)
        return win

    def label(self, x: int, y: int, text: str) -> int:
        """Map a label window with ``text`` (black on the mark's colour) at ``x, y``."""
        width, height = self.measure(text)
        win = self.window(Rect(x, y, width, height))
        # Text goes into the window's background pixmap: the server repaints it
        # by itself, so the thread never has to wait for Expose events.
        xl, dpy = self.x, self.dpy
        pixmap = xl.XCreatePixmap(dpy, win, width, height, self.depth)
        gc = xl.XCreateGC(dpy, pixmap, 0, None)
        xl.XSetForeground(dpy, gc, self.colour)
        xl.XFillRectangle(dpy, pixmap, gc, 0, 0, width, height)
        xl.XSetForeground(dpy, gc, self.black)
        ascent = 10
        if self.font is not None:
            xl.XSetFont(dpy, gc, self.font.contents.fid)
            ascent = self.font.contents.ascent
        raw = text.encode("latin-1", "replace")
        xl.XDrawString(dpy, pixmap, gc, PAD, PAD + ascent, raw, len(raw))
        xl.XSetWindowBackgroundPixmap(dpy, win, pixmap)
        xl.XClearWindow(dpy, win)
        xl.XFreeGC(dpy, gc)
        xl.XFreePixmap(dpy, pixmap)
        return win

    def draw(self, shape: Layout) -> list[int]:
        """Map the windows of one mark; returns them."""
        windows = [self.window(r) for r in shape.rects]
        if shape.label is not None:
            windows.append(self.label(*shape.label))
        return windows

    def destroy(self, windows: Iterable[int]) -> None:
        for win in windows:
            self.x.XDestroyWindow(self.dpy, win)

    def raise_(self, windows: Iterable[int]) -> None:
        for win in windows:
            self.x.XRaiseWindow(self.dpy, win)

    def sync(self) -> None:
        """Send everything and let the server answer (errors are handled now)."""
        self.x.XSync(self.dpy, 0)

    def close(self) -> None:
        if self.font is not None:
            self.x.XFreeFont(self.dpy, self.font)
            self.font = None
        self.x.XCloseDisplay(self.dpy)  # the server destroys what is left
