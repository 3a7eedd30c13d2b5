"""``assist queue``: who is waiting for help (agents only)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.table import Table

from assist.cli.app import JSON_OPTION, VERBOSE_OPTION, app, out, print_json
from assist.cli.connect import BROKER_OPTION, KEY_OPTION, YES_OPTION, client_config, trust_prompt
from assist.client import AgentClient
from assist.display import said
from assist.log import setup
from assist.protocol import messages as m


def format_wait(seconds: float) -> str:
    """``m:ss`` for a wait time."""
    total = max(0, int(seconds))
    return f"{total // 60}:{total % 60:02d}"


@app.command("queue")
def queue(
    broker: str | None = BROKER_OPTION,
    key: Path | None = KEY_OPTION,
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Show who is waiting for help (agents only)."""
    setup(verbose)
    listing = asyncio.run(_queue(broker, key, yes))
    if as_json:
        print_json({
            "now": listing.now,
            "entries": [
                {"session": e.session, "user": e.user, "topic": e.topic,
                 "position": e.position, "queued_at": e.queued_at,
                 "waited": round(listing.now - e.queued_at, 3), "requeued": e.requeued,
                 "online": e.online, "registered": e.registered}
                for e in listing.entries
            ],
        })
        return
    if not listing.entries:
        out.print("nobody is waiting")
        return
    table = Table(title=f"Queue ({len(listing.entries)} waiting) at {time.strftime('%H:%M:%S')}")
    for column in ("#", "session", "user", "topic", "wait", "note"):
        table.add_column(column)
    for e in listing.entries:
        notes = [n for n, on in (("back from a dropped agent", e.requeued),
                                 ("reconnecting", not e.online),
                                 ("unregistered key", not e.registered)) if on]
        table.add_row(str(e.position), e.session, said(e.user), said(e.topic),
                      format_wait(listing.now - e.queued_at), ", ".join(notes))
    out.print(table)


async def _queue(broker: str | None, key: Path | None, yes: bool) -> m.QueueList:
    async with await AgentClient.connect(client_config(broker, key), "assist queue",
                                         trust=trust_prompt(yes)) as client:
        return await client.queue()


