"""The user's whole request for help, headless: connect, queue, reconnect, meet, end.

:class:`HelpRequest` drives a :class:`~assist.client.UserClient` through the
life of one request and reports every change as a :class:`Status` to a
callback, so a plain CLI and a TUI show the same truth. A lost connection is
retried with backoff (plus jitter, so a restarted broker is not hit by every
client at once) and the place reclaimed with the resume token, kept (0600)
for the whole request: neither a network blip nor a broker restart costs
the user the place in the queue or the session with the agent.

One key holds one request: a second ``assist help`` is told the first one
waits, and may take the place over (``takeover``); the first is then told
(``taken-over``) and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from assist.client.connect import TrustPrompt, open_link, reconnect
from assist.client.link import BrokerError
from assist.client.resume import Place, ResumeStore
from assist.client.user import UserClient
from assist.config import ClientConfig
from assist.errors import AuthRefused, ConnectionFailed, HostKeyMismatch, Unreachable
from assist.protocol import messages as m

log = logging.getLogger(__name__)

Phase = Literal["connecting", "queued", "offered", "connected", "reconnecting", "ended", "left",
                "taken-over"]
BACKOFF = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)
"""Seconds between reconnect attempts (each varied by :data:`JITTER`)."""
JITTER = 0.3
"""Each delay is varied by up to this share, up or down."""


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0-based), with jitter."""
    base = BACKOFF[min(attempt, len(BACKOFF) - 1)]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


