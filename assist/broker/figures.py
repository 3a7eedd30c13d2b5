"""Today's service level for the wallboard, kept as sessions settle.

The wallboard is pushed to every agent every few seconds; scanning the day's
sessions each time would stall routing on a busy broker. The day's figures
are read from the store once (at start and at midnight) and then counted as
each contact settles: answered (first answer) or abandoned before any answer.
"""

from __future__ import annotations

from datetime import datetime

from assist.core import metrics
from assist.store import Store


def local_midnight(now: float) -> float:
    """The start of the local day that contains ``now``."""
    return datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0,
                                               microsecond=0).timestamp()


class TodayFigures:
    """Answered within the target, of settled contacts that joined today."""

    def __init__(self, store: Store, target: float = metrics.SERVICE_LEVEL_TARGET,
                 refresh: float | None = None) -> None:
        self.store = store
        self.target = target
        self.refresh = refresh
        """Seconds after which the figures are read from the store again (a helpdesk
        of several nodes, where the others settle contacts too); ``None``: never."""
        self.day: float | None = None
        self._read_at = 0.0
        self.within = 0
        self.settled = 0

    def _roll(self, now: float) -> None:
        day = local_midnight(now)
        stale = self.refresh is not None and now - self._read_at >= self.refresh
        if day == self.day and not stale:
            return
        self.day, self._read_at = day, now
        contacts = [metrics.Contact(id=s.id, user=s.user, state=s.state, queued_at=s.queued_at,
                                    answered_at=s.answered_at, ended_at=s.ended_at)
                    for s in self.store.sessions.between(day, now + 1)]
        level = metrics.service_level(contacts, self.target)
        self.within, self.settled = level.hits, level.total

    def settle(self, queued_at: float, answered_at: float | None, now: float) -> None:
        """A contact settled: first answered at ``answered_at``, or abandoned (``None``)."""
        self._roll(now)
        assert self.day is not None
        if queued_at < self.day:
            return  # joined yesterday: not today's figure
        self.settled += 1
        if answered_at is not None and answered_at - queued_at <= self.target:
            self.within += 1

    def level(self, now: float) -> metrics.Ratio:
        """Today's share answered within the target."""
        self._roll(now)
        return metrics.Ratio(self.within, self.settled)
