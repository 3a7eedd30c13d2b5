"""Terminal sharing, headless: the user's side sends, the agent's side views.

:class:`TerminalShare` connects a :class:`~assist.share.pty.PtyProcess` to
the broker: raw output is sent at once (never waiting on the emulator), the
local :class:`~assist.share.emulator.Emulator` catches up off the hot path,
and a ``Resync`` from the broker is answered with a snapshot. When the
user's own link to the broker is congested, output is dropped and a snapshot
follows once it drains, so the shell is never throttled by sharing.

:class:`TerminalViewer` is the agent's mirror of one session's screen.
"""

from __future__ import annotations

import contextlib

from assist.errors import ConnectionFailed
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.transport.channel import ChannelClosed, MessageChannel

SEND_LIMIT = 1024 * 1024
"""Unsent bytes to the broker beyond which output is dropped (then resynced)."""
CHUNK = 256 * 1024


class TerminalShare:
    """Stream one session's terminal from the user's machine."""

    def __init__(self, channel: MessageChannel, session: str, emulator: Emulator) -> None:
        self.channel = channel
        self.session = session
        self.emulator = emulator
        self.active = True
        self.dropped = 0
        self._owe_snapshot = False

    def output(self, data: bytes) -> None:
        """Called with every chunk the pty produced: show locally, send raw."""
        self.emulator.receive(data)
        if not self.active:
            return
        if self.channel.buffered() > SEND_LIMIT:
            self.dropped += len(data)
            self._owe_snapshot = True
            return
        if self._owe_snapshot:
            self.snapshot()
            return
        self._send_raw(data)

    def _send_raw(self, data: bytes) -> None:
        for start in range(0, len(data), CHUNK):
            self._send(m.Output(session=self.session, data=data[start : start + CHUNK]))

    def _send(self, msg: m.Msg) -> None:
        with contextlib.suppress(ChannelClosed, ConnectionFailed):
            self.channel.send_nowait(msg)

    def snapshot(self) -> None:
        """Send the whole current screen (after parsing everything received)."""
        self._owe_snapshot = False
        self.emulator.feed(b"")
        cols, rows = self.emulator.size
        self._send(m.Snapshot(session=self.session, cols=cols, rows=rows,
                              data=self.emulator.snapshot()))

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size."""
        self.emulator.resize(cols, rows)
        if self.active:
            self._send(m.Resize(session=self.session, cols=cols, rows=rows))

    def handle(self, msg: m.Msg) -> bool:
        """Handle a broker event meant for sharing; return True if it was one."""
        if isinstance(msg, m.Resync) and msg.session == self.session:
            if self.channel.buffered() > SEND_LIMIT:
                self._owe_snapshot = True
            else:
                self.snapshot()
            return True
        return False

    def stop(self) -> None:
        """Stop sending (session over); the local screen goes on."""
        self.active = False


class TerminalViewer:
    """The agent's live copy of a user's screen."""

    def __init__(self, session: str, cols: int = 80, rows: int = 24) -> None:
        self.session = session
        self.emulator = Emulator(cols, rows)
        self.frames = 0

    def handle(self, msg: m.Msg) -> bool:
        """Apply a stream message; return True if it changed the screen."""
        if getattr(msg, "session", None) != self.session:
            return False
        if isinstance(msg, m.Output):
            self.emulator.receive(msg.data)
        elif isinstance(msg, m.Snapshot):
            # A snapshot replaces whatever was missed, so drop the unparsed backlog.
            self.emulator = Emulator(msg.cols, msg.rows)
            self.emulator.feed(msg.data)
        elif isinstance(msg, m.Resize):
            self.emulator.resize(msg.cols, msg.rows)
        else:
            return False
        self.frames += 1
        return True
