"""The ``assist`` command line.

Every command converts failures into :class:`~assist.errors.AssistError` and
:func:`main` prints its message (as JSON with ``--json``); no traceback ever
reaches the person at the terminal.
"""

from __future__ import annotations

import json
import logging
import sys

import typer

from assist.cli import (
    admin,
    agent,
    bot,
    console,
    demo,
    doctor,
    invite,
    queue,
    replay,
    report,
    serve,
    user,
)
from assist.cli.app import app, err
from assist.cli.runtime import use_fast_loop
from assist.display import said
from assist.errors import AssistError

__all__ = ["app", "main"]

# Registration happens by import; keep the names used so linters see why.
_COMMANDS = (admin, agent, bot, console, demo, doctor, invite, queue, replay, report, serve,
             user)


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as shells report it)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``assist`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if argv is None:  # a real process (tests call main with a list, on their own loop)
        use_fast_loop()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="assist", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    except typer.TyperException as exc:
        # Usage mistakes (Typer's own click): its message and usage line, exit 2.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(str(exc), markup=False)
        code = getattr(exc, "exit_code", 2)
    except AssistError as exc:
        if "--json" in args:
            print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        else:
            err.print(said(("assist: ", "bold red"), exc.message))
        code = 1
    except Exception as exc:
        # A bug: still no traceback for the person, but enough to report it.
        logging.getLogger("assist").debug("internal error", exc_info=True)
        details = " (-vv shows details)" if _takes_verbose(command, args) else ""
        message = (f"internal error ({type(exc).__name__}: {exc}); please report it "
                   f"with the command you ran{details}")
        if "--json" in args:
            print(json.dumps({"error": {"code": "internal", "message": message}}))
        else:
            err.print(said(("assist: ", "bold red"), message))
        code = 70
    if code == INTERRUPTED:
        # Typer turns a Ctrl-C into this exit code without a word; no command of
        # assist's exits with it otherwise.
        err.print("interrupted")
    sys.exit(code if isinstance(code, int) else 0)


def _takes_verbose(command: object, args: list[str]) -> bool:
    """Whether the command ``args`` name has ``-v`` (so -vv can be suggested)."""
    for arg in args:
        commands = getattr(command, "commands", None)
        if not isinstance(commands, dict) or arg not in commands:
            break
        command = commands[arg]
    params = getattr(command, "params", ())
    return any(getattr(p, "name", "") == "verbose" for p in params)
