"""The waiting queue and the agent roster, with routing rules.

Routing rules:

* Users are served first in, first out by the time they joined.
* A user whose agent dropped (``requeued``) goes in front of everyone who has
  never been answered; among themselves requeued users keep join order.
* A user who is offline (lost connection, may resume) keeps the place but is
  skipped when an agent takes "the next" user.
* Agents are ``available``, ``busy`` (in a session) or ``away``; an agent
  helps one user at a time.
* In a helpdesk of several nodes the queue is one: each node's queue holds
  its own users and, mirrored, the other nodes' (``node`` names where the
  user is); :attr:`Queue.watcher` hears of every change to this node's own.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from assist.errors import NotFound, StateError


@dataclass
class Waiting:
    """A user's place in the queue."""

    session: str
    user: str
    topic: str
    queued_at: float
    requeued: bool = False
    online: bool = True
    registered: bool = True
    note: str = ""
    node: str = ""
    """The node that holds this user; "" for this node."""

    @property
    def sort_key(self) -> tuple[int, float, str]:
        """Order of service: requeued first, then by join time."""
        return (0 if self.requeued else 1, self.queued_at, self.session)


@dataclass
class Queue:
    """Users waiting for an agent, kept in service order."""

    _keys: list[tuple[int, float, str]] = field(default_factory=list)
    _by_id: dict[str, Waiting] = field(default_factory=dict)
    watcher: Callable[[str, Waiting], None] | None = None
    """Told ``("joined" | "left" | "changed", entry)`` for each change to an
    entry of this node (what the other nodes mirror)."""

    def _tell(self, change: str, entry: Waiting) -> None:
        if self.watcher is not None and not entry.node:
            self.watcher(change, entry)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, session: object) -> bool:
        return session in self._by_id

    def __iter__(self) -> Iterator[Waiting]:
        """Yield waiting users head first."""
        return (self._by_id[key[2]] for key in self._keys)

    def window(self, start: int, end: int) -> list[Waiting]:
        """The entries at 0-based places ``start`` to ``end`` (excluded), head first."""
        return [self._by_id[key[2]] for key in self._keys[start:end]]

    def add(self, entry: Waiting) -> int:
        """Put ``entry`` in its place; return its 1-based position.

        Raises:
            StateError: if the session is already waiting.
        """
        if entry.session in self._by_id:
            raise StateError(f"session {entry.session} is already in the queue")
        key = entry.sort_key
        index = bisect.bisect(self._keys, key)
        self._keys.insert(index, key)
        self._by_id[entry.session] = entry
        self._tell("joined", entry)
        return index + 1

    def remove(self, session: str) -> Waiting:
        """Take a session out of the queue and return its entry.

        Raises:
            NotFound: if the session is not waiting.
        """
        entry = self.get(session)
        index = bisect.bisect_left(self._keys, entry.sort_key)
        del self._keys[index]
        del self._by_id[session]
        self._tell("left", entry)
        return entry

    def find(self, session: str) -> Waiting | None:
        """The entry of ``session`` if it waits, else ``None``."""
        return self._by_id.get(session)

    def get(self, session: str) -> Waiting:
        """Return the entry of a waiting session.

        Raises:
            NotFound: if the session is not waiting.
        """
        try:
            return self._by_id[session]
        except KeyError:
            raise NotFound(f"session {session} is not in the queue") from None

    def position(self, session: str) -> int:
        """Return the 1-based place of a waiting session."""
        return bisect.bisect_left(self._keys, self.get(session).sort_key) + 1

    def head(self, anywhere: bool = False) -> Waiting | None:
        """Return the first online user of this node (``anywhere``: of any node), or
        ``None`` when nobody can be taken."""
        return next((entry for entry in self
                     if entry.online and (anywhere or not entry.node)), None)

    def take(self, session: str | None = None) -> Waiting:
        """Remove and return ``session``, or the head of the queue when ``None``.

        Raises:
            StateError: if the queue has nobody online to take, or the chosen
                user is offline.
            NotFound: if ``session`` is not waiting.
        """
        if session is None:
            entry = self.head()
            if entry is None:
                raise StateError("the queue is empty")
        else:
            entry = self.get(session)
            if not entry.online:
                raise StateError(f"session {session}: the user is offline (reconnecting)")
        return self.remove(entry.session)

    def set_online(self, session: str, online: bool) -> None:
        """Mark a waiting user as connected or reconnecting."""
        entry = self.get(session)
        if entry.online != online:
            entry.online = online
            self._tell("changed", entry)

    def of_node(self, node: str) -> list[Waiting]:
        """The entries held by ``node`` ("" for this node's own), head first."""
        return [entry for entry in self if entry.node == node]


AGENT_STATUSES = ("available", "busy", "away")


@dataclass
class Agent:
    """An agent's presence."""

    name: str
    status: str = "away"
    since: float = 0.0
    session: str | None = None


@dataclass
class Roster:
    """Agents currently connected to the broker and what they are doing."""

    _agents: dict[str, Agent] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._agents.values())

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def join(self, name: str, now: float, status: str = "available") -> Agent:
        """Register a connected agent."""
        agent = Agent(name, status, now)
        self._agents[name] = agent
        return agent

    def leave(self, name: str) -> Agent | None:
        """Forget a disconnected agent; return it if it was known."""
        return self._agents.pop(name, None)

    def get(self, name: str) -> Agent:
        """Return a connected agent.

        Raises:
            NotFound: if the agent is not connected.
        """
        try:
            return self._agents[name]
        except KeyError:
            raise NotFound(f"agent {name} is not connected") from None

    def set_status(self, name: str, status: str, now: float) -> None:
        """Change an idle agent's status (``available`` or ``away``).

        Raises:
            StateError: for an unknown status, or while the agent is in a session.
        """
        if status not in ("available", "away"):
            raise StateError(f"unknown agent status {status!r}; use available or away")
        agent = self.get(name)
        if agent.session is not None:
            raise StateError("finish the current session before changing status")
        agent.status, agent.since = status, now

    def assign(self, name: str, session: str, now: float) -> None:
        """Make an idle agent busy with ``session``.

        An away agent may still pick a user explicitly: "away" only means the
        agent is not to be counted as ready for the queue.

        Raises:
            StateError: if the agent is already busy with another session (the
                same one again is no change: a session that moved to this node).
        """
        agent = self.get(name)
        if agent.session not in (None, session):
            raise StateError(f"agent {name} is already helping in session {agent.session}")
        agent.status, agent.session, agent.since = "busy", session, now

    def release(self, name: str, now: float) -> None:
        """Free a busy agent (session over); the agent becomes available."""
        agent = self._agents.get(name)
        if agent is not None:
            agent.status, agent.session, agent.since = "available", None, now

    def available(self) -> list[Agent]:
        """Available agents, the longest idle first (fair distribution)."""
        return sorted((a for a in self if a.status == "available"), key=lambda a: a.since)
