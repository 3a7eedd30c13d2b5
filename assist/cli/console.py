"""``assist console``: the agent's console app."""

from __future__ import annotations

from pathlib import Path

from assist.cli.app import VERBOSE_OPTION, app
from assist.cli.connect import BROKER_OPTION, KEY_OPTION, YES_OPTION, app_config, trust_prompt
from assist.errors import ConnectionFailed
from assist.log import setup


@app.command("console")
def console(
    broker: str | None = BROKER_OPTION,
    key: Path | None = KEY_OPTION,
    yes: bool = YES_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Open the agent console: queue, live view of the user's terminal, chat, end."""
    setup(verbose)
    from assist.tui.console_app import ConsoleApp

    app_ = ConsoleApp(app_config(broker, key, yes, "agent"), trust_prompt(yes))
    app_.run()
    if app_.error:
        raise ConnectionFailed(app_.error)

