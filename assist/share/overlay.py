"""The agent's desktop marks drawn on the user's real screen (X11, through libX11).

A mark the agent draws on the shared desktop video arrives as pixels of the
shared frame. :class:`DesktopOverlay` shows it where it belongs on the user's
own screen: a box as four thin magenta edge windows, a point as a small
filled square with a crosshair around it, text as a small label window. The
windows are override-redirect (no window manager frames, moves or focuses
them; they stay above normal windows and are raised again every second),
select no input, and where the SHAPE extension allows it have an empty input
shape, so every click goes to whatever lies beneath. Inside a box nothing is
drawn at all.

Everything X happens in one daemon thread that owns the only connection: the
caller (the Textual loop) only puts commands in a queue, so a slow or hung X
server can never stall the loop. libX11 is loaded with ctypes (no new
dependency). When libX11 is missing or the display cannot be opened the
overlay turns ``failed`` with a log warning and ignores further marks; the
app keeps describing the marks in words either way.

X errors go to a handler that logs and returns (the library's default one
would print and end the process). A lost connection to the X server is
survived where libX11 has ``XSetIOErrorExitHandler`` (1.7 and later); older
versions end the process on it, as every X client does.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from assist.protocol import messages as m

__all__ = ["EDGE", "MAGENTA", "DesktopOverlay", "Layout", "OverlayState", "Rect", "layout"]

log = logging.getLogger(__name__)

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


# -- libX11 through ctypes ---------------------------------------------------------------


class _Unavailable(Exception):
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


class _Screen:
    """One connection to the X server, used only by the overlay's thread."""

    def __init__(self, display: str | None, colour: int) -> None:
        x = _load("X11", _setup_x11)
        if x is None:
            raise _Unavailable("libX11 is not installed")
        self.x = x
        # Before opening: errors of this connection must never reach the
        # default handler, which ends the process.
        x.XSetErrorHandler(_ERROR_HANDLER)
        dpy = x.XOpenDisplay(display.encode() if display else None)
        if not dpy:
            raise _Unavailable(f"cannot open the X display {display or '$DISPLAY'}")
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


# -- the overlay ---------------------------------------------------------------------------


@dataclass
class _Mark:
    windows: list[int]
    until: float


_STOP = ("stop",)


