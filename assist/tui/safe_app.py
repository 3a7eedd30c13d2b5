"""The base of assist's Textual apps: a bug ends the app with one line, never a traceback."""

from __future__ import annotations

import logging

from textual.app import App, ReturnType

log = logging.getLogger(__name__)


class SafeApp(App[ReturnType]):
    """An app whose unexpected errors end it quietly with a message in :attr:`error`.

    The command line prints :attr:`error` as one line. Under a test pilot the
    exception is still recorded and raised by ``run_test`` (Textual keeps it),
    so bugs cannot hide.
    """

    error: str | None = None

    def _fatal_error(self) -> None:
        exc = self._exception
        log.debug("internal error in the app", exc_info=exc)
        self.error = (f"internal error ({type(exc).__name__}: {exc}); please report it with "
                      "what you were doing (-vv shows details)")
        self._close_messages_no_wait()
