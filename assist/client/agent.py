"""The agent side: see the queue, accept a user, end with a root cause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from assist.client.link import Link
from assist.errors import StateError
from assist.protocol import messages as m


class AgentClient:
    """Headless API of ``assist console`` and agent scripts over a started :class:`Link`."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.welcome: m.Welcome | None = None

    async def hello(self, host: str = "", os_user: str = "", client: str = "") -> m.Welcome:
        """Introduce ourselves as an agent."""
        self.welcome = await self.link.request(
            m.Hello(host=host, os_user=os_user, client=client), m.Welcome)
        return self.welcome

    async def queue(self) -> m.QueueList:
        """The queue now, head first."""
        return await self.link.request(m.ListQueue(), m.QueueList)

    async def set_status(self, status: str) -> None:
        """Become ``available`` or ``away``."""
        await self.link.request(m.SetStatus(status=status), m.Ok)  # type: ignore[arg-type]

    async def accept(self, session: str | None = None, timeout: float = 20.0) -> m.SessionInfo:
        """Take a user (or the head of the queue) and wait until the session starts.

        Raises:
            BrokerError: if the queue is empty or the user is gone.
            StateError: if the user's side did not answer within ``timeout``.
        """
        waiter = self.link.wait_for(
            lambda msg: isinstance(msg, m.Started | m.UserLost)
            and (session is None or _session_of(msg) == session),
            timeout,
        )
        wait = asyncio.ensure_future(waiter)
        try:
            await self.link.request(m.Accept(session=session), m.Ok)
            event = await wait
        finally:
            wait.cancel()
        if isinstance(event, m.UserLost):
            raise StateError(f"the user of session {event.session} left before it started")
        assert isinstance(event, m.Started)
        return event.info

    async def end(self, session: str, root_cause: str, resolved: bool = True) -> None:
        """End a session, tagging its root cause."""
        await self.link.request(
            m.End(session=session, root_cause=root_cause, resolved=resolved), m.Ok)

    def events(self) -> AsyncIterator[m.Msg]:
        """Broker events: queue pushes, session start/end, user lost."""
        return self.link.events()


def _session_of(msg: m.Msg) -> str:
    if isinstance(msg, m.Started):
        return msg.info.session
    return str(getattr(msg, "session", ""))
