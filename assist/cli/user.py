"""``assist help``: ask the helpdesk for help."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
import time
from pathlib import Path

import typer
from rich.live import Live
from rich.text import Text

from assist.cli.app import VERBOSE_OPTION, app, out
from assist.cli.connect import (
    BROKER_OPTION,
    KEY_OPTION,
    YES_OPTION,
    app_config,
    client_config,
    trust_prompt,
)
from assist.client.helpflow import HelpRequest, Status
from assist.config import ClientConfig
from assist.errors import ConfigError, ConnectionFailed
from assist.log import setup


def describe(status: Status, now: float) -> Text:
    """One line telling the user where they stand."""
    if status.phase == "queued":
        waited = int(now - (status.queued_at or now))
        place = f"position {status.position}" if status.position else "in the queue"
        line = Text.assemble(("Waiting for an agent: ", "bold"), place,
                             f", waited {waited // 60}:{waited % 60:02d}",
                             ("  (Ctrl-C leaves the queue)", "dim"))
    elif status.phase == "offered":
        line = Text.assemble(("Agent ", "bold"), (status.agent or "", "bold cyan"),
                             " is joining...")
    elif status.phase == "connected":
        line = Text.assemble(("Connected with ", "bold"), (status.agent or "", "bold cyan"),
                             (" verified by ", "dim"), status.broker,
                             ("  (Ctrl-C ends the session)", "dim"))
    elif status.phase in ("connecting", "reconnecting"):
        line = Text(f"{status.phase.capitalize()} to the helpdesk...", style="yellow")
    else:
        line = Text(status.message or status.phase)
    if status.message and status.phase not in ("ended", "left"):
        line.append(f"\n{status.message}", style="italic")
    return line


@app.command("help")
def help_(
    topic: str | None = typer.Argument(None, help="What you need help with, in a few words."),
    no_tui: bool = typer.Option(False, "--no-tui", help="Plain status lines instead of the app."),
    cmd: str | None = typer.Option(None, "--cmd",
                                   help="Program to share instead of your $SHELL."),
    broker: str | None = BROKER_OPTION,
    key: Path | None = KEY_OPTION,
    yes: bool = YES_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Ask a helpdesk agent for help: join the queue and wait to be answered."""
    setup(verbose)
    if not topic:
        if not sys.stdin.isatty():
            raise ConfigError("say what you need help with: assist help 'vpn will not connect'")
        topic = input("What do you need help with? ").strip()
        if not topic:
            raise ConfigError("a topic is needed so the helpdesk can route you")
    if no_tui:
        asyncio.run(_plain(client_config(broker, key), topic, yes))
        return
    from assist.tui.help_app import HelpApp

    config = app_config(broker, key, yes, "user")
    app_ = HelpApp(config, topic, shlex.split(cmd) if cmd else None, trust_prompt(yes))
    app_.run()
    if app_.error:
        raise ConnectionFailed(app_.error)
    if app_.final is not None and app_.final.phase == "ended":
        out.print("Session ended. Thank you for contacting the helpdesk.")



async def _plain(config: ClientConfig, topic: str, yes: bool) -> None:
    interactive = sys.stdout.isatty()
    live = Live(Text(""), console=out, auto_refresh=False, transient=False) if interactive \
        else None
    last: list[str] = [""]

    def show(status: Status) -> None:
        text = describe(status, time.time())
        if live is not None:
            live.update(text, refresh=True)
        elif text.plain != last[0]:
            last[0] = text.plain
            print(text.plain, flush=True)

    request = HelpRequest(config, topic, show, trust_prompt(yes))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.ensure_future(request.run())
    stopper = asyncio.ensure_future(stop.wait())

    async def tick() -> None:
        while True:
            await asyncio.sleep(1)
            show(request.status)

    ticker = asyncio.ensure_future(tick())
    if live is not None:
        live.start()
    try:
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            final = runner.result()
        else:
            await request.leave()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            final = request.status
    finally:
        ticker.cancel()
        stopper.cancel()
        if live is not None:
            live.stop()
    if final.phase == "ended":
        out.print(f"Session ended ({'resolved' if final.resolved else 'not resolved'}). "
                  "Thank you for contacting the helpdesk.")
        if final.survey and sys.stdin.isatty():
            answer = input("How satisfied are you with the help? 1 (poor) to 5 (great), "
                           "Enter to skip: ").strip()
            if answer in ("1", "2", "3", "4", "5"):
                await request.survey(int(answer))
    elif final.phase == "left":
        out.print("You left the queue.")
    await request.close()
