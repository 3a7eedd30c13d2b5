"""Terminal sharing under bulk output, through a real broker."""

from __future__ import annotations

import asyncio
import contextlib

from assist.broker.server import Broker
from assist.client.share import TerminalShare, TerminalViewer
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
