"""What every end of a media connection shows a person, and how an answering end runs.

The desktop share (:mod:`assist.client.desktop`) and the call
(:mod:`assist.client.call`) each have a user's end and an agent's end. Each
end keeps a state, a verification code and the last error as plain
attributes and reports every change through ``on_change``
(:class:`MediaSide`); the agent's ends answer the user's offers, one signal
at a time and in order, and stop on one path (:class:`AnsweringSide`).
Headless: no media library is imported here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from assist.errors import AssistError
from assist.protocol import messages as m

log = logging.getLogger(__name__)


def nothing() -> None:
    """The default ``on_change``."""
    return None


class MediaSide:
    """A state, a code, the last error and a change callback."""

    state: str
    code: str
    error: str
    on_change: Callable[[], None]
    role = "media"
    """What the end is, in logs."""

    def _set(self, state: str, error: str = "") -> None:
        self.state = state
        if error:
            self.error = error
            log.info("%s: %s", self.role, error)
        self.on_change()

    def _ended(self, state: str) -> None:
        # The media layer says "ended" when the other side hung up or the peer closed
        # (after our own stop too: the end is told once).
        if state == "ended" and self.state not in ("failed", "ended"):
            self._set("ended")


class AnsweringSide(MediaSide):
    """The agent's end: answers the user's offers of one session, in order.

    Subclasses implement :meth:`_answer` (an offer) and :meth:`_relay` (any
    other signal) and :meth:`_close`; :meth:`handle` and :meth:`stop` are here.
    """

    info: m.SessionInfo
    _lock: asyncio.Lock
    """Signals are handled one at a time: a bye that arrives while an offer is being
    answered must close what that answer opens."""

    async def handle(self, msg: m.Signal) -> None:
        """A ``Signal`` of the session from the user; an offer is answered."""
        if msg.session != self.info.session:
            return
        async with self._lock:
            try:
                if msg.kind == "offer":
                    await self._answer(msg)
                else:
                    await self._relay(msg)
            except AssistError as exc:
                self._set("failed", exc.message)

    async def stop(self) -> None:
        """Stop (idempotent); the user is told."""
        async with self._lock:
            await self._close()
        if self.state != "failed":
            self._set("ended")

    async def _answer(self, offer: m.Signal) -> None:
        raise NotImplementedError

    async def _relay(self, msg: m.Signal) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError
