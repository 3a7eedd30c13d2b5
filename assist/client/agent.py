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

    async def hello(self, host: str = "", os_user: str = "", client: str = "",
                    watch: bool = True) -> m.Welcome:
        """Introduce ourselves as an agent.

        ``watch``: receive the queue (pages, then deltas) and the wallboard; a
        script that only acts on one session says no.
        """
        self.welcome = await self.link.request(
            m.Hello(host=host, os_user=os_user, client=client, watch=watch), m.Welcome)
        return self.welcome

    async def queue(self, limit: int | None = None) -> m.QueueList:
        """The queue now, head first, fetched page by page (all of it, or ``limit``)."""
        entries: list[m.QueueEntry] = []
        while True:
            want = m.PAGE if limit is None else min(m.PAGE, limit - len(entries))
            page = await self.link.request(m.ListQueue(offset=len(entries), limit=want),
                                           m.QueueList)
            entries.extend(page.entries)
            done = not page.entries or len(entries) >= page.total
            if done or (limit is not None and len(entries) >= limit):
                return m.QueueList(entries=tuple(entries), now=page.now, total=page.total)

    async def queue_pages(self) -> None:
        """Ask for the whole queue again as pages (after a gap in the deltas)."""
        await self.link.request(m.ListQueue(limit=1), m.QueueList)

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

    async def verify(self, session: str, method: str, note: str = "") -> None:
        """Start verifying the user: ``key``, ``totp`` (the user is asked) or ``attest``.

        The outcome arrives as a :class:`~assist.protocol.messages.Verified` event.
        """
        await self.link.request(m.Verify(session=session, method=method,  # type: ignore[arg-type]
                                         note=note), m.Ok)

    async def ask_grant(self, session: str, scope: str, seconds: float = 0.0) -> None:
        """Ask the user for a permission; the answer arrives as a ``GrantAnswer`` event."""
        await self.link.request(m.AskGrant(session=session, scope=scope,  # type: ignore[arg-type]
                                           seconds=seconds), m.Ok)

    async def wait_grant(self, session: str, scope: str,
                         timeout: float | None = None) -> m.GrantAnswer:
        """Wait for the user's answer to a permission request."""
        answer = await self.link.wait_for(
            lambda msg: isinstance(msg, m.GrantAnswer) and msg.session == session
            and msg.scope == scope, timeout)
        assert isinstance(answer, m.GrantAnswer)
        return answer

    async def send_keys(self, session: str, grant: str, data: bytes) -> None:
        """Type ``data`` into the user's terminal under a control grant.

        A refusal (by the broker or the user's machine) arrives as ``KeysRefused``.
        """
        await self.link.send(m.Keys(session=session, grant=grant, data=data))

    async def annotate(self, session: str, grant: str, annotation: m.Annotation) -> None:
        """Draw on the user's screen under an annotate grant."""
        await self.link.request(m.Annotate(session=session, grant=grant,
                                           annotation=annotation), m.Ok)

    async def clear_annotations(self, session: str, ids: tuple[str, ...] = ()) -> None:
        """Remove annotations from the user's screen (all when ``ids`` is empty)."""
        await self.link.send(m.ClearAnnotations(session=session, ids=ids))

    async def resync(self, session: str) -> None:
        """Ask for a full picture of the user's screen (a ``Snapshot`` event follows).

        Raises:
            BrokerError: if ``session`` is not a live session of this agent.
        """
        await self.link.request(m.Resync(session=session), m.Ok)

    async def handoff(self, session: str, note: str) -> None:
        """Hand the user back to the front of the queue for another agent."""
        await self.link.request(m.Handoff(session=session, note=note), m.Ok)

    async def chat(self, session: str, text: str) -> None:
        """Send a chat line to the user."""
        await self.link.send(m.Chat(session=session, text=text))

    def events(self) -> AsyncIterator[m.Msg]:
        """Broker events: queue pushes, session start/end, user lost."""
        return self.link.events()


def _session_of(msg: m.Msg) -> str:
    if isinstance(msg, m.Started):
        return msg.info.session
    return str(getattr(msg, "session", ""))
