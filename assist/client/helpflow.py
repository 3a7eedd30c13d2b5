"""The user's whole request for help, headless: connect, queue, reconnect, meet, end.

:class:`HelpRequest` drives a :class:`~assist.client.UserClient` through the
life of one request and reports every change as a :class:`Status` to a
callback, so a plain CLI and a TUI show the same truth. A lost connection is
retried with backoff and the place in the queue reclaimed with the resume
token: neither a network blip nor a broker restart costs the user the place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from assist.client.connect import TrustPrompt, open_link
from assist.client.link import BrokerError
from assist.client.resume import Place, ResumeStore
from assist.client.user import UserClient
from assist.config import ClientConfig
from assist.errors import AuthRefused, ConnectionFailed, HostKeyMismatch
from assist.protocol import messages as m

log = logging.getLogger(__name__)

Phase = Literal["connecting", "queued", "offered", "connected", "reconnecting", "ended", "left"]
BACKOFF = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class Status:
    """What the user should see now."""

    phase: Phase
    session: str | None = None
    position: int | None = None
    waiting: int | None = None
    queued_at: float | None = None
    agent: str | None = None
    broker: str = ""
    message: str = ""
    info: m.SessionInfo | None = None
    resolved: bool = False
    survey: bool = False


class HelpRequest:
    """One request for help, from joining the queue to the end of the session.

    Args:
        config: the client config (broker address, key, pinned host key).
        topic: what the user needs help with.
        on_status: called with every new :class:`Status`.
        trust: asked on first contact with an unpinned broker.
        on_started: awaited when the session starts, before it is reported
            (the TUI starts sharing here); gets the client and session info.
        size: terminal size reported to the agent.
    """

    def __init__(
        self,
        config: ClientConfig,
        topic: str,
        on_status: Callable[[Status], None],
        trust: TrustPrompt | None = None,
        on_started: Callable[[UserClient, m.SessionInfo], Awaitable[None]] | None = None,
        size: tuple[int, int] = (80, 24),
        on_event: Callable[[m.Msg], None] | None = None,
    ) -> None:
        self.config = config
        self.topic = topic
        self.trust = trust
        self.on_status = on_status
        self.on_started = on_started
        self.size = size
        self.on_event = on_event
        self.client: UserClient | None = None
        self.status = Status("connecting")
        self._resumes = ResumeStore(config.state)
        self._address = f"{config.host}:{config.port}"
        self._leaving = False

    def _report(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        self.on_status(self.status)

    async def run(self) -> Status:
        """Run until the session ends or the user leaves; return the final status.

        Raises:
            ConnectionFailed: if the broker cannot be used at all (refused key,
                untrusted or changed host key, never reachable).
        """
        attempt = 0
        while True:
            try:
                return await self._once()
            except ConnectionFailed as exc:
                # Only a connection that once worked is worth retrying; a refused
                # key or a changed host key will not fix itself.
                if self.client is None or self._leaving or isinstance(
                        exc, HostKeyMismatch | AuthRefused):
                    raise
                delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                attempt += 1
                self._report(phase="reconnecting",
                             message=f"{exc.message}; retrying in {delay:g} s")
                await asyncio.sleep(delay)

    async def _once(self) -> Status:
        self._report(phase="connecting" if self.client is None else "reconnecting")
        link, self.config = await open_link(self.config, "user", self.trust)
        client = UserClient(link)
        self.client = client
        try:
            welcome = await client.hello(self.config.hostname, self.config.os_user, "assist")
            self._report(broker=welcome.broker)
            await self._enter_queue(client)
            async for event in client.events():
                if self.on_event is not None:
                    self.on_event(event)
                final = await self._handle(client, event)
                if final is not None:
                    # Keep the link open for the survey; close() ends it.
                    return final
            raise ConnectionFailed(f"lost the connection to the broker ({link.close_reason})")
        except BaseException:
            await link.close()
            raise

    async def survey(self, score: int) -> None:
        """Send the satisfaction answer (1-5) for the session that just ended."""
        if self.client is None or self.status.session is None:
            return
        with contextlib.suppress(ConnectionFailed, BrokerError):
            await self.client.link.request(m.Survey(session=self.status.session, score=score),
                                           m.Ok)

    async def close(self) -> None:
        """Close the connection to the broker."""
        if self.client is not None:
            await self.client.link.close()

    async def _enter_queue(self, client: UserClient) -> None:
        place = self._resumes.load(self._address)
        queued: m.Queued | None = None
        if place is not None and place.topic == self.topic:
            try:
                queued = await client.join(self.topic, resume=place.token)
            except BrokerError as exc:
                log.info("resume refused: %s", exc.message)
                self._resumes.save(self._address, None)
                if self.status.session == place.session:
                    self._report(message="your earlier place had expired; joined again")
        if queued is None:
            queued = await client.join(self.topic)
        self._resumes.save(self._address, Place(queued.session, queued.resume, self.topic))
        self._report(phase="queued", session=queued.session, position=queued.position,
                     queued_at=queued.queued_at, agent=None,
                     message="welcome back: you kept your place" if queued.resumed else "")

    async def _handle(self, client: UserClient, event: m.Msg) -> Status | None:
        if isinstance(event, m.Position):
            self._report(position=event.position, waiting=event.waiting)
        elif isinstance(event, m.Offered):
            self._report(phase="offered", agent=event.agent, message="")
            info = await client.ready(*self.size)
            self._resumes.save(self._address, None)
            if self.on_started is not None:
                await self.on_started(client, info)
            self._report(phase="connected", info=info, agent=info.agent)
        elif isinstance(event, m.AgentLost):
            self._resumes.save(self._address, Place(event.session, client.resume or "",
                                                    self.topic))
            why = event.reason or "the agent's connection dropped"
            self._report(phase="queued", position=event.position, agent=None, info=None,
                         message=f"{why}: you are back at the front")
        elif isinstance(event, m.Ended):
            self._resumes.save(self._address, None)
            self._report(phase="ended", resolved=event.resolved, survey=event.survey,
                         message=f"session ended by the {event.reason}")
            return self.status
        return None

    async def leave(self) -> None:
        """Leave the queue, or end the session if an agent is with the user."""
        self._leaving = True
        client = self.client
        self._resumes.save(self._address, None)
        if client is None:
            return
        with contextlib.suppress(ConnectionFailed, BrokerError):
            if self.status.phase == "connected":
                await client.end()
            else:
                await client.leave()
        self._report(phase="left", message="you left the queue")
