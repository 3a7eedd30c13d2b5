"""Is the program in the user's terminal reading a secret right now?

Echo off alone does not say: line editors (the shell's readline) and
full-screen programs (vim, htop, less, tmux) turn echo off too and draw
what is typed themselves. Measured on each of them in a real pty
(``tests/test_secret_input.py``), the terminal's own settings tell them
apart, with two help lines for the cases they cannot:

* echo off in canonical (line) mode: a password prompt (``sudo``,
  ``getpass``, ``read -s``, ``ssh``'s passphrase prompt);
* echo off in character mode with ECHOK also cleared, outside the alternate
  screen: a secret read key by key (``read -s -n 4``); readline keeps ECHOK,
  and a full-screen program draws in the alternate screen, or is one of
  :data:`SCREEN_PROGRAMS` (``less -X``, ``top``; and ``ssh``/``mosh``, which
  put the terminal in raw mode for a remote shell);
* a program known to ask for secrets in full screen (:data:`SECRET_READERS`,
  ``pinentry-curses``) in the foreground: a secret, whatever the screen.

Wrongly seeing a secret only hides the screen from the agent for a while;
the rules lean that way.
"""

from __future__ import annotations

import os
import termios
from pathlib import Path

SECRET_READERS = frozenset({"pinentry", "pinentry-curses", "pinentry-tty", "pinentry-gnome3",
                            "ssh-askpass", "askpass"})
"""Programs that ask for a secret in a full-screen dialog (echo off, character mode)."""
SCREEN_PROGRAMS = frozenset({"less", "more", "most", "man", "vim", "vi", "nvim", "view",
                             "nano", "emacs", "htop", "top", "btop", "atop", "tmux",
                             "screen", "mc", "watch", "ssh", "mosh-client", "telnet"})
"""Programs that turn echo off for a screen of their own, not to hide what is typed."""


def reads_secret(lflag: int, alternate_screen: bool, programs: frozenset[str]) -> bool:
    """The rule above, from the terminal's local flags, whether the alternate screen is
    in use, and the names of the programs in the foreground process group."""
    if lflag & termios.ECHO:
        return False
    if lflag & termios.ICANON:
        return True
    if any(p.startswith("pinentry") or p in SECRET_READERS for p in programs):
        return True
    if alternate_screen or programs & SCREEN_PROGRAMS:
        return False
    return not lflag & termios.ECHOK


def foreground_programs(fd: int) -> frozenset[str]:
    """Names of the processes in the terminal's foreground process group (Linux /proc)."""
    try:
        group = os.tcgetpgrp(fd)
    except OSError:
        return frozenset()
    names = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        fields = rest.split()
        if len(fields) > 2 and fields[2] == str(group):
            names.add(name)
    return frozenset(names)


ALTERNATE_ON = (b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h")
ALTERNATE_OFF = (b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l")


def alternate_screen(data: bytes, current: bool) -> bool:
    """Whether the alternate screen is in use after ``data`` was written."""
    if b"\x1b[?" not in data:
        return current
    on = max(data.rfind(s) for s in ALTERNATE_ON)
    off = max(data.rfind(s) for s in ALTERNATE_OFF)
    if on == off == -1:
        return current
    return on > off
