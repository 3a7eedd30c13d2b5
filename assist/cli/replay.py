"""``assist replay``: play a session recording (asciicast v2) in the terminal.

Output events are written to stdout with their timing (pauses capped by the
idle limit, scaled by the speed), without anything that would act on this
terminal (clipboard, title, questions to it; see
:mod:`assist.core.host_sequences`). Markers (who typed, hidden input, grants)
must never be mixed into the replayed screen, so where they go depends on
where stdout and stderr go:

* stderr is a different place than stdout (a file, a pipe, another
  terminal): one line per marker on stderr as it plays, consecutive
  keystrokes of one agent folded into one line;
* both are the same terminal: the latest marker is shown in the terminal's
  window title (saved before and restored after), and a one-line summary is
  printed when playback ends;
* both are the same file or pipe: none (``--info`` lists them).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import typer

from assist.cli.app import DB_OPTION, JSON_OPTION, app, err, out, print_json, reader_gone
from assist.core.host_sequences import HostFilter
from assist.core.text import printable
from assist.display import said
from assist.errors import ConfigError
from assist.store.cast import HIDDEN, PAUSED, Cast, Event, parse_typed, typed_marker

DEFAULT_IDLE_LIMIT = 2.0
"""Longest pause shown when neither the recording nor ``--idle-limit`` sets one."""
TYPING_GAP = 2.0
"""Keystrokes of one agent less than this many seconds apart fold into one marker line."""
_LONGEST_NAP = 3600.0
"""Seconds slept at once during a pause (a recording may hold an absurd one)."""
_WRITE_AHEAD = 0.005
"""Events due within this many seconds are written together (one write, no sleep)."""
_MAX_PENDING = 64 * 1024
_TITLE_PUSH, _TITLE_POP = "\x1b[22;0t", "\x1b[23;0t"
_RESTORE = "\x1b[0m\x1b[?25h"
"""Plain colours and a visible cursor: what a recording cut short may have left."""


@dataclass
class Summary:
    """What a recording holds, for ``--info``, ``--json`` and the end of playback."""

    duration: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    output_chars: int = 0
    agents: dict[str, int] = field(default_factory=dict)
    hidden: int = 0
    paused: int = 0
    resizes: int = 0
    markers: list[tuple[float, str]] = field(default_factory=list)
    truncated: bool = False

    def add(self, event: Event) -> None:
        """Count one event."""
        self.duration = max(self.duration, event.time)
        self.events[event.kind] = self.events.get(event.kind, 0) + 1
        if event.kind == "o":
            self.output_chars += len(event.data)
        elif event.kind == "r":
            self.resizes += 1
        elif event.kind == "m":
            typed = parse_typed(event.data)
            if typed is not None:
                # Withheld keystrokes count too: the agent did type, into a secret.
                self.agents[typed.agent] = self.agents.get(typed.agent, 0) + typed.size
            elif event.data == HIDDEN:
                self.hidden += 1
            elif event.data == PAUSED:
                self.paused += 1

    def as_json(self, markers: list[dict[str, Any]]) -> dict[str, Any]:
        """The summary as plain JSON data, with folded ``markers``."""
        return {
            "duration": round(self.duration, 3),
            "events": dict(sorted(self.events.items())),
            "output_chars": self.output_chars,
            "agents_typed": dict(sorted(self.agents.items())),
            "hidden_input": self.hidden,
            "paused": self.paused,
            "resizes": self.resizes,
            "markers": markers,
            "truncated": self.truncated,
        }


class MarkerFolder:
    """Folds consecutive keystroke markers of one agent into one entry.

    Args:
        emit: called with ``(start, end, label)`` for every finished entry.
    """

    def __init__(self, emit: Callable[[float, float, str], None]) -> None:
        self._emit = emit
        self._typing: tuple[str, float, float, int] | None = None

    def add(self, at: float, label: str) -> None:
        """Take one marker."""
        typed = parse_typed(label)
        if typed is not None and not typed.hidden:
            agent, count = typed.agent, typed.size
            current = self._typing
            if current and current[0] == agent and at - current[2] <= TYPING_GAP:
                self._typing = (agent, current[1], at, current[3] + count)
                return
            self.finish()
            self._typing = (agent, at, at, count)
            return
        self.finish()
        self._emit(at, at, label)

    def finish(self) -> None:
        """Emit the keystrokes still being folded."""
        if self._typing is not None:
            agent, start, end, count = self._typing
            self._typing = None
            self._emit(start, end, typed_marker(agent, count))


def clock_text(seconds: float) -> str:
    """``mm:ss.s`` (or ``h:mm:ss``) for a time in a recording."""
    minutes, secs = divmod(seconds, 60)
    if minutes >= 60:
        return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{int(secs):02d}"
    return f"{int(minutes):02d}:{secs:04.1f}"


def _span(start: float, end: float) -> str:
    return clock_text(start) if end - start < 0.05 else f"{clock_text(start)}-{clock_text(end)}"


def _same_place(a: IO[str], b: IO[str]) -> bool:
    """Whether two streams write to the same terminal, pipe or file."""
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


class Player:
    """Plays events to a text stream with their timing.

    Args:
        write: writes replayed text (called once per batch, then ``flush``).
        flush: flushes the output.
        speed: playback speed (2 = twice as fast).
        idle_limit: longest pause in recording seconds; 0 keeps every pause.
        on_marker: called with ``(time, label)`` for each marker as it plays.
        sleep: sleeps (tests pass a fake).
        clock: monotonic clock (tests pass a fake).
    """

    def __init__(self, write: Callable[[str], object], flush: Callable[[], object], *,
                 speed: float = 1.0, idle_limit: float = 0.0,
                 on_marker: Callable[[float, str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write, self._flush = write, flush
        self._speed, self._idle_limit = speed, idle_limit
        self._on_marker = on_marker
        self._sleep, self._clock = sleep, clock
        self._pending: list[str] = []
        self._pending_size = 0
        self._host = HostFilter()

    def play(self, events: Iterable[Event], summary: Summary) -> None:
        """Play ``events``, counting them into ``summary``."""
        start = self._clock()
        previous = played = 0.0
        try:
            for event in events:
                summary.add(event)
                gap = max(0.0, event.time - previous)
                previous = max(previous, event.time)
                if self._idle_limit > 0:
                    gap = min(gap, self._idle_limit)
                played += gap / self._speed
                delay = start + played - self._clock()
                if delay > _WRITE_AHEAD:
                    # Show everything due before pausing, in one write.
                    self._drain()
                    while delay > _WRITE_AHEAD:
                        # In naps the platform's timer takes, however long the pause.
                        self._sleep(min(delay, _LONGEST_NAP))
                        delay = start + played - self._clock()
                if event.kind == "o":
                    # A recording made elsewhere (or edited) may still carry them.
                    data = self._host.feed_text(event.data)
                    self._pending.append(data)
                    self._pending_size += len(data)
                    if self._pending_size >= _MAX_PENDING:
                        self._drain()
                elif event.kind == "m" and self._on_marker is not None:
                    self._drain()
                    self._on_marker(event.time, event.data)
        finally:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            self._write("".join(self._pending))
            self._pending.clear()
            self._pending_size = 0
        self._flush()


def _stdout_writer() -> tuple[Callable[[str], object], Callable[[], object]]:
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        # Recordings are UTF-8 whatever the locale; a terminal expects the same bytes.
        def write(text: str) -> object:
            return buffer.write(text.encode("utf-8", errors="replace"))

        return write, buffer.flush
    return stream.write, stream.flush


@app.command()
def replay(
    file: str = typer.Argument(..., metavar="FILE|SESSION", show_default=False,
                               help="The recording (RECORDINGS/<session>.cast), or a "
                               "session id: its recordings are looked up in the store."),
    speed: float = typer.Option(1.0, "--speed", "-s",
                                help="Playback speed: 2 plays twice as fast, 0.5 half as fast."),
    idle_limit: float | None = typer.Option(
        None, "--idle-limit", "-i", show_default=False,
        help=("Cap every pause at this many seconds of the recording (default: the "
              f"recording's own limit, else {DEFAULT_IDLE_LIMIT:g}; 0 keeps every pause).")),
    markers: bool = typer.Option(
        True, "--markers/--no-markers",
        help=("Show markers (who typed, hidden input): on stderr if it is not the "
              "terminal playing, else in the window title.")),
    info: bool = typer.Option(False, "--info",
                              help="Print the header and a summary instead of playing."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Play a session recording in this terminal, with its timing.

    Recordings are asciicast v2 files (also playable with `asciinema play`), one
    per session in the broker's recordings directory. Agent keystrokes are
    attributed to the agent; secrets typed while the terminal hid input were
    never recorded. Press Ctrl-C to stop. With --info or --json nothing is
    played: the header and a summary (duration, events, agents who typed,
    markers) are printed instead. Given a session id, the store says where its
    recordings are (a session that moved to another node when its node died
    has one file on each); those on this machine are played in order.
    """
    if not speed > 0:
        raise ConfigError(f"--speed must be above 0, got {speed:g}")
    if idle_limit is not None and idle_limit < 0:
        raise ConfigError(f"--idle-limit must be 0 or more, got {idle_limit:g}")
    for path in _files(file, db):
        with Cast.open(path) as cast:
            if info or as_json:
                _describe(cast, as_json)
                continue
            limit = idle_limit if idle_limit is not None else (
                cast.header.idle_time_limit or DEFAULT_IDLE_LIMIT)
            try:
                summary = _play(cast, speed, limit, markers)
            except BrokenPipeError:
                reader_gone()  # `assist replay F | head`: not an error
                return
        if summary.truncated:
            err.print("[yellow]assist:[/] the recording ends with a damaged event (it was "
                      "cut short, e.g. the broker stopped); everything before it was played",
                      highlight=False)


