"""The session state machine.

::

    queued ──offer──> offered ──connect──> connected ──verify──> verified
      │  ^               │                    │    │                │
      │  └───decline─────┘                    │    └──transfer──> transferred
      │  ^                                    │                     │
      │  └─────────────requeue────────────────┴─────────────────────┘
      ├──abandon──> abandoned           (requeue leaves state "requeued",
      └──...                             which behaves like queued, in front)
    connected/verified/transferred ──end──> ended

``requeued`` is a waiting state like ``queued`` but with priority: an agent
dropped the user, so the user goes back to the front of the queue.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from assist.errors import StateError


class State(enum.StrEnum):
    """Where a session is in its life."""

    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTED = "connected"
    VERIFIED = "verified"
    TRANSFERRED = "transferred"
    REQUEUED = "requeued"
    ENDED = "ended"
    ABANDONED = "abandoned"

    @property
    def waiting(self) -> bool:
        """True while the user waits in the queue."""
        return self in (State.QUEUED, State.REQUEUED)

    @property
    def live(self) -> bool:
        """True while an agent is with the user."""
        return self in (State.CONNECTED, State.VERIFIED, State.TRANSFERRED)

    @property
    def final(self) -> bool:
        """True once the session can no longer change."""
        return self in (State.ENDED, State.ABANDONED)


class Event(enum.StrEnum):
    """What can happen to a session."""

    OFFER = "offer"
    DECLINE = "decline"
    CONNECT = "connect"
    VERIFY = "verify"
    TRANSFER = "transfer"
    REQUEUE = "requeue"
    END = "end"
    ABANDON = "abandon"


_W = (State.QUEUED, State.REQUEUED)
_LIVE = (State.CONNECTED, State.VERIFIED, State.TRANSFERRED)

TRANSITIONS: dict[tuple[State, Event], State] = {
    **{(s, Event.OFFER): State.OFFERED for s in _W},
    **{(s, Event.ABANDON): State.ABANDONED for s in (*_W, State.OFFERED)},
    (State.OFFERED, Event.DECLINE): State.REQUEUED,
    (State.OFFERED, Event.CONNECT): State.CONNECTED,
    (State.CONNECTED, Event.VERIFY): State.VERIFIED,
    (State.TRANSFERRED, Event.VERIFY): State.VERIFIED,
    **{(s, Event.TRANSFER): State.TRANSFERRED for s in _LIVE},
    **{(s, Event.REQUEUE): State.REQUEUED for s in _LIVE},
    **{(s, Event.END): State.ENDED for s in _LIVE},
}
"""The whole machine as a table: (state, event) -> next state."""


def next_state(state: State, event: Event) -> State:
    """Return the state ``event`` leads to from ``state``.

    Raises:
        StateError: if ``event`` is not allowed in ``state``.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise StateError(f"cannot {event.value} a session that is {state.value}") from None


@dataclass
class Session:
    """One contact from a user, from joining the queue to its end.

    Timestamps are seconds since the epoch, supplied by the caller (the core
    never reads a clock).
    """

    id: str
    user: str
    topic: str
    queued_at: float
    state: State = State.QUEUED
    agent: str | None = None
    offered_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    verified: bool = False
    resolved: bool | None = None
    root_cause: str = ""
    requeues: int = 0
    key: str = ""
    """Fingerprint of the key the user joined with (one request per key)."""
    registered: bool = True
    """The key was in the directory when the user joined."""
    history: list[tuple[float, State]] = field(default_factory=list)

    def apply(self, event: Event, now: float, agent: str | None = None) -> State:
        """Apply ``event`` at time ``now`` and return the new state.

        Raises:
            StateError: if the event is not allowed in the current state, or
                an offer/transfer comes without an agent.
        """
        new = next_state(self.state, event)
        if event in (Event.OFFER, Event.TRANSFER) and not agent:
            raise StateError(f"{event.value} needs an agent")
        if event is Event.OFFER:
            self.agent, self.offered_at = agent, now
        elif event is Event.TRANSFER:
            self.agent = agent
        elif event is Event.CONNECT and self.answered_at is None:
            # Answer time counts from joining to the first agent, not to a re-answer.
            self.answered_at = now
        elif event is Event.VERIFY:
            self.verified = True
        elif event in (Event.DECLINE, Event.REQUEUE):
            # The next agent verifies the user again: verification is per contact with an agent.
            self.agent, self.verified = None, False
            self.requeues += event is Event.REQUEUE
        elif new.final:
            self.ended_at = now
        self.state = new
        self.history.append((now, new))
        return new
