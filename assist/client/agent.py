"""The agent side: see the queue, accept a user, end with a root cause.

Every front end opens its connection the same way::

    async with await AgentClient.connect(config, "assist agent", watch=False) as agent:
        info = await agent.accept()

:meth:`AgentClient.connect` opens the link and says hello; :meth:`close` (or
leaving the ``async with``) closes it; :meth:`reconnect` carries the same
link on over a new connection after a drop and says hello again, the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType

from assist.client.connect import TrustPrompt, open_link, reconnect
from assist.client.link import Link
from assist.config import ClientConfig
from assist.errors import StateError
from assist.protocol import messages as m


class AgentClient:
    """Headless API of ``assist console`` and agent scripts over a started :class:`Link`.

    Args:
        link: a started link to the broker as an agent.
        config: the client config it was opened with (needed to reconnect).
        trust: asked on first contact with an unpinned broker (reconnects).
    """

    def __init__(self, link: Link, config: ClientConfig | None = None,
                 trust: TrustPrompt | None = None) -> None:
        self.link = link
        self.config = config
        self.trust = trust
        self.welcome: m.Welcome | None = None
        self._hello = m.Hello()

    @classmethod
    async def connect(cls, config: ClientConfig, client: str, *, watch: bool = True,
                      trust: TrustPrompt | None = None, host: str = "", os_user: str = "",
                      fast: Callable[[m.Msg], bool] | None = None) -> AgentClient:
        """Open a link to the broker as an agent and say hello.

        Args:
            config: broker address and key; :attr:`config` keeps it, with the
                broker's key pinned if it was new.
            client: what we are, for the broker's logs (``"assist console"``).
            watch: receive the queue and the wallboard (a script acting on one
                session says no).
            trust: asked on first contact with an unpinned broker.
            host: our host name, if we say it.
            os_user: our operating-system account, if we say it.
            fast: hot-path event handler for the link (see :attr:`Link.fast`).

        Raises:
            ConnectionFailed: (or a subclass) if the broker cannot be used.
            BrokerError: if the broker refuses the hello.
        """
        link, config = await open_link(config, "agent", trust)
        agent = cls(link, config, trust)
        link.fast = fast
        try:
            await agent.hello(host, os_user, client, watch)
        except BaseException:
            await link.close()
            raise
        return agent

    async def reconnect(self) -> m.Welcome:
        """After the connection dropped: carry the link on over a new one, hello again.

        Raises:
            StateError: if this client was not opened with :meth:`connect`.
            ConnectionFailed: (or a subclass) if the broker cannot be used.
        """
        if self.config is None:
            raise StateError("this agent client has no config to reconnect with")
        self.config = await reconnect(self.link, self.config, "agent", self.trust)
        return await self._greet()

    async def close(self) -> None:
        """Close the connection."""
        await self.link.close()

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def close_reason(self) -> str:
        """Why the last connection ended ("" while it is up)."""
        return self.link.close_reason

    async def hello(self, host: str = "", os_user: str = "", client: str = "",
                    watch: bool = True) -> m.Welcome:
        """Introduce ourselves as an agent.

        ``watch``: receive the queue (pages, then deltas) and the wallboard; a
        script that only acts on one session says no.
        """
        certificate = self.config.certificate if self.config is not None else ""
        self._hello = m.Hello(host=host, os_user=os_user, client=client, watch=watch,
                              certificate=certificate)
        return await self._greet()

    async def _greet(self) -> m.Welcome:
        """Say the last hello again (on a new connection of the link)."""
        self.welcome = await self.link.request(self._hello, m.Welcome)
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

    async def set_status(self, status: m.Availability) -> None:
        """Become ``available`` or ``away``."""
        await self.link.request(m.SetStatus(status=status), m.Ok)

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

    async def verify(self, session: str, method: m.VerifyMethod, note: str = "") -> None:
        """Start verifying the user: ``key``, ``totp`` (the user is asked) or ``attest``.

        The outcome arrives as a :class:`~assist.protocol.messages.Verified` event.
        """
        await self.link.request(m.Verify(session=session, method=method, note=note), m.Ok)

    async def ask_grant(self, session: str, scope: m.Scope, seconds: float = 0.0) -> None:
        """Ask the user for a permission; the answer arrives as a ``GrantAnswer`` event."""
        await self.link.request(m.AskGrant(session=session, scope=scope, seconds=seconds),
                                m.Ok)

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

    async def make_invite(self, uses: int = 1, seconds: float = 3600.0,
                          name: str = "") -> m.InviteMade:
        """Make an invite (a code the broker stores hashed); see :mod:`assist.client.join`."""
        return await self.link.request(m.MakeInvite(uses=uses, seconds=seconds, name=name),
                                       m.InviteMade)

    async def root_causes(self) -> tuple[str, ...]:
        """Root-cause tags used before, most frequent first (for a pick list)."""
        return (await self.link.request(m.ListRootCauses(), m.RootCauses)).tags

    def events(self) -> AsyncIterator[m.Msg]:
        """Broker events: queue pushes, session start/end, user lost."""
        return self.link.events()


def _session_of(msg: m.Msg) -> str:
    if isinstance(msg, m.Started):
        return msg.info.session
    return str(getattr(msg, "session", ""))
