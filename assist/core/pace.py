"""How often a moving picture may be redrawn in a terminal without slowing it.

A picture in a terminal costs bytes on the terminal's link (a lot over SSH)
and time on the loop that draws it (the same loop that shows the shell). A
:class:`FramePacer` turns both into the wait before the next picture::

    pacer = FramePacer(budget=link_budget(os.environ))
    if pacer.ready(now):
        draw(frame)
        pacer.shown(now, cost=bytes_written)
        ...                        # once it is on the screen:
        pacer.drew(took=seconds_the_loop_spent_drawing)

The wait is the largest of: one frame at the top rate, the frame's bytes at
the link's budget, and the drawing time over the share of the loop a picture
may take; never longer than a frame at the bottom rate. On top of that, a
loop that runs late (:meth:`FramePacer.late`: the shell's output waits) backs
the rate off at once and lets it recover slowly. Pure: times and sizes come
from the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

MAX_FPS = 30.0
MIN_FPS = 1.0
LOOP_SHARE = 0.2
"""At most this share of the drawing loop goes to pictures."""
SSH_BUDGET = 256 * 1024
"""Bytes a second for pictures on a terminal reached over SSH."""
LOCAL_BUDGET = 8 * 1024 * 1024
"""Bytes a second for pictures on a local terminal."""
SMOOTHING = 0.3
"""Weight of the newest frame in the cost estimates."""
LATE = 0.010
"""A loop later than this (seconds) is busy: pictures slow down."""
BACK_OFF = 1.5
RECOVER = 0.95
MAX_SLOWDOWN = 30.0


def link_budget(env: Mapping[str, str]) -> float:
    """The byte budget of the terminal's link: small if the session came over SSH."""
    remote = env.get("SSH_CONNECTION") or env.get("SSH_TTY") or env.get("SSH_CLIENT")
    return float(SSH_BUDGET if remote else LOCAL_BUDGET)


class FramePacer:
    """Decides when the next picture may be drawn.

    Args:
        budget: bytes a second the terminal's link may spend on pictures.
        max_fps: the top rate.
        min_fps: the bottom rate (a picture is never older than this).
    """

    def __init__(self, budget: float = LOCAL_BUDGET, max_fps: float = MAX_FPS,
                 min_fps: float = MIN_FPS) -> None:
        self.budget = budget
        self.max_fps = max_fps
        self.min_fps = min_fps
        self.next_at = 0.0
        self.cost = 0.0
        """Bytes per picture (smoothed)."""
        self.took = 0.0
        """Seconds to draw a picture (smoothed)."""
        self.slowdown = 1.0
        """Factor on the wait while the loop runs late."""
        self._shown: deque[float] = deque(maxlen=128)
        self._drawn = 0

    def ready(self, now: float) -> bool:
        """A picture may be drawn now.

        A little early counts: pictures arrive at the camera's own rate with some
        jitter, and one a hair early must not wait for the next (halving the rate).
        """
        return now >= self.next_at - 0.25 / self.max_fps

    def interval(self) -> float:
        """The wait between pictures that the current costs allow."""
        wait = max(1.0 / self.max_fps, self.cost / self.budget, self.took / LOOP_SHARE)
        return min(wait * self.slowdown, 1.0 / self.min_fps)

    def late(self, seconds: float) -> None:
        """The loop ran ``seconds`` behind a timer: back off if that is too much."""
        if seconds > LATE:
            self.slowdown = min(MAX_SLOWDOWN, self.slowdown * BACK_OFF)
        else:
            self.slowdown = max(1.0, self.slowdown * RECOVER)

    def shown(self, now: float, cost: float, took: float | None = None) -> None:
        """A picture was handed over for drawing at ``now``: ``cost`` bytes, and
        ``took`` seconds of the loop if already known (else :meth:`drew` says it)."""
        self.cost = float(cost) if not self._shown else \
            self.cost + SMOOTHING * (cost - self.cost)
        self._shown.append(now)
        if took is not None:
            self.drew(took)
        self.next_at = now + self.interval()

    def drew(self, took: float) -> None:
        """The last picture cost the loop ``took`` seconds to draw."""
        self.took = float(took) if not self._drawn else \
            self.took + SMOOTHING * (took - self.took)
        self._drawn += 1
        if self._shown:
            self.next_at = max(self.next_at, self._shown[-1] + self.interval())

    def fps(self, now: float, window: float = 2.0) -> float:
        """Pictures drawn per second over the last ``window`` seconds."""
        return sum(1 for t in self._shown if now - t <= window) / window
