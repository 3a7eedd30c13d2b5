"""The scripted user of ``assist demo``: a real shell, a real request for help.

It stands on the same :class:`~assist.client.user_session.UserSession` as
``assist help`` and plays the person: it types a few commands in its own
shell, says hello in the chat, allows what the agent asks for after a short
think, and answers the survey. Then it queues again, so the demo can be
played more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from assist.client.helpflow import Status
from assist.client.user_events import AgentJoined, CodeAsked, GrantAsked, StatusChanged, UserEvent
from assist.client.user_session import UserSession
from assist.config import ClientConfig
from assist.errors import AssistError
from assist.share.emulator import Emulator

log = logging.getLogger(__name__)

TOPIC = "demo: my disk is full and I cannot save files"
SCRIPT = (
    "df -h / /tmp 2>/dev/null | head -3",
    "ls -la ~ | head -5",
    "echo 'cannot save report.txt: No space left on device'",
)
THINK = 1.0
"""Seconds the demo user 'thinks' before answering a question."""


@dataclass
class DemoUser:
    """A scripted user waiting for help in the demo."""

    config: ClientConfig
    topic: str = TOPIC
    rounds: int = 3
    cols: int = 100
    rows: int = 30
    statuses: list[Status] = field(default_factory=list)

    async def run(self) -> None:
        """Ask for help ``rounds`` times (each ends when the agent ends it)."""
        for _ in range(self.rounds):
            try:
                await self._once()
            except AssistError as exc:
                log.warning("demo user: %s", exc.message)
                return

    async def _once(self) -> None:
        tasks: list[asyncio.Task[None]] = []

        def event(e: UserEvent) -> None:
            if isinstance(e, StatusChanged):
                self.statuses.append(e.status)
            elif isinstance(e, AgentJoined):
                tasks.append(asyncio.ensure_future(self._play(session)))
            elif isinstance(e, GrantAsked | CodeAsked):
                tasks.append(asyncio.ensure_future(self._answer(session, e)))

        session = UserSession(self.config, self.topic, event,
                              command=["bash", "--norc", "--noprofile"],
                              size=(self.cols, self.rows),
                              env={"PS1": "demo-user$ ", "HISTFILE": "/dev/null"})
        try:
            session.start()
            tasks.append(asyncio.ensure_future(_parse(session.emulator)))
            final = await session.run()
            if final.survey:
                await session.survey(5)
        finally:
            for task in tasks:
                task.cancel()
            await session.close()

    async def _play(self, session: UserSession) -> None:
        """Type like a person would, then explain the problem in the chat."""
        with contextlib.suppress(AssistError):
            for line in SCRIPT:
                await asyncio.sleep(0.6)
                for ch in line:
                    session.write(ch.encode())
                    await asyncio.sleep(0.02)
                session.write(b"\r")
            await asyncio.sleep(0.5)
            await session.say("Hi! My disk is full and I cannot save my report.")

    async def _answer(self, session: UserSession, asked: GrantAsked | CodeAsked) -> None:
        await asyncio.sleep(THINK)
        if isinstance(asked, GrantAsked):
            session.answer(asked.ask, True)
        else:
            session.code(asked.ask, "000000")  # the demo user has no authenticator: this fails


async def _parse(emulator: Emulator) -> None:
    # What the user's terminal view does: keep the screen model current,
    # so the agent's requests for a picture are answered.
    while True:
        emulator.process()
        await asyncio.sleep(1 / 30)
