"""What acts on the viewer's terminal is taken out of replayed output; what draws stays."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assist.core.host_sequences import MAX_CSI, HostFilter, drawn

DRAWS = [
    b"plain text\r\n",
    b"\x1b[31mred\x1b[0m \x1b[38;5;196mx\x1b[48;2;1;2;3my",
    b"\x1b[?1049h\x1b[H\x1b[2J\x1b[?25l\x1b[10;20Hvim\x1b[?1049l",
    b"\x1b(B\x1b)0\x1b7\x1b8\x1b=\x1b>",
    "caf\u00e9 \u00b0 \u00a9 \u4e2d\u6587 \u00a0".encode(),
    b"\x1b[1 q\x1b[4:3m",  # cursor shape, curly underline
]
ACTS = [
    b"\x1b]52;c;ZWNobyBwd25lZA==\x07",  # clipboard
    b"\x1b]52;c;ZWNobw==\x1b\\",
    b"\x1b]0;title\x07", b"\x1b]2;title\x1b\\", b"\x1b]1;icon\x07",
    b"\x1b]8;;http://example.invalid\x07link\x1b]8;;\x07",
    b"\x1b]4;1;rgb:ff/00/00\x07", b"\x1b]11;?\x07",
    b"\x1bP+q544e\x1b\\", b"\x1bP1$qm\x1b\\",  # DCS queries
    b"\x1b_apc\x1b\\", b"\x1b^pm\x1b\\", b"\x1bXsos\x1b\\",
    b"\x1b[6n", b"\x1b[5n", b"\x1b[c", b"\x1b[>0c", b"\x1b[=c", b"\x1b[14t", b"\x1b[22;0t",
    b"\x1b[?2026$p", b"\x1b[x",
    "\u009d52;c;QQ==\u009c".encode(),  # the same in C1 form, UTF-8 encoded
    "\u009b6n".encode(), "\u0090qm\u009c".encode(),
]


@pytest.mark.parametrize("data", DRAWS)
def test_what_draws_passes_unchanged(data: bytes) -> None:
    assert HostFilter().feed(data) == data


@pytest.mark.parametrize("data", ACTS)
def test_what_acts_on_the_terminal_is_dropped(data: bytes) -> None:
    out = HostFilter().feed(b"a" + data + b"b")
    assert out in (b"ab", b"alinkb")


def test_a_string_cut_short_is_dropped_to_its_end_and_bounded() -> None:
    f = HostFilter()
    assert f.feed(b"x\x1b]52;c;" + b"A" * 1_000_000) == b"x"
    assert f.feed(b"B" * 1000 + b"\x07y") == b"y"
    # CAN aborts a string, as in a terminal.
    assert HostFilter().feed(b"\x1b]2;t\x18z") == b"z"


def test_an_overlong_control_sequence_is_dropped_whole() -> None:
    f = HostFilter()
    assert f.feed(b"\x1b[" + b"1;" * MAX_CSI + b"6n" + b"after") == b"after"


def test_controls_inside_a_sequence_cannot_smuggle_a_query() -> None:
    # A terminal runs the LF and still takes "6n" as the final of the same sequence.
    assert b"6n" not in HostFilter().feed(b"\x1b[6\nn")
    assert HostFilter().feed(b"\x1b[31\nm") == b"\x1b[31\nm"


@given(st.lists(st.sampled_from(DRAWS + ACTS + [b"\x1b", b"\xc2", b"\xc2\x9d", b"[", b"\x07",
                                                 b"\\", b"6n", b"text", b"\x9d", b"\xc2\xa0",
                                                 b"\xc2\x90", b"q"]), max_size=30),
       st.lists(st.integers(0, 400), max_size=8))
def test_any_split_gives_the_same_result(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole = HostFilter().feed(data)
    f = HostFilter()
    pieces, at = [], 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        pieces.append(f.feed(data[at:cut]))
        at = cut
    pieces.append(f.feed(data[at:]))
    assert b"".join(pieces) == whole
    for act in (b"\x1b]52", b"\x1b]2;", b"\x1b[6n", b"\xc2\x9d"):
        assert act not in whole


def test_text_loses_bidi_overrides_and_zero_width_characters() -> None:
    text = "abc\u202eevil\u202c \u2066x\u2069\u200b\ufeff \u061cok é 中"
    assert drawn(text) == "abcevil x ok é 中"
    assert HostFilter().feed_text("\x1b]2;t\x07a\u202eb") == "ab"
    assert drawn("plain") == "plain"


def test_an_escape_before_a_c1_string_cannot_let_it_through() -> None:
    for cut in range(1, 5):
        data = b"\x1b\xc2\x9d52;c;cHduZWQ=\x07after"
        f = HostFilter()
        out = f.feed(data[:cut]) + f.feed(data[cut:])
        assert out == b"after" and b"\xc2\x9d" not in out


def test_a_lone_c2_or_a_c1_inside_a_sequence_never_makes_a_c1_control() -> None:
    # A 0xC2 passed on alone would pair with a 0x9D after a dropped sequence.
    out = HostFilter().feed(b"\xc2\xc2\x1b[6n\x9d")
    assert b"\xc2\x9d" not in out and b"\xc2" not in out
    # A C1 control in the middle of a control sequence cuts it; it does not ride along.
    out = HostFilter().feed(b"\x1b[\xc2\x90qm\xc2\x9c")
    assert b"\xc2\x90" not in out
    assert HostFilter().feed("caf\u00e9 \u00a0nbsp".encode()) == "caf\u00e9 \u00a0nbsp".encode()
