"""The scripted user of ``assist demo``: a real shell, a real request for help.

It goes through the same :class:`~assist.client.helpflow.HelpRequest`,
:class:`~assist.client.share.TerminalShare` and :class:`~assist.client.guard.Guard`
as ``assist help``, and plays the person: it types a few commands in its own
shell, says hello in the chat, allows what the agent asks for after a short
think, and answers the survey. Then it queues again, so the demo can be
played more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from assist.client.guard import Guard
from assist.client.helpflow import HelpRequest, Status
from assist.client.share import TerminalShare
from assist.client.user import UserClient
from assist.config import ClientConfig
from assist.errors import AssistError
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.share.pty import PtyProcess

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
        emulator = Emulator(self.cols, self.rows)
        parts: dict[str, TerminalShare | Guard] = {}

        def output(data: bytes) -> None:
            share = parts.get("share")
            if isinstance(share, TerminalShare):
                share.output(data)
            else:
                emulator.receive(data)

        pty = PtyProcess(["bash", "--norc", "--noprofile"], self.cols, self.rows,
                         env={"PS1": "demo-user$ ", "HISTFILE": "/dev/null"},
                         on_output=output)
        pty.start()

        async def parse() -> None:
            # What the user's terminal view does: keep the screen model current,
            # so the agent's requests for a picture are answered.
            while True:
                emulator.process()
                await asyncio.sleep(1 / 30)

        tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(parse())]

        async def started(client: UserClient, info: m.SessionInfo) -> None:
            link = client.link  # it carries on over a new connection after a drop
            parts["share"] = TerminalShare(link, info.session, emulator,
                                           secret=pty.secret_input)
            guard = Guard(link, info.session, lambda data: pty.write(data, agent=True),
                          pty.secret_input, drop=pty.drop_agent_input, verified=info.verified,
                          on_ask=lambda msg: tasks.append(asyncio.ensure_future(
                              self._answer(guard, msg))),
                          top=lambda: emulator.top)
            parts["guard"] = guard
            tasks.append(asyncio.ensure_future(self._play(client, info.session, pty)))

        def event(msg: m.Msg) -> None:
            for part in (parts.get("guard"), parts.get("share")):
                if part is not None and part.handle(msg):
                    return

        def status(s: Status) -> None:
            self.statuses.append(s)
            if not request.in_session:
                for part in parts.values():
                    part.stop()
                parts.clear()

        def resumed(info: m.SessionInfo) -> None:
            for part in parts.values():
                part.reannounce()

        request = HelpRequest(self.config, self.topic, status, on_started=started,
                              size=(self.cols, self.rows), on_event=event,
                              on_resumed=resumed)
        try:
            final = await request.run()
            if final.survey:
                await request.survey(5)
        finally:
            for task in tasks:
                task.cancel()
            await request.close()
            pty.terminate()

    async def _play(self, client: UserClient, session: str, pty: PtyProcess) -> None:
        """Type like a person would, then explain the problem in the chat."""
        with contextlib.suppress(AssistError):
            for line in SCRIPT:
                await asyncio.sleep(0.6)
                for ch in line:
                    pty.write(ch.encode())
                    await asyncio.sleep(0.02)
                pty.write(b"\r")
            await asyncio.sleep(0.5)
            await client.link.send(m.Chat(
                session=session, text="Hi! My disk is full and I cannot save my report."))

    async def _answer(self, guard: Guard, msg: m.Msg) -> None:
        await asyncio.sleep(THINK)
        if isinstance(msg, m.AskGrant):
            guard.decide(msg, True)
        elif isinstance(msg, m.AskCode):
            guard.code("000000")  # the demo user has no authenticator: this one fails
