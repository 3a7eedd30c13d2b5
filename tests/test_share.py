"""Terminal sharing under bulk output, through a real broker."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from assist.broker.server import Broker
from assist.client.share import TerminalShare, TerminalViewer, compile_redactions
from assist.errors import StateError
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from tests.helpers import KeyPair, started_session

COLS, ROWS = 80, 24


async def test_bulk_output_is_capped_and_the_agent_converges_after_it(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    alice, carol, session = await started_session(broker, keys, "bulk", COLS, ROWS)
    emulator = Emulator(COLS, ROWS)
    share = TerminalShare(alice.link.channel, session, emulator)
    viewer = TerminalViewer(session, COLS, ROWS)

    async def pump_user() -> None:
        async for event in alice.events():
            share.handle(event)

    async def pump_agent() -> None:
        async for event in carol.events():
            viewer.handle(event)

    async def frames() -> None:
        # What the terminal views do on both sides: a time-bounded parse per frame.
        while True:
            emulator.process()
            viewer.emulator.process()
            await asyncio.sleep(1 / 30)

    tasks = [asyncio.ensure_future(t()) for t in (pump_user, pump_agent, frames)]
    try:
        total = 0
        for i in range(400):  # about 3 MB in pty-sized chunks, as fast as a shell prints
            chunk = "".join(f"line {i:03d}{j:03d} " + "x" * 60 + "\r\n" for j in range(100))
            share.output(chunk.encode())
            total += len(chunk)
            if i % 10 == 0:
                await asyncio.sleep(0)
        share.output(b"\x1b[1;32mall done\x1b[0m\r\n$ ")
        assert 0 < share.dropped < total  # the cap kicked in, early output went raw
        async with asyncio.timeout(5):
            while emulator.backlog or viewer.emulator.text() != emulator.text():
                await asyncio.sleep(0.02)
        assert viewer.emulator.text()[-2].startswith("all done")
        assert viewer.emulator.cursor == emulator.cursor
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await alice.link.close()
        await carol.link.close()


def test_time_budget_bounds_parsing_and_quiet_frames_catch_up() -> None:
    e = Emulator(80, 24)
    e.receive(b"".join(f"row {i} {'y' * 70}\r\n".encode() for i in range(1500)))
    start = e.backlog
    assert e.process(0.0)  # at least one slice, even with no time left
    assert 0 < e.backlog < start
    e.receive(b"tail\r\n")
    while e.backlog:
        e.process()
    assert e.text()[-2].startswith("tail")


async def test_redaction_holds_across_reads_and_rows(broker: Broker,
                                                     keys: dict[str, KeyPair]) -> None:
    alice, carol, session = await started_session(broker, keys, "secrets", 40, 6)
    emulator = Emulator(40, 6)
    share = TerminalShare(alice.link.channel, session, emulator,
                          redact=compile_redactions([r"tok_[a-z0-9]{20}"]))
    sent: list[bytes] = []

    async def pump_agent() -> None:
        async for event in carol.events():
            if isinstance(event, m.Output | m.Snapshot):
                sent.append(event.data)

    pump = asyncio.ensure_future(pump_agent())
    try:
        secret = "tok_" + "a1b2c3d4e5" * 2
        # Split between two reads of the pty ...
        share.output(f"token: {secret[:9]}".encode())
        share.output(f"{secret[9:]} ok\r\n".encode())
        # ... and, on the screen (snapshots), wrapped over two rows of a 40-column
        # screen with a colour change in the middle.
        emulator.feed(f"{'x' * 30}\x1b[31m{secret[:12]}\x1b[0m{secret[12:]}\r\n$ ".encode())
        share.snapshot()
        await asyncio.sleep(0.5)
        seen = b"".join(sent)
        assert b"[redacted] ok" in seen and b"****" in seen
        assert secret[:9].encode() not in seen and secret[12:].encode() not in seen
    finally:
        pump.cancel()
        await alice.link.close()
        await carol.link.close()


async def test_a_huge_coloured_screen_still_goes_out(broker: Broker,
                                                     keys: dict[str, KeyPair]) -> None:
    alice, carol, session = await started_session(broker, keys, "colours", 300, 80)
    emulator = Emulator(300, 80)
    share = TerminalShare(alice.link.channel, session, emulator)
    cells = "".join(f"\x1b[38;5;{i % 256};48;5;{(i * 7) % 256}m#" for i in range(300 * 79))
    emulator.stream.feed(cells.encode())  # all of it, no skipping to the tail
    got = asyncio.ensure_future(carol.link.wait_for(
        lambda x: isinstance(x, m.Snapshot), 10))
    share.snapshot()  # over the colour limit: sent without colours, not dropped
    picture = await got
    assert isinstance(picture, m.Snapshot) and picture.data.count(b"#") >= 300 * 78
    await alice.link.close()
    await carol.link.close()


async def test_only_connections_watching_a_session_get_its_stream(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    from tests.helpers import agent_client

    alice, carol, session = await started_session(broker, keys, "watchers")
    # The first picture, as the real share answers the broker's first request.
    await alice.link.send(m.Snapshot(session=session, cols=80, rows=24, data=b"$ "))
    script = await agent_client(broker, keys["carol"])  # carol's second connection

    def output(x: m.Msg) -> bool:
        return isinstance(x, m.Output) and b"first" in x.data

    console_sees = asyncio.ensure_future(carol.link.wait_for(output, 5))
    script_sees = asyncio.ensure_future(script.link.wait_for(output, 0.5))
    await alice.link.send(m.Output(session=session, data=b"first line\r\n"))
    await console_sees
    with pytest.raises(StateError):  # nothing came: the script does not watch
        await script_sees
    # A script that asks for a picture watches from then on.
    picture = asyncio.ensure_future(script.link.wait_for(
        lambda x: isinstance(x, m.Resync | m.Snapshot), 5))
    resync = asyncio.ensure_future(alice.link.wait_for(lambda x: isinstance(x, m.Resync), 5))
    await script.resync(session)
    await resync
    await alice.link.send(m.Snapshot(session=session, cols=80, rows=24, data=b"screen"))
    assert isinstance(await picture, m.Snapshot)
    for link in (alice.link, carol.link, script.link):
        await link.close()
