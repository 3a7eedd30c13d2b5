"""The one place a session changes state: apply, save, audit.

Every transition of a session goes through :meth:`Ledger.transition`: the
state machine is applied, the new state is saved with the event that caused
it, and (when the action is audited) the audit record is appended, in one
transaction, so the three never drift apart; when the store refuses, the
session in memory is left as it was. Audit records and timeline events that change no
state go through it too, so the hub, the relay and trust share one writer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from assist.core.clock import Clock
from assist.core.session import Event, Session, State
from assist.errors import Moved
from assist.store import Store


class Ledger:
    """Writes session transitions, timeline events and audit records."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.moved: Callable[[str], None] = lambda session: None
        """Told the id of a session the store says another node holds now."""

    def transition(self, session: Session, event: Event, actor: str, kind: str,
                   data: Mapping[str, Any] | None = None, *, agent: str | None = None,
                   audit: str = "", audit_data: Mapping[str, Any] | None = None,
                   audit_actor: str = "") -> State:
        """Apply ``event`` to ``session``, save it as a ``kind`` event, audit it as ``audit``.

        The audit record names ``audit_actor`` (default ``actor``): a user's
        "ready" connects the agent, who is the one audited.

        Raises:
            StateError: if the event is not allowed in the session's state
                (nothing is saved then).
            StoreError: if the store cannot be written.
        """
        now = self.clock.now()
        before = dataclasses.replace(session, history=list(session.history))
        try:
            # The new state and its audit record are written together or not at all.
            with self.store.db.transaction():
                state = session.apply(event, now, agent=agent)
                self.store.sessions.save(session, kind, actor, data or {})
                if audit:
                    self.store.audit.append(
                        now, audit_actor or actor, audit, session.id,
                        dict(audit_data) if audit_data is not None else None)
        except BaseException as exc:
            # Not written: the session stays as the store has it.
            for f in dataclasses.fields(session):
                setattr(session, f.name, getattr(before, f.name))
            if isinstance(exc, Moved):
                self.moved(session.id)
            raise
        return state

    def audit(self, actor: str, action: str, session: str | None = None,
              data: Mapping[str, Any] | None = None) -> None:
        """Append one audit record."""
        self.store.audit.append(self.clock.now(), actor, action, session,
                                dict(data) if data is not None else None)

    def log(self, session: str, kind: str, actor: str, data: Mapping[str, Any]) -> float:
        """Add an event to a session's timeline (no state change); return its time."""
        now = self.clock.now()
        self.store.sessions.log(session, now, kind, actor, data)
        return now