_SESSION = re.compile(r"^[0-9a-f]{12}\Z")


def _files(given: str, db: str | None) -> list[Path]:
    """The recording files to play: ``given`` itself, or a session's files here.

    Raises:
        ConfigError: a session with no recording, or whose recordings are all on
            other machines (the message says which node has them, and where).
    """
    path = Path(given).expanduser()
    if path.exists() or not _SESSION.match(given):
        return [path]
    from assist.cli.admin import open_store

    with open_store(db) as store:
        found = store.recordings.of(given)
    if not found:
        raise ConfigError(f"session {given} has no recording in the store (it was not "
                          "recorded, or the store is another helpdesk's: pass --db)")
    here = list(dict.fromkeys(Path(f.path) for f in found if Path(f.path).exists()))
    if not here:
        where = "; ".join(f"node {f.node}: {f.path}" for f in found)
        raise ConfigError(f"the recordings of session {given} are not on this machine "
                          f"({where}): run assist replay there, or copy the file here")
    return here


def _play(cast: Cast, speed: float, limit: float, markers: bool) -> Summary:
    """Play ``cast`` to stdout, markers where they do not disturb it."""
    summary = Summary()
    terminal = sys.stdout.isatty()
    shared = _same_place(sys.stdout, sys.stderr)
    in_title = markers and shared and terminal
    write, flush = _stdout_writer()
    if terminal:
        _warn_size(cast)

    def to_stderr(start: float, end: float, label: str) -> None:
        err.print(said(f"{_span(start, end)}  {label}"), style="dim")

    def to_title(at: float, label: str) -> None:
        # OSC 2 sets the window title: outside the screen, so nothing is overdrawn.
        clean = printable(label, len(label))
        write(f"\x1b]2;assist replay {clock_text(at)}  {clean}\x07")

    folder = MarkerFolder(to_stderr)
    on_marker: Callable[[float, str], None] | None = None
    if in_title:
        on_marker = to_title
    elif markers and not shared:
        # Into a file or pipe that stdout also writes to, marker lines would mix into
        # the replayed bytes: leave them to --info.
        on_marker = folder.add
    player = Player(write, flush, speed=speed, idle_limit=limit, on_marker=on_marker)
    finished = False
    if in_title:
        write(_TITLE_PUSH)
    try:
        player.play(cast.events(), summary)
        finished = True
    finally:
        folder.finish()
        if terminal:
            # Cut short (Ctrl-C): also leave a full-screen program's alternate screen.
            write(_RESTORE + ("" if finished else "\x1b[?1049l") + "\r\n")
        if in_title:
            write(_TITLE_POP)
        flush()
    summary.truncated = cast.truncated
    if in_title and finished and summary.events.get("m"):
        agents = ", ".join(sorted(summary.agents)) or "none"
        err.print(said(f"{summary.events['m']} markers; agents who typed: {agents}; "
                       f"details: assist replay {cast.path} --info"), style="dim")
    return summary


