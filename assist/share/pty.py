"""The user's shell in a pseudo-terminal, driven from the asyncio loop.

Output is read as fast as the shell writes it and handed to ``on_output``
unchanged; nothing downstream (emulator, network) may slow the shell down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Sequence

from assist.errors import ConfigError
from assist.share.secret import alternate_screen, foreground_programs, reads_secret

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
BATCH = 256 * 1024
"""Bytes drained from the pty per wake-up: bulk output arrives in few large chunks."""
SHORT_READ = 1024
"""A read shorter than this took all the pty had (it hands out about 4 KiB at a time)."""
AGENT_QUEUE = 1024 * 1024
"""Bytes of agent keystrokes waiting for the program to read, past which more are
refused: a program that does not read must not make the user's side grow."""


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyProcess:
    """A program running in a new pty, e.g. the user's ``$SHELL``.

    Args:
        argv: program and arguments.
        cols: initial width.
        rows: initial height.
        env: environment (``TERM`` is set to ``xterm-256color`` unless given).
        on_output: called with every chunk the program writes.
        on_exit: called with the exit status once the program ends.
    """

    def __init__(
        self,
        argv: Sequence[str],
        cols: int = 80,
        rows: int = 24,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        on_output: Callable[[bytes], None] | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cols, self.rows = cols, rows
        self.env = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        self.cwd = cwd
        self.on_output = on_output or (lambda data: None)
        self.on_exit = on_exit or (lambda status: None)
        self.fd = -1
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._pending: list[tuple[bool, bytearray]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self.alternate_screen = False
        """The program draws in the terminal's alternate screen (a full-screen program)."""
        self._programs: tuple[tuple[int, int, bool], frozenset[str], bool] = (
            (-1, -1, False), frozenset(), False)
        """The foreground programs and the verdict, for the job, echo state and screen
        they were found for."""
        self.agent_may_type: Callable[[], bool] = lambda: True
        """Asked before agent keystrokes that waited are delivered (the user's session
        sets it to its guard's check: a grant may run out while they wait)."""

    def start(self) -> None:
        """Spawn the program on a new pty and start reading it.

        Raises:
            ConfigError: if the program cannot be started.
        """
        master, slave = os.openpty()
        _set_size(slave, self.cols, self.rows)

        def make_controlling_tty() -> None:
            # Runs in the child after setsid(): adopt the pty as controlling terminal
            # so job control and Ctrl-C work as in a real terminal.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        try:
            # preexec_fn only runs one ioctl between fork and exec: no locks, no imports.
            self.process = subprocess.Popen(
                self.argv, stdin=slave, stdout=slave, stderr=slave, env=self.env,
                cwd=self.cwd, start_new_session=True,
                preexec_fn=make_controlling_tty,  # noqa: PLW1509
                close_fds=True,
            )
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise ConfigError(f"cannot start {self.argv[0]}: {exc.strerror}") from None
        os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._readable)

    def _readable(self) -> None:
        # A pty hands out about 4 KiB per read; draining what is there in one go
        # turns bulk output into a few large chunks (less work downstream).
        parts: list[bytes] = []
        size = 0
        ended = False
        while size < BATCH:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                data = b""  # EIO: the program closed the pty (exited)
            if not data:
                ended = True
                break
            parts.append(data)
            size += len(data)
            if len(data) < SHORT_READ:
                # An echo or a prompt: all there was. Asking again would only
                # fail (EAGAIN), on the keystroke's path.
                break
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self.alternate_screen = alternate_screen(data, self.alternate_screen)
            self.on_output(data)
        if ended:
            self._finish()

    def _finish(self) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self.fd)
        if self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False
        status = self.process.wait() if self.process else 0
        self.returncode = status
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
        self.on_exit(status)

    @property
    def running(self) -> bool:
        """True until the program has exited."""
        return self.fd >= 0

    def write(self, data: bytes, agent: bool = False) -> None:
        """Type ``data`` into the program (queued if the pty's input is full).

        ``agent`` marks keystrokes typed by the helpdesk agent, which the caller
        (the guard) allowed just before: while they wait in the queue they can
        still be taken back (:meth:`drop_agent_input`), and they are checked
        again when delivered: dropped rather than typed into a password prompt
        or after the grant ran out.
        """
        if not self.running or not data:
            return
        # With nothing waiting these keys go out now: agent keys were checked by the
        # guard a moment ago, in this same call, and only keys that have to wait
        # are checked again when they are delivered.
        fresh = not self._pending
        if self._pending and self._pending[-1][0] == agent:
            self._pending[-1][1].extend(data)
        else:
            self._pending.append((agent, bytearray(data)))
        self._flush(checked=fresh)

    @property
    def queued_input(self) -> int:
        """Bytes typed but not yet accepted by the program's terminal."""
        return sum(len(chunk) for _, chunk in self._pending)

    @property
    def queued_agent_input(self) -> int:
        """Bytes the agent typed but not yet accepted by the program's terminal."""
        return sum(len(chunk) for agent, chunk in self._pending if agent)

    def agent_room(self) -> int:
        """Bytes of agent keystrokes the pty may still queue (see :data:`AGENT_QUEUE`)."""
        return AGENT_QUEUE - self.queued_agent_input

    def drop_agent_input(self) -> int:
        """Forget agent keystrokes not yet delivered (a revoke); return how many bytes."""
        dropped = self.queued_agent_input
        self._pending = [(agent, chunk) for agent, chunk in self._pending if not agent]
        self._flush()
        return dropped

    def _flush(self, checked: bool = False) -> None:
        """Write what waits; ``checked``: the first chunk was allowed just now."""
        assert self._loop is not None
        while self._pending and self.running:
            agent, chunk = self._pending[0]
            if agent and not checked and (self.secret_input() or not self.agent_may_type()):
                # Checked at delivery, not only when accepted: a password prompt may
                # have appeared, or the grant run out, while these keys waited.
                self._pending.pop(0)
                continue
            try:
                written = os.write(self.fd, chunk)
            except BlockingIOError:
                break
            except OSError:
                self._pending.clear()
                break
            del chunk[:written]
            checked = False  # what is left of it, and what follows, waited
            if chunk:
                break
            self._pending.pop(0)
        if self._pending and not self._writing:
            self._loop.add_writer(self.fd, self._flush)
            self._writing = True
        elif not self._pending and self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False

    def resize(self, cols: int, rows: int) -> None:
        """Change the pty size; the program gets SIGWINCH."""
        self.cols, self.rows = max(1, cols), max(1, rows)
        if self.running:
            _set_size(self.fd, self.cols, self.rows)

    def secret_input(self) -> bool:
        """True while the program reads a secret (see :mod:`assist.share.secret`).

        Line editors (readline, vim) also switch echo off, but they echo by
        themselves; a password prompt, or a secret read key by key, does not.
        """
        if not self.running:
            return False
        try:
            lflag = termios.tcgetattr(self.fd)[3]
        except termios.error:
            return False
        if lflag & termios.ECHO:
            return False  # the common case, without looking at processes
        try:
            group = os.tcgetpgrp(self.fd)
        except OSError:
            group = -1
        # Who is in the foreground changes with jobs, not keystrokes: looked up
        # again only when the job, the terminal's mode or the screen changes.
        key = (group, lflag, self.alternate_screen)
        known, programs, verdict = self._programs
        if known != key:
            if known[:2] != key[:2]:
                programs = foreground_programs(self.fd)
            verdict = reads_secret(lflag, self.alternate_screen, programs)
            self._programs = (key, programs, verdict)
        return verdict

    def terminate(self) -> None:
        """Hang up the program's session (like closing a terminal window)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGHUP)
