"""Pure parts under the broker core: the fake clock, the message budget, queue views."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from assist.broker import views
from assist.core.budget import Budget, Verdict, message_cost
from assist.core.clock import FakeClock
from assist.core.queue import Queue, Waiting
from assist.core.queueview import QueueMirror, ViewTracker
from assist.protocol import encode
from assist.protocol import messages as m


def test_fake_clock_fires_timers_in_order_and_only_when_due() -> None:
    clock = FakeClock(100.0)
    fired: list[str] = []
    clock.call_later(2, fired.append, "b")
    clock.call_later(1, fired.append, "a")
    cancelled = clock.call_later(1.5, fired.append, "x")
    cancelled.cancel()
    assert clock.advance(0.99) == 0 and fired == []
    assert clock.advance(1.01) == 2 and fired == ["a", "b"]
    assert clock.now() == 102.0 and clock.pending() == 0


def test_a_timer_armed_by_a_timer_fires_in_the_same_advance_if_due() -> None:
    clock = FakeClock(0.0)
    fired: list[float] = []

    def again() -> None:
        fired.append(clock.now())
        if len(fired) < 3:
            clock.call_later(1, again)

    clock.call_later(1, again)
    clock.advance(10)
    assert fired == [1.0, 2.0, 3.0]


def test_budget_serves_refuses_then_disconnects_and_forgives() -> None:
    budget = Budget(rate=10, burst=20, now=0.0, strikes=3, memory=30)
    assert [budget.spend(1, 0.0) for _ in range(20)] == [Verdict.SERVE] * 20
    assert budget.spend(1, 0.0) is Verdict.REFUSE and budget.struck == 1
    assert budget.pause() == 1.0, "until the bucket is half full again"
    # Back after the pause, still flooding: strike after strike, then the door.
    t = 1.0
    verdicts = []
    for _ in range(3):
        while (v := budget.spend(1, t)) is Verdict.SERVE:
            pass
        verdicts.append(v)
        t += budget.pause()
    assert verdicts == [Verdict.REFUSE, Verdict.REFUSE, Verdict.DISCONNECT]
    # A client that bursts now and then is never cut off: strikes are forgotten.
    calm = Budget(rate=10, burst=20, now=0.0, strikes=3, memory=30)
    for burst_at in (0.0, 40.0, 80.0, 120.0, 160.0):
        while calm.spend(1, burst_at) is Verdict.SERVE:
            pass
        assert calm.struck == 1


def test_big_messages_cost_more() -> None:
    assert message_cost(10) < 1.01
    assert message_cost(1024 * 1024) == 17.0


def _waiting(session: str, at: float, requeued: bool = False) -> Waiting:
    return Waiting(session, f"u{session}", f"topic {session}", at, requeued=requeued)


def test_deltas_bring_a_mirror_to_the_queue_whatever_happens() -> None:
    rng = random.Random(7)
    queue = Queue()
    tracker = ViewTracker()
    mirror = QueueMirror()
    for page in tracker.pages(0.0):
        mirror.apply(page)
    assert mirror.ready and mirror.entries() == []
    serial = 0
    for _ in range(300):
        for _ in range(rng.randint(1, 5)):
            action = rng.random()
            if action < 0.5 or not len(queue):
                serial += 1
                entry = _waiting(f"s{serial}", rng.random() * 100, requeued=rng.random() < 0.2)
                queue.add(entry)
                tracker.touch(entry.session)
            elif action < 0.8:
                gone = rng.choice([w.session for w in queue])
                queue.remove(gone)
                tracker.touch(gone)
            else:
                one = rng.choice([w.session for w in queue])
                queue.set_online(one, not queue.get(one).online)
                tracker.touch(one)
        for delta in tracker.deltas(queue, 1.0):
            assert mirror.apply(delta) is True
        want = [(w.session, w.online) for w in queue]
        assert [(e.session, e.online) for e in mirror.entries()] == want
        assert [e.position for e in mirror.entries()] == list(range(1, len(want) + 1))


def test_a_delta_costs_the_change_not_the_queue() -> None:
    queue = Queue()
    tracker = ViewTracker()
    for i in range(2000):
        queue.add(_waiting(f"s{i}", float(i)))
        tracker.touch(f"s{i}")
    first = tracker.deltas(queue, 0.0)
    assert len(first) == 4 and all(len(d.joined) <= m.PAGE for d in first)
    queue.take()  # an agent takes the head: everybody's position changes
    tracker.touch("s0")
    (delta,) = tracker.deltas(queue, 0.0)
    assert delta.left == ("s0",) and delta.joined == () and len(encode(delta)) < 100
    # Nothing touched: nothing to send.
    assert tracker.deltas(queue, 0.0) == []


def test_pages_and_then_deltas_agree_on_versions() -> None:
    queue = Queue()
    tracker = ViewTracker()
    for i in range(1200):
        queue.add(_waiting(f"s{i}", float(i)))
        tracker.touch(f"s{i}")
    tracker.deltas(queue, 0.0)
    pages = tracker.pages(5.0)
    assert [len(p.entries) for p in pages] == [500, 500, 200]
    assert [p.last for p in pages] == [False, False, True]
    assert all(len(encode(p)) < 1024 * 1024 for p in pages)
    mirror = QueueMirror()
    assert [mirror.apply(p) for p in pages] == [False, False, True]
    queue.add(_waiting("late", 5000.0))
    tracker.touch("late")
    (delta,) = tracker.deltas(queue, 6.0)
    assert mirror.apply(delta) is True and mirror.entries()[-1].session == "late"
    # A delta applied twice is ignored; a skipped one is a gap.
    assert mirror.apply(delta) is False
    queue.add(_waiting("later", 6000.0))
    tracker.touch("later")
    tracker.deltas(queue, 7.0)  # lost on the way
    queue.add(_waiting("latest", 7000.0))
    tracker.touch("latest")
    (after_gap,) = tracker.deltas(queue, 8.0)
    assert mirror.apply(after_gap) is None


def test_a_session_that_joined_and_left_within_a_tick_costs_nothing() -> None:
    queue = Queue()
    tracker = ViewTracker()
    queue.add(_waiting("flash", 1.0))
    tracker.touch("flash")
    queue.remove("flash")
    assert tracker.deltas(queue, 0.0) == []


def test_a_requeued_user_moves_to_the_front_in_the_mirror() -> None:
    queue = Queue()
    tracker = ViewTracker()
    mirror = QueueMirror()
    for i in range(3):
        queue.add(_waiting(f"s{i}", float(i)))
        tracker.touch(f"s{i}")
    tracker.deltas(queue, 0.0)
    for page in tracker.pages(0.0):
        mirror.apply(page)
    assert [e.session for e in mirror.entries()] == ["s0", "s1", "s2"]
    queue.remove("s2")
    queue.add(_waiting("s2", 2.0, requeued=True))
    tracker.touch("s2")
    for d in tracker.deltas(queue, 0.0):
        mirror.apply(d)
    assert [e.session for e in mirror.entries()] == ["s2", "s0", "s1"]


def test_a_chatty_terminal_stays_within_its_budget() -> None:
    # A program printing a flushed line at a time: ~850 small outputs a second.
    budget = Budget(rate=500, burst=2000, now=0.0)
    verdicts = {budget.spend(message_cost(120, stream=True), n / 850) for n in range(850 * 30)}
    assert verdicts == {Verdict.SERVE}
    # The same number of pings is a flood.
    flood = Budget(rate=500, burst=2000, now=0.0)
    assert Verdict.REFUSE in {flood.spend(message_cost(20), n / 850) for n in range(850 * 30)}


class _Told:
    """A waiting user's connection, as the views see it: checks each place it is told."""

    def __init__(self, queue: Queue, told: dict[str, list[int]]) -> None:
        self.queue, self.told = queue, told
        self.after_each: Callable[[str], None] = lambda session: None

    def user_of(self, session: str) -> Any:
        return self if session in self.queue else None

    def send_view(self, key: str, msg: m.Position) -> None:
        assert msg.position == self.queue.position(msg.session), \
            f"{msg.session} told place {msg.position}, it is {self.queue.position(msg.session)}"
        self.told.setdefault(msg.session, []).append(msg.position)
        self.after_each(msg.session)


