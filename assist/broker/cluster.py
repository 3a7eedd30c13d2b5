"""One node's part in a helpdesk of several: one queue for all, nodes that watch each other.

Each node holds its own users' places and mirrors everyone else's, so every
agent sees one queue whichever node they are on, and every user's position
counts everyone ahead of them on any node:

* a change to this node's entries (joined, left, online or not) goes on the
  bus to the others as it happens;
* a node that starts, or that sees another node for the first time or
  restarted, asks for that node's entries in full; a heartbeat carries how
  many entries a node holds, so a mirror that lost a message notices and asks
  again (the bus is at most once);
* a node silent for :data:`LOST` seconds is gone: its entries leave the
  mirror and :attr:`Cluster.lost` is told, so a survivor can take its
  sessions over from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from assist.broker.bus import Bus, Subscription
from assist.core.clock import Clock, Timer
from assist.core.queue import Queue, Waiting
from assist.errors import AssistError
from assist.store.nodes import Nodes

log = logging.getLogger(__name__)

BEAT = 1.0
"""Seconds between two heartbeats of a node."""
LOST = 3.0
"""Seconds of silence after which a node is taken for dead (well within the 5 s asked)."""
CHUNK = 500
"""Entries per message when a node sends its whole part of the queue."""


class Entry(msgspec.Struct, frozen=True):
    """A place in the queue as it travels between nodes."""

    session: str
    user: str
    topic: str
    queued_at: float
    requeued: bool
    online: bool
    registered: bool
    note: str


class Beat(msgspec.Struct, tag="beat"):
    """A node is alive; ``waiting`` is how many places it holds, ``available`` how many
    of its agents are ready."""

    node: str
    started: float
    waiting: int
    available: int = 0


class Changed(msgspec.Struct, tag="changed"):
    """One of ``node``'s places joined, left or changed."""

    node: str
    change: str
    entry: Entry


class Ask(msgspec.Struct, tag="ask"):
    """``node`` (which started at ``started``) asks ``of`` for all of its places."""

    node: str
    of: str
    started: float = 0.0


class Places(msgspec.Struct, tag="places"):
    """Part of ``node``'s places; ``first`` replaces what a mirror held of it."""

    node: str
    first: bool
    entries: list[Entry]
    started: float = 0.0


Message = Beat | Changed | Ask | Places
_decoder = msgspec.json.Decoder(Message)


def _entry(w: Waiting) -> Entry:
    return Entry(w.session, w.user, w.topic, w.queued_at, w.requeued, w.online,
                 w.registered, w.note)


def _waiting(e: Entry, node: str) -> Waiting:
    return Waiting(e.session, e.user, e.topic, e.queued_at, e.requeued, e.online,
                   e.registered, e.note, node=node)


