"""A first-line bot: takes queued users whose topic a flow matches and runs the flow.

The flows file holds runbooks with a ``match`` pattern over the help topic::

    flows:
      - name: disk full
        match: "(?i)disk|space"
        steps: [...]

The bot is an agent like any other (registered with ``assist agents add``).
It watches the queue on one connection (pages, then deltas, kept in a
:class:`~assist.core.queueview.QueueMirror`) and serves each user on a
connection of its own, one user at a time. When a flow finishes the session ends with
the flow's root cause; when it cannot (a step fails, the user declines or
revokes), the user is handed to the human queue at the front.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from assist.client.agent import AgentClient
from assist.client.runbook import (
    DEFAULT_TIMEOUT,
    Runbook,
    RunbookRunner,
    RunResult,
    parse_runbook,
    read_yaml,
)
from assist.core.queueview import QueueMirror
from assist.errors import AssistError, ConfigError
from assist.protocol import messages as m

log = logging.getLogger(__name__)

REMEMBERED = 10_000
"""Sessions a bot remembers having taken (it never takes one twice)."""

Connect = Callable[[bool], Awaitable[AgentClient]]
"""Opens a new connection of the bot's agent, said hello; the flag: watch the queue."""


@dataclass(frozen=True)
class Outcome:
    """What the bot did for one user."""

    session: str
    user: str
    topic: str
    flow: str
    handled: bool
    reason: str = ""


def load_flows(path: Path) -> list[Runbook]:
    """Read a flows file: runbooks that each have a ``match`` pattern.

    Raises:
        ConfigError: for a missing file, bad YAML, or a flow without ``match``.
    """
    data = read_yaml(path)
    flows = data.get("flows") if isinstance(data, dict) else None
    if not isinstance(flows, list) or not flows:
        raise ConfigError(f"{path}: expected `flows:` with a list of runbooks")
    books = [parse_runbook(flow, f"{path} flow {i}") for i, flow in enumerate(flows, 1)]
    for i, book in enumerate(books, 1):
        if not book.match:
            raise ConfigError(f"{path} flow {i} ({book.name}): a flow needs `match`, a "
                              "pattern over the help topic")
    return books


class Bot:
    """Serve matching users from the queue with flows, handing the rest to humans.

    Args:
        connect: opens a new connection of the bot's agent.
        flows: the runbooks to match topics against (first match wins).
        on_outcome: told what happened for each user.
        timeout: seconds a step waits for the user.
    """

    def __init__(self, connect: Connect, flows: list[Runbook],
                 on_outcome: Callable[[Outcome], None] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.connect = connect
        self.flows = flows
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.timeout = timeout
        self._had: dict[str, None] = {}
        """Sessions this bot took (oldest first, at most :data:`REMEMBERED`): its view of
        the queue may show one it just handed on as it was before, for a moment."""

    def flow_for(self, entry: m.QueueEntry) -> Runbook | None:
        """The flow for a waiting user, or ``None`` if the bot should leave them be.

        Users back from an agent (requeued) are for humans: the bot never
        takes back someone it, or anyone, already handed on.
        """
        if entry.requeued or not entry.online or entry.session in self._had:
            return None
        return next((f for f in self.flows if f.matches(entry.topic)), None)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch the queue and serve users until ``stop`` is set.

        Raises:
            AssistError: if the connection that watches the queue is lost.
        """
        stop = stop or asyncio.Event()
        watcher = await self.connect(True)
        mirror = QueueMirror()
        changed = asyncio.Event()
        follow = asyncio.ensure_future(self._follow(watcher, mirror, changed))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await watcher.set_status("available")
            while not stop.is_set():
                changed.clear()
                if mirror.ready and await self._serve_first(mirror.entries()):
                    continue  # the queue moved on meanwhile: look again
                waiter = asyncio.ensure_future(changed.wait())
                done, _ = await asyncio.wait({waiter, stopper, follow},
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if follow in done:
                    raise AssistError("lost the connection to the broker")
        finally:
            follow.cancel()
            stopper.cancel()
            await watcher.close()

    @staticmethod
    async def _follow(watcher: AgentClient, mirror: QueueMirror,
                      changed: asyncio.Event) -> None:
        """Keep ``mirror`` up to date from the watcher's queue views."""
        async for msg in watcher.events():
            result = mirror.apply(msg)
            if result is None:
                await watcher.queue_pages()  # a gap: the pages come again
            elif result:
                changed.set()

    async def _serve_first(self, entries: list[m.QueueEntry]) -> bool:
        for entry in entries:
            flow = self.flow_for(entry)
            if flow is not None and await self._serve(entry, flow):
                return True
        return False

    async def _serve(self, entry: m.QueueEntry, flow: Runbook) -> bool:
        """Serve one user; False if someone else took them first.

        Whatever goes wrong with one user (they leave at the wrong moment, a
        connection drops) is that user's outcome, not the end of the bot.
        """
        try:
            worker = await self.connect(False)
        except AssistError as exc:
            log.warning("cannot open a connection for %s: %s", entry.session, exc.message)
            return False
        try:
            try:
                await worker.accept(entry.session)
            except AssistError as exc:
                log.info("could not take %s: %s", entry.session, exc.message)
                return False
            self._had[entry.session] = None
            while len(self._had) > REMEMBERED:
                del self._had[next(iter(self._had))]
            try:
                result = await RunbookRunner(worker, entry.session, flow,
                                             timeout=self.timeout).run()
                if result.ok and not result.ended:
                    await worker.end(entry.session, flow.name, True)
            except AssistError as exc:
                result = RunResult(flow.name, entry.session, failed="the flow",
                                   reason=exc.message)
            if result.ok:
                outcome = Outcome(entry.session, entry.user, entry.topic, flow.name, True)
            else:
                reason = f"{result.failed}: {result.reason}"
                if not result.ended:
                    with contextlib.suppress(AssistError):
                        await worker.handoff(entry.session, f"{flow.name} stopped at {reason}")
                outcome = Outcome(entry.session, entry.user, entry.topic, flow.name, False,
                                  reason)
            self.on_outcome(outcome)
            return True
        finally:
            await worker.close()
