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

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from assist.protocol import messages as m
from assist.share.marks import (
    EDGE,
    MAGENTA,
    MAX_MARKS,
    RAISE_EVERY,
    Layout,
    OverlayState,
    Rect,
    layout,
)
from assist.share.xlib import XScreen, XUnavailable

__all__ = ["EDGE", "MAGENTA", "DesktopOverlay", "Layout", "OverlayState", "Rect", "layout"]

log = logging.getLogger(__name__)


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
            screen = XScreen(self.display, self.colour)
        except XUnavailable as exc:
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

    def _loop(self, screen: XScreen, marks: dict[str, _Mark]) -> None:
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

    def _apply(self, screen: XScreen, marks: dict[str, _Mark],
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