class Cluster:
    """This node on the bus: shares its places, mirrors the others', watches the nodes.

    Args:
        node: this node's name (unique in the helpdesk).
        bus: the bus between the nodes.
        clock: time and timers.
        queue: this node's queue (its own places and the mirror).
        touched: told the session of every mirrored place that changed (the views).
        lost: told the name of a node that went silent.
        available: how many of this node's agents are ready (for the others' wallboards).
        board: told when what the other nodes say for the wallboard changed.
        restarted: told the name of a node that started again.
        witness: the store's heartbeats (see :mod:`assist.store.nodes`): this node
            beats there too, and a node silent on the bus that still beats there
            is cut off from the bus, not dead (its sessions stay its own).
    """

    def __init__(self, node: str, bus: Bus, clock: Clock, queue: Queue,
                 touched: Callable[[str], None], lost: Callable[[str], object],
                 available: Callable[[], int] = lambda: 0,
                 board: Callable[[], None] = lambda: None,
                 restarted: Callable[[str], object] = lambda node: None,
                 witness: Nodes | None = None) -> None:
        self.node = node
        self.bus = bus
        self.clock = clock
        self.queue = queue
        self.touched = touched
        self.lost = lost
        self.ready = available
        self.board = board
        """Told when what the wallboard shows of the other nodes changed."""
        self.restarted = restarted
        """Told the name of a node that started again (what was linked to it is gone)."""
        self.witness = witness
        self.cut_off: set[str] = set()
        """Nodes silent on the bus that still beat in the store."""
        self.started = clock.now()
        self.seen: dict[str, tuple[float, float]] = {}
        """Other node -> (when it was last heard, when it started)."""
        self._subs: list[Subscription] = []
        self._beat: Timer | None = None
        self._asked: dict[str, float] = {}
        self._available: dict[str, int] = {}

    async def start(self) -> None:
        """Join the helpdesk: listen, share this node's places, ask for everyone's."""
        self._subs.append(await self.bus.subscribe("assist.node.*", self._on_message))
        self._subs.append(await self.bus.subscribe(f"assist.to.{self.node}", self._on_message))
        self.queue.watcher = self._changed
        self._send("assist.node." + self.node, Ask(self.node, "*", self.started))
        self._send_places("assist.node." + self.node)
        self._tick()

    def stop(self) -> None:
        """Leave: stop beating and listening (the others notice within :data:`LOST`)."""
        self.queue.watcher = None
        if self._beat is not None:
            self._beat.cancel()
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()

    @property
    def settled(self) -> bool:
        """Whether this node has listened long enough to know which nodes are alive."""
        return self.clock.now() - self.started > LOST

    @property
    def available(self) -> int:
        """Agents ready on the other nodes (as their last heartbeats said)."""
        return sum(self._available.get(node, 0) for node in self.seen)

    @property
    def alive(self) -> list[str]:
        """The other nodes heard from within :data:`LOST` seconds."""
        return sorted(self.seen)

    # -- this node's places ------------------------------------------------------

    def _changed(self, change: str, entry: Waiting) -> None:
        self._send("assist.node." + self.node, Changed(self.node, change, _entry(entry)))

    def _send(self, subject: str, message: Message) -> None:
        self.bus.publish(subject, msgspec.json.encode(message))

    def _send_places(self, subject: str) -> None:
        own = [_entry(w) for w in self.queue.of_node("")]
        for start in range(0, max(len(own), 1), CHUNK):
            self._send(subject, Places(self.node, start == 0, own[start:start + CHUNK],
                                       self.started))

    def _tick(self) -> None:
        # The next beat first: nothing that fails below may stop this node's heartbeat.
        self._beat = self.clock.call_later(BEAT, self._tick)
        now = self.clock.now()
        self._send("assist.node." + self.node,
                   Beat(self.node, self.started, len(self.queue.of_node("")), self.ready()))
        if self.witness is not None:
            try:
                self.witness.beat(self.node)
            except AssistError as exc:
                log.warning("cannot write this node's heartbeat to the store: %s", exc)
        for node, (heard, _started) in list(self.seen.items()):
            if now - heard > LOST and not self._still_beating(node):
                try:
                    self._gone(node)
                except Exception:
                    log.exception("taking over the sessions of node %s failed", node)

    def _still_beating(self, node: str) -> bool:
        """Whether ``node``, silent on the bus, still beats in the store (or the store
        cannot say: then nothing is taken from it either)."""
        if self.witness is None:
            return False
        try:
            age = self.witness.silent_for(node)
        except AssistError as exc:
            log.warning("cannot read node %s's heartbeat from the store: %s", node, exc)
            return True
        beating = age is not None and age <= LOST
        if not beating:
            self.cut_off.discard(node)
        elif node not in self.cut_off:
            log.warning("node %s is silent on the bus but alive in the store: its "
                        "sessions stay its own", node)
            self.cut_off.add(node)
        return beating

    # -- the others --------------------------------------------------------------

    def _on_message(self, subject: str, payload: bytes) -> None:
        try:
            message = _decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("bus: an unreadable message on %s", subject)
            return
        if message.node == self.node:
            return  # our own, back from the bus
        if isinstance(message, Beat):
            self._on_beat(message)
        elif isinstance(message, Changed):
            self._heard(message.node)
            self._apply(message)
        elif isinstance(message, Ask):
            self._started(message.node, message.started)
            if message.of in ("*", self.node):
                self._send_places(f"assist.to.{message.node}")
        elif isinstance(message, Places):
            self._started(message.node, message.started)
            if message.first:
                self._drop_mirror(message.node)
            for e in message.entries:
                self._put(_waiting(e, message.node))

    def _heard(self, node: str, started: float | None = None) -> None:
        known = self.seen.get(node)
        self.seen[node] = (self.clock.now(), started if started is not None
                           else (known[1] if known else 0.0))
        if known is None:
            log.info("node %s joined the helpdesk", node)
        if node in self.cut_off:
            self.cut_off.discard(node)
            log.info("node %s is heard on the bus again", node)

    def _started(self, node: str, started: float) -> bool:
        """Hear from ``node`` (of its run that began at ``started``); True if it is a
        new run of a node known before: what was linked to the old one is gone."""
        known = self.seen.get(node)
        self._heard(node, started or None)
        restarted = known is not None and started != 0.0 and known[1] not in (0.0, started)
        if restarted:
            log.info("node %s started again", node)
            self.restarted(node)
        return restarted

    def _on_beat(self, beat: Beat) -> None:
        known = self.seen.get(beat.node)
        restarted = self._started(beat.node, beat.started)
        if self._available.get(beat.node) != beat.available:
            self._available[beat.node] = beat.available
            self.board()
        mirrored = len(self.queue.of_node(beat.node))
        if known is None or restarted or mirrored != beat.waiting:
            self._ask(beat.node)

    def _ask(self, node: str) -> None:
        # At most once a beat: a node that is busy changing must not be asked per change.
        now = self.clock.now()
        if now - self._asked.get(node, -BEAT) >= BEAT:
            self._asked[node] = now
            self._send(f"assist.to.{node}", Ask(self.node, node))

    def _apply(self, message: Changed) -> None:
        entry = _waiting(message.entry, message.node)
        if message.change == "left":
            held = self.queue.find(entry.session)
            if held is not None and held.node == message.node:
                self.queue.remove(entry.session)
                self.touched(entry.session)
        else:
            self._put(entry)

    def _put(self, entry: Waiting) -> None:
        held = self.queue.find(entry.session)
        if held is not None:
            if not held.node:
                return  # ours now (it moved here): the other node's news is old
            self.queue.remove(entry.session)
        self.queue.add(entry)
        self.touched(entry.session)

    def _drop_mirror(self, node: str) -> None:
        for entry in self.queue.of_node(node):
            self.queue.remove(entry.session)
            self.touched(entry.session)

    def _gone(self, node: str) -> None:
        log.warning("node %s is silent for %.0f s: taken for gone", node, LOST)
        del self.seen[node]
        self._asked.pop(node, None)
        if self._available.pop(node, 0):
            self.board()
        self._drop_mirror(node)
        self.lost(node)
