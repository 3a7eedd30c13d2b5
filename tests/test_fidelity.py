"""The same picture on both sides, cell by cell, against a plain tmux pane.

A corpus (the 16, 256 and truecolour palettes, every attribute, CJK, emoji,
combining marks, a right-to-left line, drawing in the last column) is shown
by a real ``assist help`` (the user's own view) and a real ``assist console``
(the agent's view) in tmux, and by a tmux pane of the same size running the
same script. Each pane is read back with ``capture-pane -e`` and parsed into
cells (text, colours, attributes); every cell of the corpus area must match.
The floating panel's cells are left out on the user's side. vim, less and
``ls --color`` run live on both sides; htop, whose figures change, is
replayed from one byte stream it recorded.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.share.emulator import Cell, Emulator
from assist.share.pty import PtyProcess
from tests.helpers import KeyPair, until
from tests.tmux import Tmux, assist_cmd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]

COLS, ROWS = 80, 24
CORPUS = r"""
printf '\033[H\033[2J'
for c in 30 31 32 33 34 35 36 37; do printf "\033[${c}mF$c"; done; printf '\033[0m\n'
for c in 90 91 92 93 94 95 96 97; do printf "\033[${c}mB$c"; done; printf '\033[0m\n'
for c in 40 41 42 43 44 45 46 47 100 101 102 103 104 105 106 107; do printf "\033[${c}m$c"; done
printf '\033[0m\n'
for n in 0 1 7 9 15 16 100 196 231 232 255; do printf "\033[38;5;${n}m#$n"; done; printf '\033[0m\n'
printf '\033[38;2;10;200;30mtrue\033[48;2;200;10;30mcolour\033[0m\n'
printf '\033[1mbold\033[0m \033[2mdim\033[0m \033[3mitalic\033[0m \033[4munder\033[0m '
printf '\033[5mblink\033[0m \033[7mreverse\033[0m \033[8mhidden\033[0m \033[9mstrike\033[0m\n'
printf '中文字符が二列 🙂 e\314\201 café\n'
printf 'שלום עולם\n'
printf '\033[12;80HZ\033[13;1Hend\n'
sleep 600
"""
"""The script both sides run (a right-to-left line is stored in logical order)."""
LINES = 14
"""Rows of the screen the corpus fills."""
TRUECOLOUR = "env COLORTERM=truecolor "


def cells_of(capture: str, cols: int, rows: int) -> list[list[Cell]]:
    """A ``capture-pane -e -p`` text parsed back into cells."""
    screen = Emulator(cols, rows)
    # Each row ends in a newline: the last one must not scroll the first away.
    screen.feed(capture.removesuffix("\n").replace("\n", "\r\n").encode())
    return [screen.cells(y) for y in range(rows)]


async def capture(tmux: Tmux, name: str) -> str:
    # -N keeps the spaces at the ends of rows (their colours are cells too).
    return await tmux.run("capture-pane", "-e", "-N", "-p", "-t", name)


def differences(ref: list[list[Cell]], view: list[list[Cell]], top: int, left: int,
                skip: set[tuple[int, int]], rows: int) -> list[str]:
    out = []
    for y in range(rows):
        for x in range(COLS):
            if (x, y) in skip:
                continue
            want, got = ref[y][x], view[top + y][left + x]
            if want != got:
                out.append(f"row {y} col {x}: tmux {want.char!r} {want.fg}/{want.bg} "
                           f"{_flags(want)} != assist {got.char!r} {got.fg}/{got.bg} {_flags(got)}")
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    script = tmp_path / "corpus.sh"
    script.write_text(CORPUS)
    return script


async def same_picture(broker: Broker, keys: dict[str, KeyPair], command: str,
                       typed: tuple[str, ...] | list[str] = (), rows: int = LINES,
                       drawn_by_tmux: bool = False) -> None:
    """Run ``command`` in a tmux pane and in ``assist help`` seen by ``assist console``;
    type ``typed`` into both; the first ``rows`` rows must match cell by cell.

    ``drawn_by_tmux``: the reference is what a tmux client draws of that pane
    (attached in a pane of its own), not tmux's record of it: ``capture-pane``
    leaves out the colour a line erase gives the cells it clears.
    """
    tmux = Tmux()
    inner = Tmux()
    address = f"127.0.0.1:{broker.port}"
    try:
        if drawn_by_tmux:
            await inner.start("ref", command, COLS, ROWS)
            await inner.run("set-option", "-g", "status", "off")
            await tmux.start("ref", f"env -u TMUX tmux -L {inner.socket} attach -t ref",
                             COLS, ROWS)
        else:
            await tmux.start("ref", command, COLS, ROWS)
        # Both apps run in a terminal that takes truecolour, as tmux does.
        await tmux.start("user", TRUECOLOUR + assist_cmd(
            "help", "fidelity", "--broker", address, "--key", str(keys["alice"].private),
            "--yes", "--cmd", command), COLS, ROWS)
        await tmux.start("agent", TRUECOLOUR + assist_cmd(
            "console", "--broker", address, "--key", str(keys["carol"].private), "--yes"),
            160, 45)
        await tmux.wait_for("agent", "fidelity")
        await tmux.keys("agent", "Enter")
        await tmux.wait_for("agent", "alice · fidelity")
        await tmux.keys("user", "F3")  # the panel folds to its one line
        await asyncio.sleep(1.0)
        program = inner if drawn_by_tmux else tmux  # the server the program runs in
        for key in typed:
            await program.keys("ref", key)
            await tmux.keys("user", key)
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.5)
        ref = cells_of(await capture(tmux, "ref"), COLS, ROWS)
        drawn = sum(1 for row in ref[:rows] for c in row if c.char.strip())
        assert drawn > 100, "the program drew next to nothing: nothing to compare"
        user = cells_of(await capture(tmux, "user"), COLS, ROWS)
        agent = cells_of(await capture(tmux, "agent"), 160, 45)
        # Where the program's cursor is: the views draw it in the cell (tmux does not).
        x, y = map(int, (await program.run("display-message", "-p", "-t", "ref",
                                           "#{cursor_x} #{cursor_y}")).split())
        cursor = {(x, y)}
        # The user's own view fills its terminal; the floating panel is not the shell.
        panel = _folded_panel(user) | cursor
        mismatched = differences(ref, user, 0, 0, panel, rows)
        assert not mismatched, "the user's view:\n" + "\n".join(mismatched)
        top, left = _origin(agent)
        mismatched = differences(ref, agent, top, left, cursor, rows)
        assert not mismatched, "the agent's view:\n" + "\n".join(mismatched)
    finally:
        await tmux.kill()
        await inner.kill()


def _origin(agent: list[list[Cell]]) -> tuple[int, int]:
    """Where the user's screen starts in the console: inside the screen box's corner."""
    for y, row in enumerate(agent):
        for x, cell in enumerate(row):
            if cell.char == "╭":
                return y + 1, x + 1
    raise AssertionError("no screen box in the console")


async def test_both_views_match_a_tmux_pane_cell_by_cell(
        broker: Broker, keys: dict[str, KeyPair], corpus: Path) -> None:
    await same_picture(broker, keys, f"sh {corpus}")


PROGRAMS = [
    ("vim after scrolling", "vim -u NONE -N -i NONE -n {file}", ["40G", "z", "Enter"]),
    ("less", "less {file}", ["Space"]),
    ("ls --color", "sh -c 'ls --color=always -l /usr/bin | head -30; sleep 600'", []),
]


@pytest.mark.parametrize(("command", "typed"), [(c, t) for _, c, t in PROGRAMS],
                         ids=[p[0] for p in PROGRAMS])
async def test_programs_look_as_in_a_tmux_pane(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path, command: str,
        typed: list[str]) -> None:
    program = command.split(maxsplit=1)[0] if not command.startswith("sh") else "ls"
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")
    text = tmp_path / "file.txt"
    text.write_text("".join(f"line {n:03d} {'wörds 中文 ' * (n % 4)}\n" for n in range(200)))
    await same_picture(broker, keys, command.format(file=text), typed, ROWS)


def _folded_panel(rows: list[list[Cell]]) -> set[tuple[int, int]]:
    """The cells of the user's panel, folded to its one line (it names F3 there)."""
    for y, row in enumerate(rows):
        chars = [c.char for c in row]
        for x in range(len(row) - 8):
            if "".join(chars[x:x + 8]) == "F3 opens":
                strip = row[x].bg  # the line's own background, end to end
                return {(col, y) for col, c in enumerate(row) if c.bg == strip}
    raise AssertionError("the folded panel is not on screen")


def _flags(cell: Cell) -> str:
    return "".join(f for f, on in (("b", cell.bold), ("d", cell.dim), ("i", cell.italics),
                                   ("u", cell.underscore), ("k", cell.blink),
                                   ("r", cell.reverse), ("h", cell.invisible),
                                   ("s", cell.strike)) if on)


async def test_htop_replayed_looks_as_in_a_tmux_pane(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    # htop draws live figures: both sides get one byte stream it recorded instead.
    if shutil.which("htop") is None:
        pytest.skip("htop is not installed")
    out = bytearray()
    pty = PtyProcess(["htop"], COLS, ROWS, env={"TERM": "xterm-256color"},
                     on_output=out.extend)
    pty.start()
    await until(lambda: b"PID" in out, 10, what="htop to draw")
    await asyncio.sleep(1.5)
    pty.terminate()
    stream = tmp_path / "htop.bytes"
    stream.write_bytes(bytes(out).split(b"\x1b[?1049l")[0])  # up to its exit, not after
    await same_picture(broker, keys, f"sh -c 'cat {stream}; sleep 600'", rows=ROWS,
                       drawn_by_tmux=True)
