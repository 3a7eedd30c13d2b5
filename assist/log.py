"""Logging setup for the command line (library modules only get loggers)."""

from __future__ import annotations

import logging
import sys


def setup(verbose: int = 0, stream: object = None) -> None:
    """Send log records to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("assist")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level)
    # asyncssh logs every connection at INFO; keep it quiet unless asked.
    logging.getLogger("asyncssh").setLevel(logging.WARNING if verbose < 2 else logging.INFO)
    logging.getLogger("asyncssh").addHandler(handler)
