"""What agents and waiting users watch: the queue, the wallboard, their position.

Views are built once per tick for everyone who watches them, never per
watcher and never per change:

* the queue goes to watching agents as pages on connect, then as deltas
  (:class:`~assist.core.queueview.ViewTracker`) encoded once and sent to all;
  pages go out a window at a time as the agent reads them (the deltas that
  happen meanwhile wait behind them), so however long the queue, an agent's
  outbox never holds more than :data:`PAGE_WINDOW` of it; an agent whose
  outbox is behind gets no deltas until it has caught up, and then a fresh
  set of pages (latest wins);
* the wallboard is computed and encoded once per push, at most once a
  second and every few seconds while anyone watches;
* waiting users hear their position only when it changed: the first
  :data:`POSITION_NEAR` places at most every :data:`POSITION_EVERY` seconds,
  the rest every :data:`POSITION_FAR_EVERY` (one accept moves thousands of
  people up by one; someone 1,500th needs no news twice a second), a slice
  at a time so a queue of thousands never stalls routing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from assist.broker.connection import RESUME_BELOW, Connection
from assist.core.clock import Clock, Timer
from assist.core.queue import Queue
from assist.core.queueview import ViewTracker
from assist.errors import AssistError
from assist.protocol import encode
from assist.protocol import messages as m

log = logging.getLogger(__name__)

TICK = 0.05
"""Coalesce queue changes: a burst of joins costs one delta, not one per join."""
POSITION_EVERY = 0.5
"""Seconds between two position updates to the users near the head."""
POSITION_NEAR = 50
"""Places near the head, told of every change of place twice a second."""
POSITION_FAR_EVERY = 5.0
"""Seconds between two position updates to everyone further back."""
POSITION_SLICE = 200
"""Position updates sent per event-loop turn."""
WALLBOARD_EVERY = 5.0
"""Seconds between wallboard pushes while agents watch."""
PAGE_WINDOW = 256 * 1024
"""Bytes of queue pages queued for one agent at a time."""
PAGING_MAX = 2000
"""Lines (pages, then deltas) waiting for one agent before it starts again from fresh pages."""
WALLBOARD_MIN = 1.0
"""Fewest seconds between two wallboard pushes (status changes come in bursts)."""


class Views:
    """Queue, wallboard and position views of one broker.

    Args:
        queue: the waiting queue (read only).
        clock: time and timers.
        wallboard: computes the current wallboard.
        user_of: the connection of a waiting session's user, if online.
    """

    def __init__(self, queue: Queue, clock: Clock, wallboard: Callable[[], m.Wallboard],
                 user_of: Callable[[str], Connection | None]) -> None:
        self.queue = queue
        self.clock = clock
        self.wallboard = wallboard
        self.user_of = user_of
        self.tracker = ViewTracker()
        self.watchers: set[Connection] = set()
        self._stale: set[Connection] = set()
        self._paging: dict[Connection, deque[bytes]] = {}
        self._pages_cache: tuple[int, list[bytes]] | None = None
        self._tick: Timer | None = None
        self._told: dict[str, int] = {}
        self._positions_due = False
        self._positions_at = 0.0
        self._far_due = False
        self._far_at = -POSITION_FAR_EVERY
        self._positions: Timer | None = None
        self._positions_when = 0.0
        self._slice: Timer | None = None
        self._sweep_to = 0
        """How far back the sweep under way goes (while ``_slice`` is set)."""
        self._board: Timer | None = None
        self._board_at = 0.0
        self._board_when = 0.0
        self.sent_deltas = 0
        """Delta lines sent (all watchers counted), for the benchmark."""
        self.delta_bytes = 0

    # -- the queue -----------------------------------------------------------------------


    def listing(self, offset: int, limit: int, rid: int) -> m.QueueList:
        """A page of the queue (``limit`` places after the first ``offset``)."""
        entries: list[m.QueueEntry] = []
        for index, w in enumerate(self.queue.window(offset, offset + limit), offset + 1):
            entries.append(m.QueueEntry(
                session=w.session, user=w.user, topic=w.topic, queued_at=w.queued_at,
                position=index, requeued=w.requeued, online=w.online,
                registered=w.registered, note=w.note))
        return m.QueueList(entries=tuple(entries), now=self.clock.now(), total=len(self.queue),
                           offset=offset, rid=rid)

    def watch(self, client: Connection) -> None:
        """``client`` watches the queue from now on: pages now, deltas after."""
        self.flush()
        self.watchers.add(client)
        self._start_pages(client)
        self.wallboard_soon()

    def unwatch(self, client: Connection) -> None:
        """``client`` is gone."""
        self.watchers.discard(client)
        self._stale.discard(client)
        self._paging.pop(client, None)

    def resend(self, client: Connection) -> None:
        """Send the pages again (the agent saw a gap)."""
        if client in self.watchers:
            self.flush()
            self._start_pages(client)

    def touch(self, session: str) -> None:
        """``session`` joined, left or changed in the queue."""
        self.tracker.touch(session)
        self._positions_due = True
        if self._tick is None:
            self._tick = self.clock.call_later(TICK, self.flush)

    def flush(self) -> None:
        """Send the deltas due, encoded once for every watcher."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self.tracker.dirty:
            lines = [encode(d) for d in self.tracker.deltas(self.queue, self.clock.now())]
            size = sum(len(line) for line in lines)
            for client in self.watchers:
                if client in self._stale:
                    continue
                pending = self._paging.get(client)
                if pending is not None:
                    pending.extend(lines)  # behind the pages it is still reading
                    if len(pending) > PAGING_MAX:
                        self._start_pages(client)
                    continue
                if client.outbox.backlog > RESUME_BELOW:
                    self._fall_behind(client)
                    continue
                for line in lines:
                    client.send_line(line)
                self.sent_deltas += len(lines)
                self.delta_bytes += size
        self._arm_positions()

    def _arm_positions(self) -> None:
        """Arm the next position push: soon for the head, later for the rest."""
        now = self.clock.now()
        if self._positions_due:
            when = max(now, self._positions_at + POSITION_EVERY)
        elif self._far_due:
            when = max(now, self._far_at + POSITION_FAR_EVERY)
        else:
            return
        if self._positions is not None:
            if self._positions_when <= when:
                return
            self._positions.cancel()
        self._positions_when = when
        self._positions = self.clock.call_later(when - now, self._push_positions)

    def _fall_behind(self, client: Connection) -> None:
        # Deltas it cannot take now would only pile up: pages replace them later.
        self._stale.add(client)
        client.outbox.when_caught_up(lambda: self._caught_up(client))

    def _caught_up(self, client: Connection) -> None:
        if client in self._stale and client in self.watchers:
            self.flush()  # while still stale: its deltas go behind the pages, not before
            self._start_pages(client)

    def _page_lines(self) -> list[bytes]:
        """The whole queue as encoded pages, once per version for every agent."""
        version = self.tracker.version
        if self._pages_cache is None or self._pages_cache[0] != version:
            pages = self.tracker.pages(self.clock.now())
            self._pages_cache = (version, [encode(p) for p in pages])
        return self._pages_cache[1]

    def _start_pages(self, client: Connection) -> None:
        self._stale.discard(client)
        self._paging[client] = deque(self._page_lines())
        self._pump(client)

    def _pump(self, client: Connection) -> None:
        """Send the next pages as the agent reads them."""
        pending = self._paging.get(client)
        if pending is None or client not in self.watchers:
            return
        while pending and client.outbox.queued < PAGE_WINDOW:
            client.send_line(pending.popleft())
        if pending:
            client.outbox.when_caught_up(lambda: self._pump(client))
        else:
            del self._paging[client]

    # -- positions -----------------------------------------------------------------------

    def placed(self, session: str, position: int) -> None:
        """The user of ``session`` was told ``position`` (in a reply)."""
        self._told[session] = position

    def forget(self, session: str) -> None:
        """``session`` no longer waits."""
        self._told.pop(session, None)

    def _push_positions(self) -> None:
        self._positions = None
        now = self.clock.now()
        if self._positions_due:
            self._positions_due = False
            self._far_due = True  # the places further back changed too
            self._positions_at = now
        far = self._far_due and now - self._far_at >= POSITION_FAR_EVERY
        limit = len(self.queue) if far else POSITION_NEAR
        if far:
            self._far_due = False
            self._far_at = now
        if self._slice is not None:
            # A sweep further back is still under way: this one, from the head, goes
            # as far (the places it has done are told again only if they changed).
            self._slice.cancel()
            limit = max(limit, self._sweep_to)
        self._position_slice(0, limit)
        self._arm_positions()

    def _position_slice(self, start: int, limit: int) -> None:
        # Each slice reads the queue as it is now: a user is never told a place
        # from before an accept that happened between two slices.
        self._slice = None
        waiting = len(self.queue)
        end = min(limit, waiting, start + POSITION_SLICE)
        for index, entry in enumerate(self.queue.window(start, end), start):
            session = entry.session
            position = index + 1
            told = self._told.get(session)
            if told is None or told == position:
                continue
            user = self.user_of(session)
            if user is None:
                continue
            self._told[session] = position
            user.send_view("position", m.Position(session=session, position=position,
                                                  waiting=waiting))
        if end < min(limit, waiting):
            # The rest on a later loop turn: routing goes first.
            self._sweep_to = limit
            self._slice = self.clock.call_later(0, self._position_slice, end, limit)

    # -- the wallboard -------------------------------------------------------------------

    def wallboard_soon(self) -> None:
        """Push the wallboard soon (something it shows changed)."""
        now = self.clock.now()
        when = max(now, self._board_at + WALLBOARD_MIN)
        if self._board is not None:
            if self._board_when <= when:
                return  # one is due soon anyway
            self._board.cancel()
        self._board_when = when
        self._board = self.clock.call_later(when - now, self._push_wallboard)

    def _push_wallboard(self) -> None:
        self._board = None
        if not self.watchers:
            return
        self._board_at = self.clock.now()
        try:
            board = self.wallboard()
        except AssistError as exc:  # the store hiccupped: try again next time
            log.warning("wallboard not sent: %s", exc.message)
        else:
            line = encode(board)
            for client in self.watchers:
                client.outbox.view("wallboard", line)
        self._board_when = self._board_at + WALLBOARD_EVERY
        self._board = self.clock.call_later(WALLBOARD_EVERY, self._push_wallboard)

    def close(self) -> None:
        """Cancel the views' timers."""
        for timer in (self._tick, self._positions, self._board, self._slice):
            if timer is not None:
                timer.cancel()
        self._tick = self._positions = self._board = self._slice = None
