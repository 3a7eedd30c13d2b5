"""Text one person gives and another sees: shown as text, never as terminal control.

A topic, a chat line, a note, a root cause or a mark's label may reach the
other party's terminal. Control characters (C0 and C1), escape sequences,
bidirectional overrides and the like could move that terminal's cursor,
change its title, write its clipboard (OSC 52) or disguise what is written,
so they are taken out where the text enters the broker; what stays is one
line of printable characters.

Pure.
"""

from __future__ import annotations


def printable(text: str, limit: int = 200) -> str:
    """``text`` without anything that is not printable (controls, ESC, format
    characters such as bidi overrides), at most ``limit`` characters."""
    return "".join(ch for ch in text if ch.isprintable())[:limit]


def one_line(text: str, limit: int = 200) -> str:
    """``text`` as one line of printable characters, runs of white space folded."""
    return printable(" ".join(text.split()), limit)


def shown(text: str) -> str:
    """``text`` as a front end may put it on a terminal: printable characters and
    line breaks, a tab as a space; nothing else (no ESC, C0/C1, bidi overrides).

    The broker cleans what enters it already; every display point cleans again,
    so a broker that did not (an older one, a bug) still cannot reach the
    terminal of the person reading.
    """
    return "".join(ch if ch.isprintable() or ch == "\n" else " " if ch == "\t" else ""
                   for ch in text)
