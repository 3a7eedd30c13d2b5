"""The queue as agents see it: pages first, then deltas that cost O(change).

Two halves of one contract:

* :class:`ViewTracker` (broker side) remembers what agents were last told
  and, from the sessions touched since, builds the next
  :class:`~assist.protocol.messages.QueueDelta` messages (joined, left,
  changed), each under the page bound, each with the next version number.
  It never walks the whole queue except to build first pages.
* :class:`QueueMirror` (agent side) rebuilds the queue from pages, applies
  deltas in version order and reports a gap (a missed delta) so the caller
  asks for the pages again.

Order of service is derived from the entries themselves (requeued first,
then join time), the same rule as :class:`~assist.core.queue.Queue`, so
positions need not travel: one accept at the head would otherwise change
every entry.

Pure: no I/O, the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from assist.core.queue import Queue, Waiting
from assist.protocol import messages as m


def entry_of(waiting: Waiting) -> m.QueueEntry:
    """The agents' view of one waiting user (no position: it follows from the order)."""
    return m.QueueEntry(session=waiting.session, user=waiting.user, topic=waiting.topic,
                        queued_at=waiting.queued_at, requeued=waiting.requeued,
                        online=waiting.online, registered=waiting.registered,
                        note=waiting.note)


def sort_key(entry: m.QueueEntry) -> tuple[int, float, str]:
    """Order of service, as :attr:`assist.core.queue.Waiting.sort_key`."""
    return (0 if entry.requeued else 1, entry.queued_at, entry.session)


def _chunks(count: int) -> Iterator[slice]:
    """Slices of at most one page over ``count`` items."""
    for start in range(0, count, m.PAGE):
        yield slice(start, start + m.PAGE)


class ViewTracker:
    """What agents know of the queue, and the deltas that bring them up to date."""

    def __init__(self) -> None:
        self.version = 0
        self._published: dict[str, m.QueueEntry] = {}
        self._dirty: set[str] = set()

    def touch(self, session: str) -> None:
        """``session`` joined, left or changed in the queue since the last delta."""
        self._dirty.add(session)

    @property
    def dirty(self) -> bool:
        """True if a delta is due."""
        return bool(self._dirty)

    def deltas(self, queue: Queue, now: float) -> list[m.QueueDelta]:
        """The deltas for everything touched since the last call (O(touched)).

        A session that joined and left within one call costs nothing.
        """
        joined: list[m.QueueEntry] = []
        changed: list[m.QueueEntry] = []
        left: list[str] = []
        for session in self._dirty:
            before = self._published.get(session)
            now_entry = entry_of(queue.get(session)) if session in queue else None
            if now_entry is None:
                if before is not None:
                    left.append(session)
                    del self._published[session]
            elif before is None:
                joined.append(now_entry)
                self._published[session] = now_entry
            elif before != now_entry:
                if before.requeued != now_entry.requeued or \
                        before.queued_at != now_entry.queued_at:
                    # Its place moved: a mirror must re-sort it, so it leaves and joins.
                    left.append(session)
                    joined.append(now_entry)
                else:
                    changed.append(now_entry)
                self._published[session] = now_entry
        self._dirty.clear()
        out: list[m.QueueDelta] = []
        for part in _chunks(len(left)):
            self.version += 1
            out.append(m.QueueDelta(version=self.version, left=tuple(left[part]), now=now))
        for part in _chunks(len(joined)):
            self.version += 1
            out.append(m.QueueDelta(version=self.version, joined=tuple(joined[part]), now=now))
        for part in _chunks(len(changed)):
            self.version += 1
            out.append(m.QueueDelta(version=self.version, changed=tuple(changed[part]),
                                    now=now))
        return out

    def pages(self, now: float) -> list[m.QueuePage]:
        """The whole queue as agents were last told it (call :meth:`deltas` first).

        Built from what was published, so pages and the deltas that follow
        agree on every version.
        """
        entries = sorted(self._published.values(), key=sort_key)
        total = len(entries)
        pages: list[m.QueuePage] = []
        for offset in range(0, max(total, 1), m.PAGE):
            part = tuple(entries[offset : offset + m.PAGE])
            pages.append(m.QueuePage(version=self.version, entries=part, total=total,
                                     offset=offset, last=offset + m.PAGE >= total, now=now))
        return pages


class QueueMirror:
    """The agent's copy of the queue, kept from pages and deltas.

    Attributes:
        version: the version of the last page set or delta applied.
        ready: True once a whole page set arrived (before that the copy is partial).
    """

    def __init__(self) -> None:
        self.version = -1
        self.ready = False
        self.now = 0.0
        self._entries: dict[str, m.QueueEntry] = {}
        self._order: list[m.QueueEntry] | None = []
        self._building: dict[str, m.QueueEntry] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session: object) -> bool:
        return session in self._entries

    def apply(self, msg: m.Msg) -> bool | None:
        """Apply a queue message.

        Returns:
            True if the queue changed, False if nothing did, ``None`` for a
            gap: a delta that does not follow the version held (ask for the
            pages again).
        """
        if isinstance(msg, m.QueuePage):
            return self._page(msg)
        if isinstance(msg, m.QueueDelta):
            return self._delta(msg)
        if isinstance(msg, m.QueueList) and msg.offset == 0 and msg.total <= len(msg.entries):
            # A whole queue in one reply: as good as a page set (of unknown version).
            self._entries = {e.session: msgspec.structs.replace(e, position=0)
                             for e in msg.entries}
            self._order = None
            self.now = msg.now
            self.ready = True
            return True
        return False

    def _page(self, page: m.QueuePage) -> bool:
        if page.offset == 0 or self._building is None:
            self._building = {}
        self._building.update((e.session, e) for e in page.entries)
        if not page.last:
            return False
        self._entries, self._building = self._building, None
        self._order = None
        self.version = page.version
        self.now = page.now
        self.ready = True
        return True

    def _delta(self, delta: m.QueueDelta) -> bool | None:
        if not self.ready or delta.version <= self.version:
            return False  # pages still coming, or a delta the pages already hold
        if delta.version != self.version + 1:
            return None
        self.version = delta.version
        self.now = delta.now or self.now
        for session in delta.left:
            self._entries.pop(session, None)
        for entry in (*delta.joined, *delta.changed):
            self._entries[entry.session] = entry
        self._order = None
        return True

    def entries(self) -> list[m.QueueEntry]:
        """The queue head first, each entry with its 1-based position."""
        if self._order is None:
            ordered = sorted(self._entries.values(), key=sort_key)
            self._order = [msgspec.structs.replace(e, position=i)
                           for i, e in enumerate(ordered, 1)]
        return self._order