def test_a_sweep_of_places_reads_the_queue_as_it_is_at_each_slice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "POSITION_SLICE", 4)
    monkeypatch.setattr(views, "POSITION_NEAR", 2)
    clock, queue = FakeClock(0.0), Queue()
    told: dict[str, list[int]] = {}
    users = _Told(queue, told)
    board = views.Views(queue, clock, lambda: m.Wallboard(now=0.0), users.user_of)
    for i in range(12):
        queue.add(_waiting(f"s{i:02}", float(i)))
        board.placed(f"s{i:02}", i + 1)

    def accept_between_slices(session: str) -> None:
        # The first slice ends with s04: someone near the head is taken before the
        # next slice of the sweep runs.
        if session == "s04" and "s01" in queue:
            queue.remove("s01")
            board.forget("s01")
            board.touch("s01")

    users.after_each = accept_between_slices
    queue.remove("s00")
    board.forget("s00")
    board.touch("s00")
    clock.advance(views.POSITION_FAR_EVERY)  # the far sweep, in slices of 4
    assert told["s11"][-1] == 10, "the last slice was told places after both accepts"
    clock.advance(views.POSITION_FAR_EVERY)
    assert {s: places[-1] for s, places in told.items() if s in queue} == {
        w.session: queue.position(w.session) for w in queue}
