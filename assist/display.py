"""What the front ends print: text someone gave, shown as text.

A topic, a chat line, a note, a name or an error quoting any of them is put
on a person's terminal by the command line (Rich) and the apps (Textual).
:func:`said` makes a Rich :class:`~rich.text.Text` of it: never parsed as
markup (``[link=...]``, ``[@click=...]``), and holding printable characters
only (:func:`assist.core.text.shown`), so no escape sequence reaches the
terminal whatever the broker let through.
"""

from __future__ import annotations

from rich.text import Text

from assist.core.text import shown


def said(*parts: str | tuple[str, str]) -> Text:
    """A line that holds what someone gave (a topic, a chat line, a note, a name).

    Each part is shown as text, never as markup or terminal control. A
    ``(text, style)`` part is styled.
    """
    return Text.assemble(*(shown(p) if isinstance(p, str) else (shown(p[0]), p[1])
                           for p in parts))
