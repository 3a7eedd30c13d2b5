"""The user side: join the queue, wait, meet the agent, leave."""

from __future__ import annotations

from collections.abc import AsyncIterator

from assist.client.link import Link
from assist.protocol import messages as m


class UserClient:
    """Headless API of ``assist help`` over a started :class:`Link`."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.session: str | None = None
        self.resume: str | None = None
        self.welcome: m.Welcome | None = None

    async def hello(self, host: str = "", os_user: str = "", client: str = "") -> m.Welcome:
        """Introduce ourselves; the answer says who the broker thinks we are."""
        self.welcome = await self.link.request(
            m.Hello(host=host, os_user=os_user, client=client), m.Welcome)
        return self.welcome

    async def join(self, topic: str, resume: str | None = None) -> m.Queued:
        """Join the queue (or reclaim a place with a resume token)."""
        queued = await self.link.request(m.Join(topic=topic, resume=resume), m.Queued)
        self.session, self.resume = queued.session, queued.resume
        return queued

    async def leave(self) -> None:
        """Leave the queue; the broker records the session as abandoned."""
        if self.session is not None:
            await self.link.request(m.Leave(session=self.session), m.Ok)
            self.session = None

    async def ready(self, cols: int = 80, rows: int = 24) -> m.SessionInfo:
        """Answer an offer: our side is set up, start the session."""
        assert self.session is not None, "join first"
        started = await self.link.request(m.Ready(session=self.session, cols=cols, rows=rows),
                                          m.Started)
        return started.info

    async def end(self) -> None:
        """End a live session from the user's side."""
        if self.session is not None:
            await self.link.request(m.End(session=self.session), m.Ok)

    def events(self) -> AsyncIterator[m.Msg]:
        """Broker events: positions, offers, session start/end, agent lost."""
        return self.link.events()
