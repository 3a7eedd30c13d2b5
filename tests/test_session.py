"""The session state machine, exhaustively."""

from __future__ import annotations

import itertools

import pytest

from assist.core.session import TRANSITIONS, Event, Session, State, next_state
from assist.errors import StateError


def test_happy_path_records_times() -> None:
    s = Session("s1", "alice", "vpn", queued_at=100.0)
    s.apply(Event.OFFER, 105.0, agent="carol")
    assert (s.state, s.agent, s.offered_at) == (State.OFFERED, "carol", 105.0)
    s.apply(Event.CONNECT, 106.0)
    assert s.answered_at == 106.0 and s.state.live
    s.apply(Event.VERIFY, 110.0)
    assert s.verified and s.state is State.VERIFIED
    s.apply(Event.END, 200.0)
    assert s.state is State.ENDED and s.ended_at == 200.0 and s.state.final
    assert [state for _, state in s.history] == [
        State.OFFERED, State.CONNECTED, State.VERIFIED, State.ENDED]


def test_requeue_goes_back_waiting_and_forgets_agent_and_verification() -> None:
    s = Session("s1", "alice", "vpn", queued_at=0.0)
    s.apply(Event.OFFER, 1.0, agent="carol")
    s.apply(Event.CONNECT, 2.0)
    s.apply(Event.VERIFY, 3.0)
    s.apply(Event.REQUEUE, 4.0)
    assert s.state is State.REQUEUED and s.state.waiting
    assert s.agent is None and not s.verified and s.requeues == 1
    s.apply(Event.OFFER, 5.0, agent="dave")
    s.apply(Event.CONNECT, 6.0)
    # Answer time is to the first agent, not the second.
    assert s.answered_at == 2.0


def test_decline_requeues_without_counting_a_drop() -> None:
    s = Session("s1", "alice", "vpn", queued_at=0.0)
    s.apply(Event.OFFER, 1.0, agent="carol")
    s.apply(Event.DECLINE, 2.0)
    assert s.state is State.REQUEUED and s.requeues == 0


@pytest.mark.parametrize("state", [State.QUEUED, State.REQUEUED, State.OFFERED])
def test_abandon_from_waiting_states(state: State) -> None:
    assert next_state(state, Event.ABANDON) is State.ABANDONED


def test_every_pair_outside_the_table_is_refused() -> None:
    refused = 0
    for state, event in itertools.product(State, Event):
        if (state, event) in TRANSITIONS:
            assert next_state(state, event) is TRANSITIONS[(state, event)]
        else:
            with pytest.raises(StateError):
                next_state(state, event)
            refused += 1
    assert refused > 0


@pytest.mark.parametrize("state", [State.ENDED, State.ABANDONED])
def test_final_states_accept_nothing(state: State) -> None:
    for event in Event:
        with pytest.raises(StateError):
            next_state(state, event)


def test_offer_needs_an_agent() -> None:
    s = Session("s1", "alice", "vpn", queued_at=0.0)
    with pytest.raises(StateError):
        s.apply(Event.OFFER, 1.0)
    assert s.state is State.QUEUED


def test_cannot_end_before_connected() -> None:
    s = Session("s1", "alice", "vpn", queued_at=0.0)
    with pytest.raises(StateError, match="cannot end"):
        s.apply(Event.END, 1.0)
