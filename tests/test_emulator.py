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


def test_lines_written_while_a_secret_is_read_never_leave_in_a_snapshot() -> None:
    emulator = Emulator(40, 6)
    emulator.feed(b"$ mysql -p\r\nEnter password: ")
    emulator.receive(b"\r\nyour token is hunter2-XYZ\r\n", hidden=True)
    emulator.receive(b"mysql> ")
    emulator.feed(b"")
    assert any("hunter2" in line for line in emulator.text()), "the user sees it"
    picture = emulator.snapshot()
    assert b"hunter2" not in picture and b"mysql> " in picture
    assert b"Enter password" in picture, "lines before the secret stay"
    # Scrolling does not make the line clean, nor text drawn over part of it.
    emulator.feed(b"\r\n" * 3 + b"\x1b[2;1Hover")
    assert b"hunter2" not in emulator.snapshot() and emulator.hidden_lines
    # Wiping it (a clear, a redrawn line) does.
    emulator.feed(b"\x1b[H\x1b[2Jfresh screen\r\n")
    assert emulator.hidden_lines == set() and b"fresh screen" in emulator.snapshot()


def test_hidden_output_stays_marked_through_a_skipped_backlog() -> None:
    emulator = Emulator(40, 6)
    emulator.receive(b"x" * 200_000 + b"\r\n")  # more than the backlog keeps
    emulator.receive(b"secret: p4ssw0rd\r\n", hidden=True)
    emulator.feed(b"")
    assert b"p4ssw0rd" not in emulator.snapshot()
