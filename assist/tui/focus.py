"""Moving the focus at once."""

from __future__ import annotations

from textual.widget import Widget


def focus_now(widget: Widget) -> None:
    """Focus ``widget`` immediately.

    ``Widget.focus()`` defers the change, so keys already queued behind the
    key that asked for it (typing right after F2, say) would still go to the
    old widget: the shell would receive the chat line.
    """
    widget.screen.set_focus(widget)
