"""Session recordings in asciicast v2: the writer the broker uses.

The format and its reader live in :mod:`assist.store.cast`.

A recording is one file ``<recordings dir>/<session>.cast`` in the asciicast v2
format of asciinema (https://docs.asciinema.org/manual/asciicast/v2): a JSON
header line, then one JSON array per event, ``[seconds, kind, text]``:

* ``"o"`` output: the user's terminal output (snapshots too: they redraw the
  whole screen, so a player that starts anywhere catches up);
* ``"i"`` input: keystrokes an agent typed into the user's terminal;
* ``"m"`` marker: who did what (``agent:carol typed 3 bytes``), hidden input,
  and labels the broker adds (grants, verification, end of session);
* ``"r"`` resize: ``"COLSxROWS"``.

Output never carries what would act on the terminal of whoever replays it
(clipboard, title, hyperlinks, questions to the terminal): see
:mod:`assist.core.host_sequences`.

While the user's terminal reads a secret (echo off) nothing but one
``[hidden input]`` marker, and the same words as dim visible text, goes into
the file: no output and no keystrokes.

The writer never issues a system call per chunk: events are encoded into a
buffer that is written when it passes :data:`FLUSH_BYTES`, at the latest
:data:`FLUSH_INTERVAL` seconds after the first unwritten event (a timer on the
running asyncio loop), and on :meth:`Recorder.close`. Only whole lines are
written, so a broker that stops leaves a file every asciicast player reads.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from assist.core.host_sequences import HostFilter, drawn
from assist.errors import ConfigError, StoreError
from assist.protocol.messages import HiddenWhy
from assist.store.cast import (
    DEFAULT_TERM,
    HIDDEN,
    PAUSED,
    RESUMED,
    VISIBLE,
    recording_path,
    typed_marker,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
"""Seconds an event may wait in the buffer before it is written."""
FLUSH_BYTES = 256 * 1024
"""Buffered bytes that trigger a write at once (bulk output)."""
MAX_LABEL = 200

_DIM = "\x1b[2m{}\x1b[22m"

_encode = msgspec.json.Encoder().encode
_os_write = os.write  # one name for the only system call on the hot path; tests count it


def _utf8() -> codecs.IncrementalDecoder:
    # "replace" so a stray byte costs one U+FFFD, never the session's recording.
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class Recorder:
    """Writes one session to an asciicast v2 file.

    Build it with :meth:`open`. Every ``at`` is a wall-clock time (the broker's
    clock) and becomes ``at - started_at`` seconds in the file, never going
    backwards. Event methods never raise: a recording that cannot be written
    must not break the live session, so the first write error is logged, kept
    in :attr:`error`, and the recorder stops writing.

    Attributes:
        path: the ``.cast`` file.
        error: why recording stopped early, or ``None``.
    """

    def __init__(self, fd: int, path: Path, started_at: float, cols: int, rows: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.error: StoreError | None = None
        self._fd: int | None = fd
        self._started_at = started_at
        self._size = (cols, rows)
        self._clock = clock
        self._last = 0.0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._output = _utf8()
        self._host = HostFilter()
        """What would act on a replaying terminal (clipboard, title, queries) stays out."""
        self._input: dict[str, codecs.IncrementalDecoder] = {}
        self._hidden = False
        self._why: HiddenWhy = "secret"

    @classmethod
    def open(cls, directory: Path, session: str, cols: int, rows: int, started_at: float,
             title: str = "", *, at: float | None = None, term: str = DEFAULT_TERM,
             clock: Callable[[], float] = time.monotonic) -> Recorder:
        """Create ``<directory>/<session>.cast`` (mode 0600) and write its header.

        The directory is created (mode 0700) if needed. If the file exists (the
        session went back to the queue and was picked up again, or the broker
        restarted) the recording continues in it: a damaged last line is cut
        off, then a marker and the current size are added.

        Args:
            directory: the recordings directory (``BrokerConfig.recordings``).
            session: the session id, the file's name.
            cols: terminal width now.
            rows: terminal height now.
            started_at: wall-clock start of the session; event times count from it.
            title: the recording's title, e.g. ``"alice: printer (agent carol)"``.
            at: now, for the marker of a resumed recording (default ``started_at``).
            term: the ``TERM`` to note in the header.
            clock: monotonic clock for flush timing (tests pass a fake).

        Raises:
            ConfigError: if the directory cannot be created.
            StoreError: if the file cannot be created or written.
        """
        path = recording_path(directory, session)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the recordings directory {directory}: {exc.strerror}; "
                "set `recordings` in broker.toml (or ASSIST_BROKER_RECORDINGS) to a "
                "writable directory, or `record = false`") from None
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            hint = " (it is a symbolic link)" if exc.errno == errno.ELOOP else ""
            raise StoreError(f"cannot create recording {path}: {exc.strerror}{hint}") from None
        recorder = cls(fd, path, started_at, cols, rows, clock)
        try:
            size = _trim_damaged_tail(fd)
            if size:
                recorder._last = _last_time(fd, size)
                now = started_at if at is None else at
                recorder._event("m", "recording resumed", now)
                recorder._event("r", f"{cols}x{rows}", now)
                recorder._flush()
            else:
                header: dict[str, Any] = {"version": 2, "width": cols, "height": rows,
                                          "timestamp": int(started_at)}
                if title:
                    header["title"] = title
                header["env"] = {"TERM": term}
                recorder._write_now([_encode(header)])
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write recording {path}: {exc.strerror}") from None
        return recorder

    # -- events ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the file is closed (after :meth:`close` or a write error)."""
        return self._fd is None

    @property
    def hidden_input(self) -> bool:
        """Whether the user's terminal is reading a secret right now."""
        return self._hidden

    def output(self, data: bytes, at: float) -> None:
        """Record ``data`` the user's pty wrote (dropped while input is hidden)."""
        if self._hidden or self._fd is None:
            return
        text = drawn(self._output.decode(self._host.feed(data)))
        if text:
            self._event("o", text, at)

    def snapshot(self, data: bytes, cols: int, rows: int, at: float) -> None:
        """Record a whole-screen redraw of a ``cols`` x ``rows`` terminal.

        The size goes in first as a resize if it changed. Any partial character
        of earlier output is dropped: the snapshot replaces what came before.
        """
        self.resize(cols, rows, at)
        self._output.reset()
        self._host = HostFilter()
        if self._hidden or self._fd is None:
            return
        self._event("o", drawn(self._host.feed(data).decode("utf-8", errors="replace")), at)

    def resize(self, cols: int, rows: int, at: float) -> None:
        """Record a terminal size change (nothing if the size is the same)."""
        if (cols, rows) == self._size:
            return
        self._size = (cols, rows)
        self._event("r", f"{cols}x{rows}", at)

    def agent_input(self, agent: str, data: bytes, at: float) -> None:
        """Record keystrokes ``agent`` typed: an input event and a marker naming them.

        While input is hidden only the marker is written, never the bytes.
        """
        if not data:
            return
        if self._hidden:
            # Keystrokes into a password prompt are a secret whoever typed them.
            self._input.pop(agent, None)
            self._event("m", typed_marker(agent, len(data), hidden=True), at)
            return
        decoder = self._input.get(agent)
        if decoder is None:  # made once per agent: a key may end mid-character
            decoder = self._input[agent] = _utf8()
        text = decoder.decode(data)
        if text:
            self._event("i", text, at)
        self._event("m", typed_marker(agent, len(data)), at)

    def hidden(self, on: bool, at: float, why: HiddenWhy = "secret") -> None:
        """The user's output is withheld (``on``) or shared again.

        ``why``: the terminal reads a secret, or the user paused sharing.
        """
        if on == self._hidden and (not on or why == self._why):
            return
        was = self._why if self._hidden else None
        self._hidden, self._why = on, why
        # Half a character from before must not join bytes after it.
        self._output.reset()
        self._input.clear()
        if on:
            label = PAUSED if why == "paused" else HIDDEN
            self._event("m", label, at)
            self._event("o", _DIM.format(label), at)
        else:
            self._event("m", RESUMED if was == "paused" else VISIBLE, at)

    def marker(self, label: str, at: float) -> None:
        """Record a marker, e.g. ``"control granted to carol"``."""
        self._event("m", " ".join(label.split())[:MAX_LABEL], at)

    # -- buffer --------------------------------------------------------------------------

    def _event(self, kind: str, text: str, at: float) -> None:
        if self._fd is None:
            return
        # Players expect times that never go back; clocks and messages may.
        self._last = max(self._last, at - self._started_at)
        line = _encode([round(self._last, 6), kind, text])
        self._buffer.append(line)
        self._buffered += len(line) + 1
        now = self._clock()
        if self._since is None:
            self._since = now
            self._arm_timer()
        if self._buffered >= FLUSH_BYTES or now - self._since >= FLUSH_INTERVAL:
            self.flush()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (scripts, tests): size, age and close() flush
        self._timer = loop.call_later(FLUSH_INTERVAL, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Write every buffered event now (a write error stops the recording, see above)."""
        try:
            self._flush()
        except OSError as exc:
            self._fail(exc)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer or self._fd is None:
            return
        lines, self._buffer, self._buffered, self._since = self._buffer, [], 0, None
        self._write_now(lines)

    def _write_now(self, lines: list[bytes]) -> None:
        assert self._fd is not None
        view = memoryview(b"\n".join(lines) + b"\n")
        while view:
            written = _os_write(self._fd, view)
            view = view[written:]

    def _fail(self, exc: OSError) -> None:
        self.error = StoreError(f"recording {self.path} stopped: {exc.strerror}")
        log.error("%s", self.error.message)
        self._close_fd()

    def _close_fd(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self, at: float | None = None) -> None:
        """Write what is buffered and close the file; later events are ignored.

        Args:
            at: when the session ended; if given, an ``end`` marker is written.
        """
        if self._fd is None:
            return
        tail = self._output.decode(b"", final=True)
        if tail and not self._hidden:
            self._event("o", tail, self._started_at + self._last)
        if at is not None:
            self._event("m", "end", at)
        self.flush()
        self._close_fd()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _trim_damaged_tail(fd: int) -> int:
    """Cut a partial last line (a write the broker did not finish); return the new size."""
    end = os.lseek(fd, 0, os.SEEK_END)
    keep = _line_start(fd, end)
    if keep != end:
        os.ftruncate(fd, keep)
    return keep


def _line_start(fd: int, position: int) -> int:
    """Offset just after the last newline before ``position`` (0 if none)."""
    while position > 0:
        start = max(0, position - 65536)
        newline = os.pread(fd, position - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _last_time(fd: int, size: int) -> float:
    """The time of the last event in a file of ``size`` bytes ending in a newline."""
    # Only the line's start is read: an output event can be hundreds of KiB.
    head = os.pread(fd, 64, _line_start(fd, size - 1))
    found = re.match(rb"\[\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", head)
    return float(found[1]) if found else 0.0