def _warn_size(cast: Cast) -> None:
    try:
        cols, rows = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return
    width, height = cast.header.width, cast.header.height
    if cols < width or rows < height:
        err.print(f"[yellow]assist:[/] the recording is {width}x{height}, this terminal "
                  f"is {cols}x{rows}: lines may wrap", highlight=False)


def _describe(cast: Cast, as_json: bool) -> None:
    """Print the header and a summary of ``cast`` (streams every event once)."""
    summary = Summary()
    folded: list[dict[str, Any]] = []
    folder = MarkerFolder(lambda start, end, label: folded.append(
        {"time": round(start, 3), "end": round(end, 3), "label": label}))
    for event in cast.events():
        summary.add(event)
        if event.kind == "m":
            folder.add(event.time, event.data)
    folder.finish()
    summary.truncated = cast.truncated
    if as_json:
        try:
            size = cast.path.stat().st_size
        except OSError:
            size = 0
        print_json({"file": str(cast.path), "bytes": size, "header": cast.header.raw,
                    "summary": summary.as_json(folded)})
        return
    header = cast.header
    started = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(header.timestamp))
               if header.timestamp is not None else "unknown")
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.events.items())) or "none"
    agents = ", ".join(f"{name} ({n} bytes)" for name, n in sorted(summary.agents.items()))
    out.print(str(cast.path), style="bold", highlight=False, markup=False)
    for line in (
        f"title        {header.title or '-'}",
        f"started      {started}",
        f"size         {header.width}x{header.height}"
        + (f" ({summary.resizes} resizes)" if summary.resizes else ""),
        f"duration     {clock_text(summary.duration)}",
        f"events       {counts}",
        f"agents typed {agents or 'none'}",
        f"hidden input {summary.hidden} time{'' if summary.hidden == 1 else 's'}",
        f"paused       {summary.paused} time{'' if summary.paused == 1 else 's'}",
    ):
        out.print(said(line))  # the title and names come from the file
    if summary.truncated:
        out.print("the last event is damaged (recording cut short)", style="yellow",
                  highlight=False)
    if folded:
        out.print("markers", highlight=False)
        for marker in folded:
            out.print(said(f"  {_span(marker['time'], marker['end'])}  {marker['label']}"))
