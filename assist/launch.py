"""The ``assist`` executable: Ctrl-C is a quiet exit from its very first moment.

Loading the command line takes a moment (Textual, asyncssh, aiortc); a Ctrl-C
then, or while the commands are assembled, must end the process like one
during a command does, not with a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the ``assist`` command line (the console script and ``python -m assist``)."""
    try:
        from assist.cli import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