Takeover = Callable[[str], Awaitable[bool]]
"""Asked with the broker's words when this key already waits elsewhere: take it over?"""


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
        on_event: every broker event, after the request looked at it.
        on_resumed: called when a live session goes on over a new connection
            (share and guard exist already: they announce their state again).
        takeover: asked whether to take over a request this key holds
            elsewhere; without it, that is an error the caller shows.
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
        on_resumed: Callable[[m.SessionInfo], None] | None = None,
        takeover: Takeover | None = None,
    ) -> None:
        self.config = config
        self.topic = topic
        self.trust = trust
        self.on_status = on_status
        self.on_started = on_started
        self.size = size
        self.on_event = on_event
        self.on_resumed = on_resumed
        self.takeover = takeover
        self.client: UserClient | None = None
        self.status = Status("connecting")
        self._resumes = ResumeStore(config.state)
        self._address = f"{config.host}:{config.port}"
        self._leaving = False
        self._sharing = False
        self._held: str | None = None
        """The session this process held on its last connection (it may take it back)."""
        self._place: Place | None = None
        """This process's place and token (the file keeps them for a restart of the app)."""

    @property
    def in_session(self) -> bool:
        """True while an agent is with the user, reconnects included (the share goes on)."""
        return self._sharing

    def _report(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        self.on_status(self.status)

    async def run(self) -> Status:
        """Run until the session ends or the user leaves; return the final status.

        Raises:
            ConnectionFailed: if the broker cannot be used at all (refused key,
                untrusted or changed host key, never reachable).
            BrokerError: ``already-waiting`` when this key waits elsewhere and
                the request was not taken over.
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
                if self.status.phase in ("queued", "offered", "connected"):
                    attempt = 0  # it worked until now: start the backoff again
                delay = backoff(attempt)
                attempt += 1
                said = f"the helpdesk does not answer ({exc.why})" \
                    if isinstance(exc, Unreachable) else exc.message
                self._report(phase="reconnecting",
                             message=f"{said}; trying again in {delay:.1f} s")
                await asyncio.sleep(delay)

    async def _once(self) -> Status:
        if self.client is None:
            self._report(phase="connecting")
            link, self.config = await open_link(self.config, "user", self.trust)
            self.client = UserClient(link)
        else:
            self._report(phase="reconnecting")
            self.config = await reconnect(self.client.link, self.config, "user", self.trust)
        client = self.client
        link = client.link
        link.fast = self._fast
        try:
            welcome = await client.hello(self.config.hostname, self.config.os_user, "assist",
                                         self.config.certificate)
            self._report(broker=welcome.broker)
            ended = await self._enter_queue(client)
            if ended is not None:
                return ended
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

    def _fast(self, msg: m.Msg) -> bool:
        # Agent keystrokes go to the guard from the reader: no queue, no task switch.
        if isinstance(msg, m.Keys) and self.on_event is not None and self._sharing:
            self.on_event(msg)
            return True
        return False

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

    async def _enter_queue(self, client: UserClient) -> Status | None:
        """Take the place back (or join); return the final status if the session ended."""
        # This process's own place first; the file only after a restart of the app
        # (it is shared by every `assist help` of this account and broker).
        place = self._place or self._resumes.load(self._address)
        reply: m.Queued | m.Started | None = None
        if place is not None and place.topic == self.topic:
            # Our own place from before this connection: take it back even if the
            # broker has not noticed the old connection is dead.
            ours = place.session == self._held
            try:
                reply = await self._join(client, place.token, takeover=ours)
            except BrokerError as exc:
                if exc.code == "state":
                    # An agent is picking the place up right now: try again shortly.
                    raise ConnectionFailed(exc.message) from None
                if exc.code != "not-found":
                    raise
                log.info("resume refused: %s", exc.message)
                self._forget(place)
                if self._sharing:
                    # The session ended while we were away: that is the end, not a
                    # reason to ask for help again.
                    self._sharing = False
                    self._held = None
                    self._report(phase="ended", message=exc.message, survey=False)
                    return self.status
                if self.status.session == place.session:
                    self._report(message="your earlier place had expired; joined again")
        if reply is None:
            reply = await self._join(client, None, takeover=False)
        await self._placed(client, reply)
        return None

    def _keep(self, place: Place) -> None:
        self._place = place
        self._resumes.save(self._address, place)

    def _forget(self, place: Place | None = None) -> None:
        """Forget the place; the file entry only if it is ours (another app may own it)."""
        mine = place or self._place
        self._place = None
        saved = self._resumes.load(self._address)
        if saved is not None and (mine is None or saved.token == mine.token):
            self._resumes.save(self._address, None)

    async def _join(self, client: UserClient, token: str | None,
                    takeover: bool) -> m.Queued | m.Started:
        """Join (or resume); asks :attr:`takeover` if this key waits elsewhere."""
        try:
            return await client.join(self.topic, resume=token, takeover=takeover)
        except BrokerError as exc:
            if exc.code != "already-waiting" or takeover:
                raise
            if self.takeover is None or not await self.takeover(exc.message):
                raise BrokerError(exc.code, f"{exc.message[:1].upper()}{exc.message[1:]}. "
                                  "Run `assist help --take-over` to move it here.") from None
            return await client.join(self.topic, resume=token, takeover=True)

    async def _placed(self, client: UserClient, reply: m.Queued | m.Started) -> None:
        if isinstance(reply, m.Queued):
            self._held = reply.session
            self._keep(Place(reply.session, reply.resume, self.topic))
            message = "welcome back: you kept your place" if reply.resumed else ""
            if self._sharing:
                # The agent went while we were away: the session's parts stop.
                self._sharing = False
                message = "the agent left while you were away: you are back in the queue"
            self._report(phase="queued", session=reply.session, position=reply.position,
                         queued_at=reply.queued_at, agent=None, info=None, message=message)
            return
        info = reply.info
        self._held = info.session
        self._keep(Place(info.session, client.resume or "", self.topic))
        if self._sharing and self.on_resumed is not None:
            self.on_resumed(info)
        elif not self._sharing and self.on_started is not None:
            await self.on_started(client, info)
        self._sharing = True
        self._report(phase="connected", session=info.session, info=info, agent=info.agent,
                     queued_at=info.queued_at,
                     message="reconnected: the session goes on")

    async def _handle(self, client: UserClient, event: m.Msg) -> Status | None:
        if isinstance(event, m.Position):
            self._report(position=event.position, waiting=event.waiting)
        elif isinstance(event, m.Offered):
            self._report(phase="offered", agent=event.agent, message="")
            try:
                info = await client.ready(*self.size)
            except BrokerError as exc:
                # The offer was withdrawn (the agent went, or it timed out): the
                # broker puts us back at the front and says so.
                self._report(phase="queued", agent=None,
                             message=f"the agent could not start the session ({exc.message})")
                return None
            if self.on_started is not None:
                await self.on_started(client, info)
            self._sharing = True
            self._report(phase="connected", info=info, agent=info.agent)
        elif isinstance(event, m.AgentLost):
            self._sharing = False
            why = event.reason or "the agent's connection dropped"
            self._report(phase="queued", position=event.position, agent=None, info=None,
                         message=f"{why}: you are back at the front")
        elif isinstance(event, m.Away) and event.who == "agent":
            wait = max(0, round(event.until - time.time()))
            self._report(message=f"the agent's connection dropped; waiting up to {wait} s "
                                 "for them to come back")
        elif isinstance(event, m.Back) and event.who == "agent":
            self._report(message="the agent is back")
        elif isinstance(event, m.TakenOver):
            self._held = None
            self._sharing = False
            self._report(phase="taken-over", message="another `assist help` with your key "
                                                     "took this request over")
            return self.status
        elif isinstance(event, m.Ended):
            self._held = None
            self._sharing = False
            self._forget()
            self._report(phase="ended", resolved=event.resolved, survey=event.survey,
                         message=f"session ended by the {event.reason}")
            return self.status
        return None

    async def leave(self) -> None:
        """Leave the queue, or end the session if an agent is with the user."""
        self._leaving = True
        client = self.client
        self._forget()
        if client is None:
            return
        with contextlib.suppress(ConnectionFailed, BrokerError):
            if self.status.phase == "connected":
                await client.end()
            else:
                await client.leave()
        self._report(phase="left", message="you left the queue")
