"""Terminal sharing, headless: the user's side sends, the agent's side views.

:class:`TerminalShare` connects a :class:`~assist.share.pty.PtyProcess` to
the broker: raw output is sent at once (never waiting on the emulator), the
local :class:`~assist.share.emulator.Emulator` catches up off the hot path,
and a ``Resync`` from the broker is answered with a snapshot. Raw output is
capped at :data:`RAW_RATE` (far above what a person can read) and at
:data:`SEND_LIMIT` unsent bytes: beyond either, bytes are not sent, the
agent gets a picture of the screen twice a second, and once output goes
quiet and the local screen has caught up, one exact snapshot replaces what
was skipped. So a ``cat`` of a huge file costs the shell almost nothing more
than it costs without sharing.

:class:`TerminalViewer` is the agent's mirror of one session's screen.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence

from assist.errors import ConfigError, ConnectionFailed, ProtocolError
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.transport.channel import ChannelClosed, Outlet

SEND_LIMIT = 1024 * 1024
"""Unsent bytes to the broker beyond which output is dropped (then resynced)."""
CHUNK = 256 * 1024
RAW_RATE = 2 * 1024 * 1024
"""Raw bytes per second sent at most; bulk beyond it is shown by snapshots."""
RAW_BURST = 512 * 1024
"""Raw bytes that may go out at once after a quiet spell."""
SETTLE = 0.05
"""Quiet time after skipped output before the exact snapshot is sent."""
PROGRESS = 0.5
"""Interval of screen pictures sent while output is being skipped."""
EXACT_PARSE = 32 * 1024
"""Unparsed bytes that :meth:`TerminalShare.snapshot` may parse on the spot."""
SNAPSHOT_LIMIT = 600 * 1024
"""Largest picture sent with colours (it must fit in one 1 MiB message once encoded)."""
HOLD_LIMIT = 4096
"""With redaction on, an unfinished line up to this size waits for the rest of it."""
HOLD_QUIET = 0.03
"""... but no longer than this once output pauses (a prompt, typing)."""


REDACTED = b"[redacted]"


def compile_redactions(patterns: Sequence[str]) -> list[re.Pattern[bytes]]:
    """Compile the user's redaction rules (regular expressions over the output).

    Raises:
        ConfigError: naming the rule that is not a valid regular expression.
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern.encode()))
            re.compile(pattern)  # also used over the screen's text (snapshots)
        except re.error as exc:
            raise ConfigError(f"redaction rule {pattern!r} is not a valid regular "
                              f"expression: {exc}") from None
    return compiled


