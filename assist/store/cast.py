"""Session recordings on disk: the asciicast v2 format, and reading it back.

A recording is one file ``<recordings dir>/<session>.cast`` in the asciicast v2
format of asciinema (https://docs.asciinema.org/manual/asciicast/v2): a JSON
header line, then one JSON array per event, ``[seconds, kind, text]``:
``"o"`` output, ``"i"`` input an agent typed, ``"m"`` a marker (who did
what, hidden input), ``"r"`` a resize ``"COLSxROWS"``. The broker writes them
(:mod:`assist.broker.recording`); ``assist replay`` and the tests read them
here, with no broker code involved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

from assist.errors import NotFound, StoreError
from assist.files import unreadable

SUFFIX = ".cast"
DEFAULT_TERM = "xterm-256color"
HIDDEN = "[hidden input]"
VISIBLE = "[input visible]"
PAUSED = "[paused by the user]"
"""The user paused sharing (privacy pause): nothing until :data:`RESUMED`."""
RESUMED = "[sharing resumed]"

_SESSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_TYPED = re.compile(
    r"^agent:(?P<agent>\S+) typed (?P<size>\d+) bytes?(?P<hidden> \(hidden, not recorded\))?$")


class Typed(NamedTuple):
    """A keystroke marker read back: who typed how many bytes, and if they were withheld."""

    agent: str
    size: int
    hidden: bool


def typed_marker(agent: str, count: int, hidden: bool = False) -> str:
    """The marker label that attributes ``count`` typed bytes to ``agent``."""
    label = f"agent:{agent} typed {count} byte{'' if count == 1 else 's'}"
    return f"{label} (hidden, not recorded)" if hidden else label


def parse_typed(label: str) -> Typed | None:
    """What a :func:`typed_marker` label says, or ``None`` for other markers."""
    found = _TYPED.match(label)
    if found is None:
        return None
    return Typed(found["agent"], int(found["size"]), found["hidden"] is not None)


def recording_path(directory: Path, session: str) -> Path:
    """Where the recording of ``session`` lives.

    Raises:
        StoreError: if ``session`` cannot be a file name.
    """
    if not _SESSION.match(session):
        raise StoreError(f"cannot record session {session!r}: not a valid session id")
    return directory / f"{session}{SUFFIX}"


@dataclass(frozen=True)
class Header:
    """The header of an asciicast v2 recording.

    Attributes:
        width: initial terminal width.
        height: initial terminal height.
        timestamp: Unix time the recording started, if known.
        title: the title, or ``""``.
        idle_time_limit: the longest pause a player should show, if set.
        raw: the whole header as read.
    """

    width: int
    height: int
    timestamp: float | None = None
    title: str = ""
    idle_time_limit: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One event: ``time`` seconds from the start, ``kind`` (o, i, m, r), ``data``."""

    time: float
    kind: str
    data: str


class Cast:
    """An asciicast v2 file opened for reading; events stream, never all in memory.

    Attributes:
        path: the file.
        header: its header.
        truncated: set once :meth:`events` met a damaged last line (and stopped there).
    """

    def __init__(self, path: Path, file: IO[str], header: Header) -> None:
        self.path = path
        self.header = header
        self.truncated = False
        self._file = file

    @classmethod
    def open(cls, path: Path) -> Cast:
        """Open ``path`` and read its header.

        Raises:
            NotFound: if there is no such file.
            StoreError: if it cannot be read or is not an asciicast v2 recording.
        """
        try:
            file = path.open(encoding="utf-8", newline="\n")
        except OSError as exc:
            kind = NotFound if isinstance(exc, FileNotFoundError) else StoreError
            raise kind(unreadable(path, "recording", exc)) from None
        try:
            header = _header(path, file.readline())
        except UnicodeDecodeError:
            file.close()
            raise StoreError(f"{path} is not an asciicast recording (not UTF-8 text)") from None
        except BaseException:
            file.close()
            raise
        return cls(path, file, header)

    def events(self) -> Iterator[Event]:
        """Yield the events in file order.

        A last line that is not a complete event is a recording cut short: it
        sets :attr:`truncated` and ends the events instead of raising.

        Raises:
            StoreError: if a line before the last is not an event.
        """
        number = 1
        try:
            line = self._file.readline()
            while line:
                following = self._file.readline()
                number += 1
                if line.strip():
                    event = _event(line)
                    if event is None:
                        if not following:
                            self.truncated = True
                            return
                        raise StoreError(
                            f"{self.path} line {number} is not an asciicast event")
                    yield event
                line = following
        except UnicodeDecodeError:
            raise StoreError(f"{self.path} line {number} is not UTF-8 text") from None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> Cast:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _header(path: Path, line: str) -> Header:
    if not line.strip():
        raise StoreError(f"{path} is empty, not an asciicast recording")
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise StoreError(
            f"{path} is not an asciicast v2 recording (its first line is not a JSON "
            "header; asciicast v1 files are not supported)") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not an asciicast v2 recording (no header line)")
    version = data.get("version")
    if version != 2:
        raise StoreError(f"{path} is asciicast version {version!r}; assist replay reads "
                         "version 2 (asciinema 3 converts: `asciinema convert -f asciicast-v2`)")
    width, height = data.get("width"), data.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise StoreError(f"{path}: the header has no valid width and height")
    timestamp, limit = data.get("timestamp"), data.get("idle_time_limit")
    title = data.get("title")
    return Header(
        width=width, height=height,
        timestamp=float(timestamp) if isinstance(timestamp, int | float) else None,
        title=title if isinstance(title, str) else "",
        idle_time_limit=float(limit) if isinstance(limit, int | float) and limit > 0 else None,
        raw=data,
    )


def _event(line: str) -> Event | None:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if (isinstance(data, list) and len(data) == 3 and isinstance(data[0], int | float)
            and not isinstance(data[0], bool) and isinstance(data[1], str)
            and isinstance(data[2], str)):
        return Event(float(data[0]), data[1], data[2])
    return None
