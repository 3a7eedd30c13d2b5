"""The live wallboard of the console: how the helpdesk is doing right now.

The broker pushes :class:`~assist.protocol.messages.Wallboard` figures to
every agent (on hello and every few seconds). The strip shows them, with the
longest wait ticking between pushes, each figure coloured against the
service-level target (answered within 15 s): green on target, yellow close
to missing it, red missing it. The colour rules are pure functions
(:func:`wallboard_text`), so they are tested without an app.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from assist.protocol import messages as m

GOOD, WARN, BAD, QUIET = "bold green", "bold yellow", "bold red", "dim"
SERVICE_GOAL = 0.8
"""Share of contacts answered within the target that counts as on target."""
SERVICE_WARN = 0.6
WAIT_WARN = 2 / 3
"""A wait beyond this fraction of the target is close to missing it."""


def clock(seconds: float) -> str:
    """``m:ss``."""
    total = max(0, int(seconds))
    return f"{total // 60}:{total % 60:02d}"


def wait_style(wait: float | None, target: float) -> str:
    """Colour of the longest wait: green well within the target, red beyond it."""
    if wait is None:
        return QUIET
    if wait >= target:
        return BAD
    return WARN if wait >= target * WAIT_WARN else GOOD


def service_style(hits: int, total: int) -> str:
    """Colour of the share answered within the target today."""
    if total == 0:
        return QUIET
    share = hits / total
    if share >= SERVICE_GOAL:
        return GOOD
    return WARN if share >= SERVICE_WARN else BAD


def staffing_style(queue: int, available: int) -> str:
    """Colour of the agents available against the people waiting."""
    if queue == 0:
        return GOOD if available else QUIET
    if available == 0:
        return BAD
    return GOOD if available >= queue else WARN


def wallboard_text(board: m.Wallboard, elapsed: float = 0.0) -> Text:
    """The wallboard in one line; ``elapsed`` seconds passed since it was received.

    The longest wait keeps counting up by ``elapsed`` (the person waiting is
    still waiting); the other figures change only with the next push.
    """
    wait = None if board.longest_wait is None else board.longest_wait + max(0.0, elapsed)
    target = int(board.target) if board.target == int(board.target) else board.target
    queue_style = staffing_style(board.queue_length, board.agents_available)
    if board.settled:
        share = f"{100 * board.answered_within / board.settled:.0f}%"
        count = f" ({board.answered_within}/{board.settled})"
    else:
        share, count = "-", " (none settled yet)"
    return Text.assemble(
        " Queue ", (str(board.queue_length), queue_style),
        "  │  Longest wait ", (clock(wait) if wait is not None else "-",
                              wait_style(wait, board.target)),
        f"  │  Answered ≤{target} s today ",
        (share, service_style(board.answered_within, board.settled)), count,
        "  │  Agents available ", (str(board.agents_available), queue_style),
    )


class WallboardStrip(Static):
    """One line of live helpdesk figures; feed it with :meth:`show`."""

    DEFAULT_CSS = """
    WallboardStrip { height: auto; background: $boost; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(" Wallboard: waiting for the broker's figures...",
                         **kwargs)  # type: ignore[arg-type]
        self.board: m.Wallboard | None = None
        self._received = 0.0

    def on_mount(self) -> None:
        # The longest wait ticks every second even when no push arrives.
        self.set_interval(1.0, self._redraw)

    def show(self, board: m.Wallboard) -> None:
        """New figures from the broker."""
        self.board = board
        self._received = time.monotonic()
        self._redraw()

    @property
    def text(self) -> str:
        """The strip as plain text (what a person reads)."""
        if self.board is None:
            return ""
        return wallboard_text(self.board, time.monotonic() - self._received).plain

    def _redraw(self) -> None:
        if self.board is not None:
            self.update(wallboard_text(self.board, time.monotonic() - self._received))