class TerminalShare:
    """Stream one session's terminal from the user's machine.

    Args:
        channel: where messages to the broker go (the link, which outlives
            reconnects, or a channel).
        session: the live session id.
        emulator: the user's own screen model (shared with their view).
        secret: True while the pty reads a secret (echo off); output is then
            withheld and the agent told so.
        redact: patterns masked in everything that leaves the machine.
    """

    def __init__(self, channel: Outlet, session: str, emulator: Emulator,
                 secret: Callable[[], bool] | None = None,
                 redact: Sequence[re.Pattern[bytes]] = ()) -> None:
        self.channel = channel
        self.session = session
        self.emulator = emulator
        self.secret = secret or (lambda: False)
        self.redact = list(redact)
        # The same rules over the screen's text, for snapshots.
        self.mask = [re.compile(p.pattern.decode("utf-8", "replace"), p.flags & ~re.ASCII)
                     for p in self.redact]
        self._held = bytearray()
        self._hold_timer: asyncio.TimerHandle | None = None
        self.hidden = False
        """Output is withheld now (a secret is read, or the user paused)."""
        self.paused = False
        """The user paused sharing (privacy pause): see :meth:`pause`."""
        self._why: m.HiddenWhy = "secret"
        self.active = True
        self.dropped = 0
        self._owe_snapshot = False
        self._tokens = float(RAW_BURST)
        self._refilled = time.monotonic()
        self._last_skip = 0.0
        self._last_picture = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def output(self, data: bytes) -> None:
        """Called with every chunk the pty produced: show locally, send raw."""
        # Printed while a secret is read: shown here, never in a picture that leaves.
        hidden = self.check_secret()
        self.emulator.receive(data, hidden=hidden)
        if not self.active or hidden:
            return
        now = time.monotonic()
        self._tokens = min(RAW_BURST, self._tokens + (now - self._refilled) * RAW_RATE)
        self._refilled = now
        if self._owe_snapshot or self._tokens < len(data) \
                or self.channel.buffered() > SEND_LIMIT:
            self._skip(len(data), now)
            return
        self._tokens -= len(data)
        self._send_raw(data)

    def check_secret(self) -> bool:
        """Follow the pty's echo state; return True while output is withheld.

        Called with every chunk and on a short timer, since a password prompt
        may sit silent for a while.
        """
        paused = self.active and self.paused
        secret = paused or (self.active and self.secret())
        why: m.HiddenWhy = "paused" if paused else "secret"
        if secret != self.hidden or (secret and why != self._why):
            # Shown again: the message names what ended (the broker audits it).
            self.hidden, self._why = secret, why if secret else self._why
            self._send(m.Hidden(session=self.session, on=secret, why=why))
            if not secret:
                # The agent's view catches up; what was printed meanwhile stays blank
                # in the picture (the emulator knows those lines) until wiped.
                self._skip(0, time.monotonic())
        return self.hidden

    def pause(self, on: bool) -> None:
        """The user paused sharing (``on``) or resumed: while paused nothing leaves,
        not even a picture, and the agent is told why its view stopped."""
        self.paused = on
        self.check_secret()

    def _redact(self, data: bytes) -> bytes:
        for pattern in self.redact:
            data = pattern.sub(REDACTED, data)
        return data

    def _skip(self, size: int, now: float) -> None:
        self.dropped += size
        self._owe_snapshot = True
        self._last_skip = now
        if self._timer is None:
            self._last_picture = now
            self._timer = asyncio.get_running_loop().call_later(SETTLE, self._settle)

    def _settle(self) -> None:
        """While owing a snapshot: send pictures during bulk, the exact one when quiet."""
        self._timer = None
        if not self._owe_snapshot or not self.active or self.hidden:
            return
        now = time.monotonic()
        congested = self.channel.buffered() > SEND_LIMIT // 4
        if now - self._last_skip >= SETTLE and not congested \
                and self.emulator.backlog <= EXACT_PARSE:
            self.snapshot()
            return
        if now - self._last_picture >= PROGRESS and not congested:
            # The screen as parsed so far: progress for the agent, not yet exact.
            self._last_picture = now
            self._send_picture()
        self._timer = asyncio.get_running_loop().call_later(SETTLE, self._settle)

    def _send_raw(self, data: bytes) -> None:
        if self.redact:
            # A secret split between two reads must still match: hold back an
            # unfinished line briefly and redact it together with what follows.
            data = bytes(self._held) + data
            self._held.clear()
            cut = data.rfind(b"\n") + 1
            if cut < len(data) and len(data) - cut <= HOLD_LIMIT:
                self._held += data[cut:]
                data = data[:cut]
                if self._hold_timer is not None:
                    self._hold_timer.cancel()
                self._hold_timer = asyncio.get_running_loop().call_later(
                    HOLD_QUIET, self._release_held)
            data = self._redact(data)
        for start in range(0, len(data), CHUNK):
            self._send(m.Output(session=self.session, data=data[start : start + CHUNK]))

    def _release_held(self) -> None:
        self._hold_timer = None
        if self._held and self.active and not self.hidden:
            data = self._redact(bytes(self._held))
            self._held.clear()
            self._send(m.Output(session=self.session, data=data))

    def _send(self, msg: m.Msg) -> None:
        # Too large (a huge coloured screen) is dropped like a lost frame: the
        # next snapshot repairs the view; the shell is never affected.
        try:  # not contextlib.suppress: this is every chunk's path
            self.channel.send_nowait(msg)
        except (ChannelClosed, ConnectionFailed, ProtocolError):
            return

    def snapshot(self) -> None:
        """Send the whole current screen (after parsing everything received).

        After it, raw output continues exactly where the snapshot left off.
        """
        self._owe_snapshot = False
        self._tokens = float(RAW_BURST)
        self._held.clear()  # the picture shows it
        self.emulator.feed(b"")
        self._send_picture()

    def _send_picture(self) -> None:
        cols, rows = self.emulator.size
        data = self.emulator.snapshot(self.mask)
        if len(data) > SNAPSHOT_LIMIT:
            data = self.emulator.snapshot(self.mask, plain=True)
        self._send(m.Snapshot(session=self.session, cols=cols, rows=rows, data=data,
                              top=self.emulator.top))

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size."""
        self.emulator.resize(cols, rows)
        if self.active:
            self._send(m.Resize(session=self.session, cols=cols, rows=rows))

    def handle(self, msg: m.Msg) -> bool:
        """Handle a broker event meant for sharing; return True if it was one."""
        if isinstance(msg, m.Resync) and msg.session == self.session:
            if self.hidden or self.channel.buffered() > SEND_LIMIT \
                    or self.emulator.backlog > EXACT_PARSE:
                # Not now: the settle timer sends it once the screen has caught up.
                self._skip(0, time.monotonic())
            else:
                self.snapshot()
            return True
        return False

    def reannounce(self) -> None:
        """Say again whether a secret is being read (after a reconnect the broker
        does not know); the broker then asks for a fresh picture."""
        if self.active:
            self._send(m.Hidden(session=self.session, on=self.hidden, why=self._why))

    def stop(self) -> None:
        """Stop sending (session over); the local screen goes on."""
        self.active = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None


class TerminalViewer:
    """The agent's live copy of a user's screen."""

    def __init__(self, session: str, cols: int = 80, rows: int = 24) -> None:
        self.session = session
        self.emulator = Emulator(cols, rows)
        self.frames = 0
        self.hidden = False
        """The user's output is withheld (:attr:`paused` says if by the user's choice)."""
        self.paused = False

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
            self.emulator.top = msg.top
        elif isinstance(msg, m.Resize):
            self.emulator.resize(msg.cols, msg.rows)
        elif isinstance(msg, m.Hidden):
            self.hidden = msg.on
            self.paused = msg.on and msg.why == "paused"
        else:
            return False
        self.frames += 1
        return True
