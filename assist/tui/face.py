"""The agent's face in the user's panel: their camera live, or their initials.

Pictures come from the call (:class:`~assist.client.call.UserCall`) as RGB
arrays, as fast as the agent's camera sends them; a
:class:`~assist.core.pace.FramePacer` decides which of them are drawn, so a
terminal over SSH gets a few a second and a local one up to 30, and drawing
never takes more than a small share of the loop that shows the shell. The
mode (Kitty graphics, Sixel, half-blocks, characters) is the one the
terminal takes (:mod:`assist.tui.graphics`); the panel says which.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from assist.core.pace import FramePacer, link_budget
from assist.tui import graphics

if TYPE_CHECKING:
    from assist.media.tracks import ReceivedFrame

log = logging.getLogger(__name__)


def initials(name: str) -> str:
    """Up to two capitals from a name: ``carol`` -> ``C``, ``Ada Lovelace`` -> ``AL``."""
    words = [w for w in name.replace(".", " ").replace("_", " ").replace("-", " ").split()
             if w[0].isalnum()]  # the agent's name: never a control character
    return "".join(w[0] for w in words[:2]).upper() or "?"


class FaceView(Vertical):
    """The agent's camera in ``mode``, or their initials until a picture arrives.

    Args:
        mode: how pictures are drawn (``None``: :func:`assist.tui.graphics.detect`).
        pacer: decides which pictures are drawn (default: by the terminal's link).
    """

    DEFAULT_CSS = """
    FaceView { height: 8; width: 100%; }
    FaceView #face-picture { height: 8; width: 100%; display: none; }
    FaceView #face-initials { height: 8; width: 100%; content-align: center middle;
                              text-style: bold; background: $primary-darken-2; }
    FaceView.-live #face-picture { display: block; }
    FaceView.-live #face-initials { display: none; }
    """

    def __init__(self, mode: graphics.Mode | None = None, pacer: FramePacer | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode: graphics.Mode = mode or graphics.detect()
        self.pacer = pacer or FramePacer(link_budget(os.environ))
        self.shown = 0
        """Pictures drawn."""
        self.offered = 0
        """Pictures the call delivered (drawn or skipped)."""
        self.last: Any = None
        """The last picture drawn (a PIL image)."""
        self._preparing = False

    PROBE = 0.05
    """Seconds between two looks at how late the loop runs."""

    def compose(self) -> ComposeResult:
        yield graphics.image_widget(self.mode, "face-picture")
        yield Static("?", id="face-initials", markup=False)

    def on_mount(self) -> None:
        self._arm()

    def _arm(self) -> None:
        # A one-shot timer each time: its lateness is the loop's, not a difference of two.
        self._expected = time.monotonic() + self.PROBE
        self.set_timer(self.PROBE, self._probe)

    def _probe(self) -> None:
        # A loop that is late on this timer is late on the shell's output too.
        self.pacer.late(time.monotonic() - self._expected)
        self._arm()

    def set_agent(self, name: str) -> None:
        """Show ``name``'s initials until their camera sends a picture."""
        self.query_one("#face-initials", Static).update(initials(name))

    def show(self, frame: ReceivedFrame) -> bool:
        """Draw ``frame`` if the pacer allows it now; return whether it was taken.

        The picture is scaled (and for Sixel reduced in colours) in a worker
        thread, then drawn; pictures that come meanwhile are skipped.
        """
        self.offered += 1
        now = time.monotonic()
        if not self.display or self._preparing or not self.pacer.ready(now):
            return False
        target = self.query_one("#face-picture")
        size = target.content_size
        self._preparing = True
        self.pacer.shown(now, graphics.frame_bytes(self.mode, size.width, size.height))
        self.run_worker(self._draw(frame, size.width or 40, size.height or 8),
                        group="face", exclusive=True, exit_on_error=False)
        return True

    async def _draw(self, frame: ReceivedFrame, cols: int, rows: int) -> None:
        try:
            picture = await asyncio.to_thread(graphics.prepare, frame.rgb, self.mode, cols,
                                              rows)
        except Exception as exc:  # one bad picture from the other side must not end the app
            log.info("a picture of the agent could not be drawn: %s", exc)
            return
        finally:
            self._preparing = False
        if not self.is_mounted:
            return
        started = time.thread_time()
        target = self.query_one("#face-picture")
        target.image = picture  # type: ignore[attr-defined]  # textual-image's property
        self.add_class("-live")
        self.last = picture
        self.shown += 1
        # The drawing happens at the next refresh; this thread's CPU time until it is done
        # is what the picture cost the loop (decoding and scaling run in other threads).
        self.call_after_refresh(lambda: self.pacer.drew(time.thread_time() - started))

    def off(self) -> None:
        """No camera (the call ended): the initials again."""
        self.remove_class("-live")
        self.last = None

    @property
    def fps(self) -> float:
        """Pictures drawn a second, lately."""
        return self.pacer.fps(time.monotonic())
