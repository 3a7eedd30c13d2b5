"""The screen model: snapshots, backlog policy, robustness."""

from __future__ import annotations

import random
import re

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


def test_wide_characters_take_two_cells_in_the_screen_and_in_a_snapshot() -> None:
    e = Emulator(20, 3)
    e.feed("中文字符x\r\n".encode() + "🙂 e\u0301 ok".encode())
    cells = e.cells(0)
    assert [c.char for c in cells[:9]] == ["中", "", "文", "", "字", "", "符", "", "x"]
    picture = e.snapshot()
    assert "中文字符x".encode() in picture  # no space drawn for the second halves
    copy = Emulator(20, 3)
    copy.feed(picture)
    assert copy.text() == e.text() and copy.cells(0) == cells
    assert copy.cells(1)[3].char == "é"  # a combining mark stays on its letter
    masked = Emulator(20, 3)
    masked.feed(e.snapshot([re.compile("文字")]))
    assert masked.text()[0].startswith("中****符x")


def test_every_attribute_is_kept_and_palette_colours_stay_palette_colours() -> None:
    e = Emulator(40, 2)
    e.feed(b"\x1b[2ma\x1b[22mb\x1b[9mc\x1b[29m\x1b[5md\x1b[25m\x1b[8me\x1b[28m"
           b"\x1b[38;5;1mf\x1b[38;5;9mg\x1b[31mh\x1b[38;5;1;32mi\x1b[38;5;196mj"
           b"\x1b[38;2;1;2;3mk\x1b[0m\x1b[105ml\x1b[48;5;4mm\x1b[0m\x1b[1;2mn\x1b[0mo")
    c = {cell.char: cell for cell in e.cells(0) if cell.char.strip()}
    assert c["a"].dim and not c["b"].dim and c["c"].strike and c["d"].blink
    assert c["e"].invisible and not c["f"].invisible
    assert (c["f"].fg, c["g"].fg, c["h"].fg, c["i"].fg) == ("red", "brightred", "red", "green")
    assert c["j"].fg == "color(196)" and c["k"].fg == "010203"
    assert c["l"].bg == "brightmagenta" and c["m"].bg == "blue"
    assert c["n"].bold and c["n"].dim and not (c["o"].bold or c["o"].dim)
    copy = Emulator(40, 2)
    copy.feed(e.snapshot())
    assert copy.cells(0) == e.cells(0)


def test_erasing_leaves_only_the_background_as_xterm_and_tmux_do() -> None:
    e = Emulator(20, 3)
    e.feed(b"\x1b[1;31;42mab\x1b[K\r\n\x1b[4;44mcd\x1b[3X\r\n\x1b[7;45m\x1b[J")
    erased = e.cells(0)[5]
    assert (erased.char, erased.fg, erased.bg, erased.bold) == (" ", "default", "green", False)
    assert e.cells(1)[3].bg == "blue" and not e.cells(1)[3].underscore
    assert e.cells(2)[4].bg == "magenta" and not e.cells(2)[4].reverse
    assert e.cells(0)[1].bold and e.cells(0)[1].fg == "red"  # what was drawn stays


def test_runs_say_what_the_cells_say() -> None:
    e = Emulator(30, 3)
    e.feed("ab\x1b[1;31mcd\x1b[2;44m中e\u0301\x1b[0m f\x1b[9;38;5;200mgh\x1b[0m".encode())
    for y in range(3):
        # Each character of the runs, with the attributes of its run, in order.
        stream = [(ch, attrs) for text, attrs in e.runs(y) for ch in text]
        at = 0
        for cell in e.cells(y):
            for ch in cell.char:  # "" for a wide character's second half
                got, attrs = stream[at]
                at += 1
                assert got == ch
                assert attrs == (cell.fg, cell.bg, cell.bold, cell.dim, cell.italics,
                                 cell.underscore, cell.blink, cell.reverse, cell.invisible,
                                 cell.strike)
        assert at == len(stream)


def test_scrolling_the_region_up_and_down_as_htop_does() -> None:
    e = Emulator(10, 5)
    e.feed(b"a\r\nb\r\nc\r\nd\r\ne\x1b[2;4r\x1b[1T")  # the region is rows 2-4
    assert [line.strip() for line in e.text()] == ["a", "", "b", "c", "e"]
    e.feed(b"\x1b[r\x1b[2S")  # the whole screen up two
    assert [line.strip() for line in e.text()] == ["b", "c", "e", "", ""]
    e.feed(b"\x1b[1;2;3;4;5T")  # mouse highlighting, not a scroll
    assert [line.strip() for line in e.text()] == ["b", "c", "e", "", ""]
