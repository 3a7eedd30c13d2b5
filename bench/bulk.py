"""Bulk output in the user's own view: ``cat`` of a big file in ``assist help`` vs a tmux pane.

Both run in one go, alternated, in panes of the same size of a private tmux
server: a plain pane running a shell, and a pane running the real
``assist help`` (queued at a broker of its own on 127.0.0.1, nobody
accepting) with the same shell inside. Each round times ``cat`` of the same
file with the shell's own clock, then checks that the view is right once
output stops (the file's last line on screen)::

    python -m bench.bulk [--mb 50] [--rounds 5]

Printed: the wall time of each side (median, p99, max) and the ratio of the
medians. Target: within 1.2x of the tmux pane.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.stats import print_table
from tests.tmux import Tmux

COLS, ROWS = 120, 40
SHELL = "env PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile"


def make_file(path: Path, mb: int) -> str:
    """A file of ``mb`` MiB of numbered log lines; return its last line."""
    line = "%08d the quick brown fox jumps over the lazy dog, 0123456789 abcdefghij\n"
    count = mb * 1024 * 1024 // len(line % 0)
    with path.open("w") as out:
        for n in range(0, count, 1000):
            out.write("".join(line % i for i in range(n, min(n + 1000, count))))
    return (line % (count - 1)).strip()


async def time_cat(tmux: Tmux, pane: str, file: Path, last: str, n: int) -> float:
    """Run ``cat`` in ``pane``'s shell; the seconds it took, by the shell's clock."""
    mark = f"took-{n}-"
    await tmux.keys(pane, "-l", f"s=$(date +%s%N); cat {file}; e=$(date +%s%N); clear; "
                                f"echo {mark}$(( (e - s) / 1000 ))")
    await tmux.keys(pane, "Enter")
    found = None
    deadline = time.monotonic() + 600
    while found is None and time.monotonic() < deadline:
        # The typed line holds the mark too: the answer is the mark and digits.
        found = re.search(rf"{mark}(\d+)", await tmux.screen(pane))
        await asyncio.sleep(0.2)
    if found is None:
        raise SystemExit(f"cat never finished in the {pane} pane")
    took = int(found.group(1)) / 1e6  # microseconds
    # The view is right once output stops: the last line is on it, then the clear.
    await tmux.keys(pane, "-l", f"tail -n 1 {file}")
    await tmux.keys(pane, "Enter")
    await tmux.wait_for(pane, last, timeout=30)
    await tmux.keys(pane, "-l", "clear")
    await tmux.keys(pane, "Enter")
    return took


async def main(mb: int, rounds: int) -> None:
    from assist.broker.server import Broker
    from tests.helpers import broker_config, make_key, register

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        file = root / "big.log"
        last = make_file(file, mb)
        broker = Broker(broker_config(root / "broker"))
        await broker.start()
        key = make_key(root / "keys", "alice")
        register(broker, "user", "alice", key)
        tmux = Tmux()
        try:
            await tmux.start("tmux", SHELL, COLS, ROWS)
            command = [sys.executable, "-m", "assist", "help", "bench", "--broker",
                       f"127.0.0.1:{broker.port}", "--key", str(key.private), "--yes",
                       "--cmd", SHELL]
            await tmux.start("assist", shlex.join(command), COLS, ROWS)
            await tmux.wait_for("assist", "Waiting for an agent")
            await tmux.keys("assist", "F3")  # the panel folded, as a user at work has it
            times: dict[str, list[float]] = {"tmux": [], "assist": []}
            for n in range(rounds):
                for pane in ("tmux", "assist") if n % 2 == 0 else ("assist", "tmux"):
                    times[pane].append(await time_cat(tmux, pane, file, last, n))
                    await asyncio.sleep(0.5)
        finally:
            await tmux.kill()
            await broker.stop()
    ratio = statistics.median(times["assist"]) / statistics.median(times["tmux"])
    print_table(f"cat of {mb} MiB in a {COLS}x{ROWS} terminal", [
        ("plain tmux pane", rounds, times["tmux"], "baseline"),
        ("inside assist help", rounds, times["assist"], "within 1.2x"),
    ])
    print(f"bulk: assist help / tmux pane = {ratio:.2f}x (median of {rounds}, "
          f"{time.strftime('%H:%M')})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="MiB to cat (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.rounds))
