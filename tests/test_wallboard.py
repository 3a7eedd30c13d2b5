"""The console's live wallboard: colour rules (pure) and real figures from a real broker."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from assist.broker import views
from assist.broker.server import Broker
from assist.protocol import messages as m
from assist.tui.console_app import ConsoleApp
from assist.tui.wallboard import (
    BAD,
    GOOD,
    QUIET,
    WARN,
    WallboardStrip,
    service_style,
    staffing_style,
    wait_style,
    wallboard_text,
)
from tests.helpers import KeyPair, agent_client, until, user_client
from tests.test_tui import client_config


def board(**changes: object) -> m.Wallboard:
    figures: dict[str, object] = {"queue_length": 3, "longest_wait": 12.0,
                                  "answered_within": 26, "settled": 30,
                                  "agents_available": 2, "target": 15.0, "now": 1000.0}
    figures.update(changes)
    return m.Wallboard(**figures)  # type: ignore[arg-type]


def style_of(text: Text, fragment: str) -> str:
    start = text.plain.index(fragment)
    for span in text.spans:
        if span.start <= start < span.end:
            return str(span.style)
    return ""


def test_colours_follow_the_15_second_target() -> None:
    assert wait_style(None, 15) == QUIET
    assert wait_style(5, 15) == GOOD
    assert wait_style(11, 15) == WARN
    assert wait_style(15, 15) == BAD
    assert service_style(0, 0) == QUIET
    assert service_style(8, 10) == GOOD
    assert service_style(7, 10) == WARN
    assert service_style(5, 10) == BAD
    assert staffing_style(0, 0) == QUIET
    assert staffing_style(2, 2) == GOOD
    assert staffing_style(3, 1) == WARN
    assert staffing_style(1, 0) == BAD


def test_the_strip_reads_like_a_wallboard_and_the_wait_ticks() -> None:
    text = wallboard_text(board())
    assert text.plain == (" Queue 3  │  Longest wait 0:12  │  Answered ≤15 s today 87% (26/30)"
                          "  │  Agents available 2")
    assert style_of(text, "0:12") == WARN  # 12 s of a 15 s target
    assert style_of(text, "87%") == GOOD
    later = wallboard_text(board(), elapsed=4.2)
    assert "Longest wait 0:16" in later.plain and style_of(later, "0:16") == BAD
    quiet = wallboard_text(board(queue_length=0, longest_wait=None, settled=0,
                                 answered_within=0))
    assert "Longest wait -" in quiet.plain and "(none settled yet)" in quiet.plain
    out = Console(file=None, width=120, record=True, color_system="truecolor")
    out.print(text)
    assert "87%" in out.export_text()


async def test_the_console_shows_live_figures_from_the_broker(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "WALLBOARD_EVERY", 0.3)  # push often: keep the test short
    # Today so far: one contact answered at once and settled.
    alice = await user_client(broker, keys["alice"])
    dave = await agent_client(broker, keys["dave"])
    await dave.set_status("available")
    queued = await alice.join("printer")
    offered = asyncio.ensure_future(alice.link.wait_for(lambda x: isinstance(x, m.Offered), 5))
    accepting = asyncio.ensure_future(dave.accept(queued.session))
    await offered
    await alice.ready()
    await accepting
    await dave.end(queued.session, "paper jam")
    await dave.link.close()
    await alice.link.close()
    # Now one person waits.
    bob = await user_client(broker, keys["bob"])
    await bob.join("vpn")

    app = ConsoleApp(client_config(broker, keys["carol"], tmp_path))
    async with app.run_test(size=(140, 30)):
        strip = app.query_one(WallboardStrip)
        await until(lambda: "Agents available 1" in strip.text)
        assert "Queue 1" in strip.text
        assert "Answered ≤15 s today 100% (1/1)" in strip.text
        first = strip.text
        await asyncio.sleep(1.1)
        assert strip.text != first, "the longest wait ticks"
        assert strip.board is not None and strip.board.queue_length == 1
    await bob.link.close()


@pytest.mark.slow
async def test_json_events_report_the_whole_session(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assist", "help", "wifi", "--json-events", "--broker",
        f"127.0.0.1:{broker.port}", "--key", str(keys["alice"].private), "--yes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    events: list[dict[str, object]] = []

    async def next_event(kind: str, **fields: object) -> dict[str, object]:
        async with asyncio.timeout(15):
            while True:
                line = await proc.stdout.readline()  # type: ignore[union-attr]
                assert line, "assist help exited early"
                event = json.loads(line)
                events.append(event)
                if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event

    try:
        await next_event("status", phase="queued")
        carol = await agent_client(broker, keys["carol"])
        info = await carol.accept()
        await next_event("status", phase="connected", agent="carol")
        await carol.link.send(m.Chat(session=info.session, text="hello alice"))
        chat = await next_event("chat")
        assert (chat["sender"], chat["text"]) == ("carol", "hello alice")
        await carol.ask_grant(info.session, "annotate", 60)
        grant = await next_event("grant-asked")
        assert (grant["scope"], grant["seconds"], grant["agent"]) == ("annotate", 60, "carol")
        await carol.verify(info.session, "key")
        assert (await next_event("verified"))["ok"] is True
        await carol.end(info.session, "wifi driver")
        end = await next_event("end")
        assert end["phase"] == "ended" and end["resolved"] is True
        assert all(isinstance(e["at"], float) for e in events)
        await carol.link.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
