"""The terminal widget draws each cell as the program asked: width, colour, attributes."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.app import App, ComposeResult

from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.tui.overlay import Overlay, paint
from assist.tui.terminal import TerminalView


class Viewer(App[None]):
    def __init__(self, emulator: Emulator) -> None:
        super().__init__(ansi_color=True)
        self.emulator = emulator

    def compose(self) -> ComposeResult:
        yield TerminalView(self.emulator, read_only=True)


def styles(segments: list[Segment]) -> dict[str, Style]:
    """The style each character is drawn with."""
    return {ch: s.style for s in segments if s.style is not None for ch in s.text}


async def test_wide_characters_palette_colours_and_attributes_reach_the_strip() -> None:
    e = Emulator(24, 3)
    e.feed("中文字符x".encode() + b" \x1b[31mR\x1b[38;5;1mI\x1b[94mB\x1b[2mD\x1b[0m"
           b"\x1b[9mS\x1b[0m\x1b[5mK\x1b[0m\x1b[8mH\x1b[0m\x1b[38;5;200mP\x1b[0m")
    app = Viewer(e)
    async with app.run_test(size=(30, 5)):
        strip = app.query_one(TerminalView).render_line(0)
        assert strip.cell_length == 24
        text = "".join(s.text for s in strip)
        assert text.startswith("中文字符x RIBDSKHP")  # 2 cells each, no gap
        style = styles(list(strip))
        # Palette colours stay palette colours (the viewer's own palette applies).
        assert style["R"].color is not None and style["R"].color.name == "red"
        assert style["I"].color == style["R"].color
        assert style["B"].color is not None and style["B"].color.name == "bright_blue"
        assert style["P"].color is not None and style["P"].color.number == 200
        assert style["D"].dim and style["S"].strike and style["K"].blink
        assert style["H"].conceal


def test_an_arrow_is_as_long_as_it_was_drawn_and_points_where_the_drag_ended() -> None:
    overlay = Overlay()
    overlay.add(m.Annotation(id="r", kind="arrow", x=2, line=0, x2=21, line2=0), now=0)
    overlay.add(m.Annotation(id="l", kind="arrow", x=30, line=1, x2=11, line2=1), now=0)
    overlay.add(m.Annotation(id="p", kind="arrow", x=5, line=2), now=0)
    _, right = overlay.styles_for_row(0, 40, now=1)
    assert "".join(right[x] for x in sorted(right)) == "━" * 19 + "▶"
    assert min(right) == 2 and max(right) == 21
    _, left = overlay.styles_for_row(1, 40, now=1)
    assert "".join(left[x] for x in sorted(left)) == "◀" + "━" * 19 and min(left) == 11
    _, point = overlay.styles_for_row(2, 40, now=1)
    assert "".join(point[x] for x in sorted(point)) == "◀━━"  # a click: the short one


def test_a_mark_over_a_wide_character_keeps_the_row_width() -> None:
    row = [Segment("中"), Segment(""), Segment("x")]
    bold = Style(bold=True)
    out = paint(row, {0: bold, 1: bold, 2: bold}, {0: "━", 1: "━", 2: "━"})
    assert sum(len(s.text) for s in out) == 3 and [s.text for s in out] == ["━ ", "", "━"]


async def test_marks_over_wide_characters_sit_on_them_and_keep_the_row() -> None:
    from assist.tui.overlay import BOX

    e = Emulator(24, 2)
    e.feed("中文字符 target".encode())
    app = Viewer(e)
    async with app.run_test(size=(30, 5)):
        view = app.query_one(TerminalView)
        # A box over 字符 (cells 4 to 7), a label after "target".
        view.overlay.add(m.Annotation(id="b", kind="box", x=4, line=0, x2=7, line2=0))
        view.overlay.add(m.Annotation(id="l", kind="label", x=16, line=0, text="here"))
        strip = view.render_line(0)
        assert strip.cell_length == 24
        text = "".join(s.text for s in strip)
        assert text.startswith("中文字符 target") and " here " in text
        marked = [s.text for s in strip if s.style is not None and BOX.color is not None
                  and s.style.color == BOX.color]
        assert "".join(marked).startswith("字符")
