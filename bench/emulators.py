"""The terminal emulator, measured against an alternative: speed and fidelity.

``pyte`` (with assist's additions: dim, invisible, palette indices, erase
colours) against ``hl_vt100`` (a C emulator with Python bindings, the other
headless emulator on PyPI that parses a live program), if it is installed::

    python -m bench.emulators [--mb 5]

Speed: MiB/s parsing plain log lines and densely coloured text, every byte
parsed (no skipping). Fidelity: the text of each cell of the fidelity
corpus (``tests/test_fidelity.py``) against a tmux pane of the same size,
and whether colours and attributes are kept at all.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import pyte
from rich.console import Console
from rich.table import Table

from assist.share.emulator import Emulator, _Screen
from tests.test_fidelity import CORPUS, cells_of
from tests.tmux import Tmux

COLS, ROWS = 80, 24


def streams(mb: int) -> dict[str, bytes]:
    plain = b"".join(b"%08d the quick brown fox jumps over the lazy dog 0123456789\r\n" % n
                     for n in range(mb * 1024 * 1024 // 62))
    word = b"\x1b[1;3%dmword\x1b[0m \x1b[38;5;%dmmore\x1b[0m "
    colour = b"".join(word % (n % 8, n % 256) + (b"\r\n" if n % 6 == 5 else b"")
                      for n in range(mb * 1024 * 1024 // 40))
    return {"plain log lines": plain, "dense colour": colour}


def pyte_speed(data: bytes) -> float:
    screen = _Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    start = time.perf_counter()
    for at in range(0, len(data), 65536):
        stream.feed(data[at:at + 65536])
    return len(data) / (time.perf_counter() - start) / 2**20


def vt100_run(path: Path) -> tuple[float, list[str]]:
    """``cat`` of ``path`` in hl_vt100: MiB/s, and its screen's lines."""
    import hl_vt100  # optional: only this bench uses it

    vt = hl_vt100.vt100_headless()
    vt.fork("/bin/cat", ["/bin/cat", str(path)])
    start = time.perf_counter()
    loop = threading.Thread(target=vt.main_loop, daemon=True)
    loop.start()
    loop.join(120)  # main_loop ends when cat does
    took = time.perf_counter() - start
    return path.stat().st_size / took / 2**20, list(vt.getlines())


async def tmux_text(script: Path) -> list[str]:
    tmux = Tmux()
    try:
        await tmux.start("ref", f"sh {script}", COLS, ROWS)
        await asyncio.sleep(1.5)
        capture = await tmux.run("capture-pane", "-e", "-N", "-p", "-t", "ref")
    finally:
        await tmux.kill()
    return ["".join(c.char for c in row) for row in cells_of(capture, COLS, ROWS)]


def matching(lines: list[str], reference: list[str]) -> str:
    same = sum(a == b for want, got in zip(reference, lines, strict=False)
               for a, b in zip(want.ljust(COLS), got.ljust(COLS), strict=False))
    return f"{same / (COLS * ROWS):.1%}"


async def main(mb: int) -> None:
    table = Table(title=f"terminal emulators ({COLS}x{ROWS})")
    for column in ("emulator", *streams(0), "corpus text cells", "colours, attributes"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = streams(mb)
        corpus = root / "corpus.sh"
        corpus.write_text(CORPUS.replace("sleep 600", "sleep 2"))
        reference = await tmux_text(corpus)
        printed = root / "corpus.bytes"
        proc = await asyncio.create_subprocess_exec(
            "script", "-qfec", f"stty cols {COLS} rows {ROWS}; sh {corpus}", "/dev/null",
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        printed.write_bytes(out)
        ours = Emulator(COLS, ROWS)
        ours.feed(out)
        speeds = [f"{pyte_speed(d):.1f} MiB/s" for d in data.values()]
        table.add_row("pyte + assist", *speeds, matching(ours.text(), reference), "kept")
        try:
            files = []
            for name, stream in data.items():
                path = root / f"{name}.bytes"
                path.write_bytes(stream)
                files.append(path)
            vt_speeds = [f"{vt100_run(p)[0]:.1f} MiB/s" for p in files]
            _, lines = vt100_run(printed)
            table.add_row("hl_vt100", *vt_speeds, matching(lines, reference),
                          "none (text only)")
        except ImportError:
            table.add_row("hl_vt100", "not installed (pip install hl-vt100)", "", "", "")
    Console(width=120).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=5, help="MiB of each stream (default 5)")
    asyncio.run(main(parser.parse_args().mb))