class DesktopOverlay:
    """Desktop marks on the user's screen, drawn by a thread of their own.

    Every method returns at once and is safe to call from the asyncio loop:
    it only queues a command for the thread. Nothing raises; failures are
    logged and leave :attr:`state` ``failed`` with the reason in :attr:`error`.

    Args:
        display: X display name; ``None`` uses ``$DISPLAY``.
        colour: the marks' colour, 0xRRGGBB.
        edge: a box's edge thickness in pixels.
        clock: monotonic time source (the marks' ``ttl`` counts on it).
    """

    def __init__(self, display: str | None = None, *, colour: int = MAGENTA,
                 edge: int = EDGE, clock: Callable[[], float] = time.monotonic) -> None:
        self.display = display
        self.colour = colour
        self.edge = edge
        self.clock = clock
        self.state: OverlayState = "new"
        self.error = ""
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._sent = 0
        self._done = 0
        self._shown: frozenset[str] = frozenset()
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- the caller's side ------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """``True`` while marks can still be shown (opening or open)."""
        return not self._closing and self.state in ("new", "starting", "open")

    @property
    def shown(self) -> frozenset[str]:
        """Ids of the marks on the screen now (as far as the thread got)."""
        return self._shown

    def start(self) -> None:
        """Start the thread, which opens the display (idempotent; not after :meth:`close`)."""
        with self._cond:
            if self.state != "new":
                return
            self.state = "starting"
            thread = self._thread = threading.Thread(target=self._run, name="assist-overlay",
                                                     daemon=True)
        thread.start()

    def show(self, annotation: m.Annotation, area: tuple[int, int, int, int] | None = None) -> bool:
        """Show a desktop mark until its ``ttl`` passes (replacing one of the same id).

        Args:
            annotation: the mark, in pixels of the shared frame.
            area: ``(left, top, width, height)`` of the shared frame on the
                screen; ``None`` means the whole screen.

        Returns:
            ``False`` if the overlay cannot show anything (failed or closed).
        """
        self.start()
        until = self.clock() + annotation.ttl
        return self._put(("show", annotation, area, until))

    def remove(self, ids: Iterable[str]) -> None:
        """Remove the marks with these ids."""
        self._put(("remove", tuple(ids)))

    def clear(self) -> None:
        """Remove every mark."""
        self._put(("clear",))

    def close(self, timeout: float = 0.0) -> None:
        """Remove every mark and end the thread (idempotent).

        Args:
            timeout: wait this long for the thread to finish (0: do not wait).
        """
        with self._cond:
            if self.state == "new":
                self.state = "closed"
            if self.usable:
                self._sent += 1
                self._commands.put(_STOP)
                self._closing = True
        if timeout > 0 and self._thread is not None:
            self._thread.join(timeout)

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the thread has handled every command queued so far.

        Returns:
            ``False`` if ``timeout`` passed first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._sent
            while self._done < target and self._thread is not None \
                    and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _put(self, command: tuple[Any, ...]) -> bool:
        with self._cond:
            if not self.usable:
                return False
            self._sent += 1
            self._commands.put(command)
            return True

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            screen = _Screen(self.display, self.colour)
        except _Unavailable as exc:
            self._fail(str(exc), level=logging.INFO)
            return
        except Exception as exc:  # a broken libX11 must not end the app either
            self._fail(f"X11 unusable: {exc}")
            return
        log.debug("desktop marks: drawing on %s (%dx%d, input shape: %s)",
                  self.display or "$DISPLAY", *screen.size, screen.shape is not None)
        self.state = "open"
        marks: dict[str, _Mark] = {}
        try:
            self._loop(screen, marks)
        except Exception as exc:  # report, never print a traceback
            self._fail(f"drawing failed: {exc}")
        else:
            self._finish("closed")
        if not screen.lost:
            try:
                screen.destroy(w for mark in marks.values() for w in mark.windows)
                screen.close()
            except Exception as exc:
                log.warning("desktop marks: closing the display failed: %s", exc)
        self._shown = frozenset()

    def _loop(self, screen: _Screen, marks: dict[str, _Mark]) -> None:
        raised = self.clock()
        while True:
            now = self.clock()
            waits = [mark.until - now for mark in marks.values()]
            if marks:
                waits.append(raised + RAISE_EVERY - now)
            try:
                command = self._commands.get(timeout=max(0.0, min(waits)) if waits else None)
            except queue.Empty:
                command = None
            if command == _STOP:
                return
            if command is not None:
                self._apply(screen, marks, command)
            now = self.clock()
            expired = [key for key, mark in marks.items() if mark.until <= now]
            for key in expired:
                screen.destroy(marks.pop(key).windows)
            if marks and now - raised >= RAISE_EVERY:
                screen.raise_(w for mark in marks.values() for w in mark.windows)
                raised = now
            screen.sync()
            if screen.lost:
                raise RuntimeError("the connection to the X server broke")
            self._shown = frozenset(marks)
            if command is not None:
                with self._cond:
                    self._done += 1
                    self._cond.notify_all()

    def _apply(self, screen: _Screen, marks: dict[str, _Mark],
               command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "show":
            _, annotation, area, until = command
            if annotation.id in marks:
                screen.destroy(marks.pop(annotation.id).windows)
            if len(marks) >= MAX_MARKS:
                oldest = min(marks, key=lambda key: marks[key].until)
                screen.destroy(marks.pop(oldest).windows)
            frame = Rect(*area) if area is not None else Rect(0, 0, *screen.size)
            shape = layout(annotation, frame, edge=self.edge, measure=screen.measure)
            marks[annotation.id] = _Mark(screen.draw(shape), until)
        elif kind == "remove":
            for key in command[1]:
                if key in marks:
                    screen.destroy(marks.pop(key).windows)
        elif kind == "clear":
            screen.destroy(w for mark in marks.values() for w in mark.windows)
            marks.clear()

    def _fail(self, error: str, level: int = logging.WARNING) -> None:
        log.log(level, "desktop marks not drawn on the screen: %s", error)
        self.error = error
        self._finish("failed")

    def _finish(self, state: OverlayState) -> None:
        with self._cond:
            self.state = state
            self._done = self._sent
            self._cond.notify_all()
