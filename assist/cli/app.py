"""The Typer application object and shared command-line helpers."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="assist",
    help=(
        "Live remote help for terminals. A user runs `assist help`, a helpdesk agent "
        "answers from `assist console`, both through the `assist serve` broker."
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion and --show-completion for the shell
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DB_OPTION = typer.Option(
    None, "--db", metavar="PATH|URL",
    help="Broker store: a SQLite file or a postgresql:// URL (default: the broker's).")


JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
VERBOSE_OPTION = typer.Option(0, "--verbose", "-v", count=True,
                              help="Log more (-v info, -vv debug) to stderr.")


def reader_gone() -> None:
    """Stdout's reader went away (``| head``): what it wanted, it has. Whatever is
    still buffered goes nowhere, so nothing fails again when Python exits."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def print_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout (a reader that stops early, such
    as ``| head``, ends the command quietly, exit 0, as plain output does)."""
    try:
        print(json.dumps(data, indent=2, sort_keys=True, default=str), flush=True)
    except BrokenPipeError:
        reader_gone()
        raise typer.Exit(0) from None
