"""Queue order and routing, and the agent roster."""

from __future__ import annotations

import random

import pytest

from assist.core.queue import Queue, Roster, Waiting
from assist.errors import NotFound, StateError


def w(session: str, at: float, requeued: bool = False, online: bool = True) -> Waiting:
    return Waiting(session, f"user-{session}", "topic", at, requeued=requeued, online=online)


def test_fifo_by_join_time_regardless_of_insert_order() -> None:
    q = Queue()
    for session, at in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        q.add(w(session, at))
    assert [e.session for e in q] == ["a", "b", "c"]
    assert [q.position(s) for s in "abc"] == [1, 2, 3]


def test_requeued_users_go_in_front_keeping_their_own_order() -> None:
    q = Queue()
    q.add(w("new1", 10.0))
    q.add(w("new2", 11.0))
    assert q.add(w("drop-late", 9.0, requeued=True)) == 1
    assert q.add(w("drop-early", 5.0, requeued=True)) == 1
    assert [e.session for e in q] == ["drop-early", "drop-late", "new1", "new2"]


def test_take_head_skips_offline_users_but_keeps_their_place() -> None:
    q = Queue()
    q.add(w("a", 1.0, online=False))
    q.add(w("b", 2.0))
    assert q.take().session == "b"
    assert q.position("a") == 1
    with pytest.raises(StateError, match="empty"):
        q.take()
    with pytest.raises(StateError, match="offline"):
        q.take("a")
    q.set_online("a", True)
    assert q.take("a").session == "a"
    assert len(q) == 0


def test_take_specific_and_errors() -> None:
    q = Queue()
    q.add(w("a", 1.0))
    q.add(w("b", 2.0))
    assert q.take("b").session == "b"
    with pytest.raises(NotFound):
        q.take("zzz")
    with pytest.raises(StateError):
        q.add(w("a", 5.0))


def test_positions_stay_consistent_under_random_operations() -> None:
    rng = random.Random(7)
    q = Queue()
    model: dict[str, tuple[int, float]] = {}
    for step in range(2000):
        if model and rng.random() < 0.45:
            victim = rng.choice(sorted(model))
            q.remove(victim)
            del model[victim]
        else:
            session = f"s{step}"
            requeued = rng.random() < 0.1
            at = rng.uniform(0, 1000)
            q.add(w(session, at, requeued=requeued))
            model[session] = (0 if requeued else 1, at)
    expected = sorted(model, key=lambda s: (*model[s], s))
    assert [e.session for e in q] == expected
    for index, session in enumerate(expected[:50], 1):
        assert q.position(session) == index


def test_roster_statuses_and_fairness() -> None:
    r = Roster()
    r.join("carol", now=1.0)
    r.join("dave", now=2.0, status="away")
    assert [a.name for a in r.available()] == ["carol"]
    r.set_status("dave", "available", now=0.5)
    assert [a.name for a in r.available()] == ["dave", "carol"]  # longest idle first
    r.assign("dave", "s1", now=3.0)
    assert r.get("dave").status == "busy"
    with pytest.raises(StateError, match="already helping"):
        r.assign("dave", "s2", now=3.0)
    with pytest.raises(StateError, match="finish"):
        r.set_status("dave", "away", now=4.0)
    with pytest.raises(StateError, match="unknown agent status"):
        r.set_status("carol", "sleeping", now=4.0)
    r.release("dave", now=5.0)
    assert r.get("dave").status == "available" and r.get("dave").session is None
    assert r.leave("carol") is not None and "carol" not in r
    with pytest.raises(NotFound):
        r.get("carol")
