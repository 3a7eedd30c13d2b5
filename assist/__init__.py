"""assist: live remote help for terminals.

A person types ``assist help``; a helpdesk agent working from ``assist console``
joins them through the ``assist serve`` broker, sees their terminal, talks to
them and, only with their revocable permission, types for them.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# Library code never configures logging; the CLI does.
logging.getLogger(__name__).addHandler(logging.NullHandler())
