"""``assist bot FLOWS``: a first-line agent that runs flows for matching topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import typer

from assist.cli.app import JSON_OPTION, VERBOSE_OPTION, app, out
from assist.cli.connect import BROKER_OPTION, KEY_OPTION, YES_OPTION, client_config, trust_prompt
from assist.client import AgentClient
from assist.client.bot import Bot, Outcome, load_flows
from assist.display import said
from assist.log import setup


@app.command("bot")
def bot(
    flows: Path = typer.Argument(..., help="Flows file (YAML): runbooks with a `match` "
                                           "pattern over the help topic."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds a step waits for the user."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Serve waiting users whose topic a flow matches; hand the rest to humans.

    Runs as an agent (register its key with `assist agents add`). A user whose
    flow cannot finish goes to the front of the queue for a human. Report the
    automation rate with `assist report --bot NAME`. Ctrl-C stops.
    """
    setup(verbose)
    books = load_flows(flows)
    config = [client_config(broker, key)]

    async def connect(watch: bool) -> AgentClient:
        client = await AgentClient.connect(config[0], "assist bot", watch=watch,
                                           trust=trust_prompt(yes))
        assert client.config is not None
        config[0] = client.config  # pinned on first contact: the next ones need not ask
        return client

    def show(outcome: Outcome) -> None:
        if as_json:
            print(json.dumps(outcome.__dict__), flush=True)
        elif outcome.handled:
            out.print(said(("handled", "green"),
                           f" {outcome.user} ({outcome.topic}) with {outcome.flow}"))
        else:
            out.print(said(("handed to a human", "yellow"),
                           f" {outcome.user} ({outcome.topic}): {outcome.reason}"))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if not as_json:
            out.print(said(f"bot serving {len(books)} flow(s): "
                           + ", ".join(b.name for b in books) + " · Ctrl-C stops"))
        await Bot(connect, books, show, timeout).run(stop)

    asyncio.run(main())
