"""``assist help --no-tui`` on a terminal: what the user types, line by line.

The plain terminal has what the app has, as lines: a permission the agent
asks for is a ``[y/N]`` question (No unless the user types ``y``; a yes
typed within :data:`~assist.client.user_events.ARM_DELAY` of the question
does not count, as the app's Allow button is not armed yet), the
authenticator code is asked for the same way, ``r`` takes every permission
back at once, and any other line is a chat message to the agent.

Lines are read when the terminal has one (a reader on the loop, no thread),
so nothing waits on the keyboard when the session ends.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.text import Text

from assist.client.user_events import ARM_DELAY, CodeAsked, GrantAsked, asking
from assist.client.user_session import UserSession
from assist.display import said
from assist.protocol import messages as m

MAX_LINE = 4096
"""Bytes of one typed line kept (a chat line is far shorter)."""
KEYS = ("type a message and Enter to chat · r and Enter revokes every permission · "
        "m and Enter mutes or unmutes the call")
"""The keys of a live session, said under the status line."""


class LineMode:
    """Answers, revokes and chat from the lines the user types.

    Args:
        session: the user's session.
        say: shows a line to the user (above the status line).
        stdin: where the lines come from (a terminal).
    """

    def __init__(self, session: UserSession, say: Callable[[Text], None],
                 stdin: TextIO = sys.stdin) -> None:
        self.session = session
        self.say = say
        self.stdin = stdin
        self._pending: list[tuple[m.AskGrant | m.AskCode, float]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._partial = b""
        self._blocking = True

    def start(self) -> None:
        """Read lines from now on."""
        fd = self.stdin.fileno()
        self._loop = asyncio.get_running_loop()
        self._blocking = os.get_blocking(fd)
        self._loop.add_reader(fd, self._readable)

    def stop(self) -> None:
        """Stop reading (before anything else reads the terminal, e.g. the survey)."""
        if self._loop is not None:
            fd = self.stdin.fileno()
            self._loop.remove_reader(fd)
            # The loop may have made the terminal non-blocking: input() would see an
            # empty read as the end of input.
            os.set_blocking(fd, self._blocking)
            self._loop = None

    def asked(self, event: GrantAsked | CodeAsked) -> None:
        """The agent asks something: put the question."""
        ask = event.ask
        if isinstance(ask, m.AskGrant):
            self.say(said((ask.agent, "bold"), f" {asking(ask)} Allow? [y/N] "))
        else:
            self.say(said((ask.agent, "bold"), " asks for the current code of your "
                          "authenticator app (it goes to the helpdesk, never to the agent). "
                          "Type it and Enter, or just Enter to decline:"))
        self._pending.append((ask, time.monotonic()))

    def _readable(self) -> None:
        try:
            data = os.read(self.stdin.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of input: nothing more will come
            self.stop()
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._partial = self._partial[-MAX_LINE:]
        for line in lines:
            task = asyncio.ensure_future(self.handle(line.decode(errors="replace").strip()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _revoke(self) -> None:
        """Take every permission back, and say no to every permission still asked."""
        declined = [ask for ask, _ in self._pending if not isinstance(ask, m.AskCode)]
        self._pending = [(ask, at) for ask, at in self._pending if isinstance(ask, m.AskCode)]
        for ask in declined:
            self.session.answer(ask, False)
        count = self.session.revoke_all()
        self.say(Text(f"Revoked {count} permission{'s' if count != 1 else ''}: the "
                      "agent can only watch now." if count else
                      "The agent has no permissions."))
        if declined:
            self.say(Text(f"Declined: {', '.join(ask.scope for ask in declined)}."))

    async def handle(self, text: str) -> None:
        """One line the user typed."""
        if text.lower() in ("r", "revoke"):
            # Checked before any question is answered: a question waiting (or many,
            # asked one after another) must never use up the key that takes all back.
            self._revoke()
            return
        if self._pending:
            ask, at = self._pending[0]
            if isinstance(ask, m.AskCode):
                self._pending.pop(0)
                if text:
                    self.session.code(ask, text)
                return
            yes = text.lower() in ("y", "yes")
            if yes and time.monotonic() - at < ARM_DELAY:
                self.say(Text("Too quick: read the question, then answer y or n."))
                return
            self._pending.pop(0)
            granted = self.session.answer(ask, yes)
            self.say(Text(f"Allowed: {ask.scope}. r and Enter takes it back." if granted
                          else f"Declined: {ask.scope}."))
            return
        if text.lower() in ("m", "mute"):
            if self.session.call is None:
                self.say(Text("There is no call to mute."))
            else:
                muted = self.session.toggle_mute()
                self.say(Text("Muted: you hear nothing and the agent cannot hear you (m "
                              "unmutes)." if muted else "Sound back on."))
        elif text and not await self.session.say(text):
            self.say(Text("No agent is with you yet to read that."))
