"""The base of assist's Textual apps: a bug ends the app with one line, never a traceback,
and a notification shows what someone wrote as text."""

from __future__ import annotations

import logging

from textual.app import App, ReturnType
from textual.notifications import SeverityLevel

from assist.core.text import shown

log = logging.getLogger(__name__)


class SafeApp(App[ReturnType]):
    """An app whose unexpected errors end it quietly with a message in :attr:`error`.

    The command line prints :attr:`error` as one line. Under a test pilot the
    exception is still recorded and raised by ``run_test`` (Textual keeps it),
    so bugs cannot hide.
    """

    error: str | None = None

    def __init__(self) -> None:
        # The shared terminal's 16 palette colours reach this terminal as ANSI
        # colours (the person's own palette, as in tmux), not the theme's hues.
        super().__init__(ansi_color=True)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Show a toast. Messages quote names, topics and errors from the other side,
        so they are text (no markup, nothing but printable characters) unless a
        caller asks for markup."""
        if not markup:
            message, title = shown(message), shown(title)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _fatal_error(self) -> None:
        exc = self._exception
        log.debug("internal error in the app", exc_info=exc)
        self.error = (f"internal error ({type(exc).__name__}: {exc}); please report it with "
                      "what you were doing (-vv shows details)")
        self._close_messages_no_wait()
