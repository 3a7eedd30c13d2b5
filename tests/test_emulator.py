"""The screen model: snapshots, backlog policy, robustness."""

from __future__ import annotations

import random

from assist.share.emulator import KEEP_TAIL, MAX_BACKLOG, Emulator


def test_snapshot_recreates_the_screen_with_colours_and_cursor() -> None:
    e = Emulator(30, 4)
    e.feed(b"plain \x1b[1;31mbold red\x1b[0m\r\n\x1b[44m blue bg \x1b[0m\r\nend")
    copy = Emulator(30, 4)
    copy.feed(e.snapshot())
    assert copy.text() == e.text()
    assert copy.cells(0)[6] == e.cells(0)[6] and copy.cells(0)[6].fg == "red"
    assert copy.cells(1)[1].bg == "blue"
    assert copy.cursor == e.cursor


def test_private_sgr_and_garbage_never_break_the_screen() -> None:
    e = Emulator(40, 5)
    e.feed(b"\x1b[>4;2m ok")
    rng = random.Random(3)
    e.feed(bytes(rng.getrandbits(8) for _ in range(20000)))
    e.feed(b"\x1b[2J\x1b[Hstill alive")
    assert e.text()[0].startswith("still alive")


def test_backlog_is_bounded_and_keeps_the_tail() -> None:
    e = Emulator(20, 3)
    for i in range(40000):
        e.receive(f"row {i}\r\n".encode())
    assert e.backlog <= MAX_BACKLOG + KEEP_TAIL
    assert e.skipped > 0
    e.feed(b"")
    assert e.text()[-2].startswith("row 39999")
