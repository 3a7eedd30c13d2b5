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

    async def hello(self, host: str = "", os_user: str = "", client: str = "",
                    certificate: str = "") -> m.Welcome:
        """Introduce ourselves; the answer says who the broker thinks we are.

        ``certificate``: the OpenSSH certificate of our key, if it has one.
        """
        self.welcome = await self.link.request(
            m.Hello(host=host, os_user=os_user, client=client, certificate=certificate),
            m.Welcome)
        return self.welcome

    async def join(self, topic: str, resume: str | None = None,
                   takeover: bool = False) -> m.Queued | m.Started:
        """Join the queue, or come back to a place with its resume token.

        A place that is a live session answers with ``Started`` (``resumed``).
        ``takeover`` moves the request this key already holds (or the one
        the token names, if another connection holds it) to this client.

        Raises:
            BrokerError: ``already-waiting`` if the key (or the token's place)
                is held by another client and ``takeover`` is not set;
                another code if the place expired.
        """
        reply = await self.link.request_any(
            m.Join(topic=topic, resume=resume, takeover=takeover), (m.Queued, m.Started))
        if isinstance(reply, m.Queued):
            self.session, self.resume = reply.session, reply.resume
        else:
            assert isinstance(reply, m.Started)
            self.session = reply.info.session
            self.resume = reply.resume or resume
        return reply

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
