"""Metrics math on hand-computed fixtures (pure: no store, no broker, no clock)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assist.core import metrics as mx
from assist.core.metrics import Contact, Presence, Ratio, Segment
from assist.core.session import State
from assist.store import reports

E, A, Q = State.ENDED, State.ABANDONED, State.QUEUED
DAY = 86400.0


def ended(cid: str, user: str, queued: float, answered: float, end: float, *segments: Segment,
          resolved: bool = True, cause: str = "", csat: int | None = None) -> Contact:
    return Contact(cid, user, E, queued, answered, end, segments[-1].agent if segments else None,
                   resolved, cause, csat, offered_to=tuple(s.agent for s in segments),
                   segments=segments)


def abandoned(cid: str, user: str, queued: float, left: float) -> Contact:
    return Contact(cid, user, A, queued, None, left)


# The fixture day: window [0, 1000), report made at 1000.
A1 = ended("a1", "alice", 0, 10, 110, Segment("carol", 10, 110), cause="vpn", csat=5)
B1 = ended("b1", "bob", 20, 50, 250, Segment("dave", 50, 250), cause="vpn", csat=4)
C1 = abandoned("c1", "cat", 30, 90)
A2 = ended("a2", "alice", 300, 315, 415, Segment("bot", 315, 415), cause="password", csat=2)
D1 = ended("d1", "dan", 400, 401, 461, Segment("bot", 401, 461), resolved=False)
E1 = Contact("e1", "eve", Q, 500)
F1 = ended("f1", "fay", 600, 605, 905, Segment("bot", 605, 700), Segment("carol", 720, 905),
           cause="printer", csat=3)
G1 = abandoned("g1", "gus", 700, 760)
WINDOW = [A1, B1, C1, A2, D1, E1, F1, G1]
# Outside the window: gus came a day before, bob comes back after it.
G0 = ended("g0", "gus", -50000, -49990, -40000, Segment("carol", -49990, -40000))
B2 = ended("b2", "bob", 5000, 5010, 5100, Segment("dave", 5010, 5100))
HISTORY = [G0, B2]
PRESENCE = [
    Presence(-100, "carol", "available"),
    Presence(-50, "dave", "available"),
    Presence(0, "bot", "available"),
    Presence(260, None, "offline"),  # broker restart: everybody offline
    Presence(270, "dave", "away"),
    Presence(270, "carol", "available"),
    Presence(270, "bot", "available"),
    Presence(800, "bot", "offline"),
]


@pytest.fixture
def report() -> mx.Report:
    return mx.build_report([*WINDOW, *HISTORY], PRESENCE, 0, 1000, 1000, bots=["bot"])


def test_counts(report: mx.Report) -> None:
    # 8 joined in [0, 1000); answered a1 b1 a2 d1 f1; abandoned c1 g1; e1 still waits.
    assert (report.contacts, report.answered, report.abandoned) == (8, 5, 2)


def test_answer_time(report: mx.Report) -> None:
    # answer times: a1 10, b1 30, a2 15, d1 1, f1 5 -> sum 61 / 5 = 12.2
    # sorted 1 5 10 15 30; p90 nearest rank = ceil(0.9 * 5) = 5th = 30
    assert report.answer_time == mx.Durations(5, 12.2, 30)
    # within 15 s (inclusive): 10, 15, 1, 5 = 4; settled = 5 answered + 2 abandoned = 7
    assert report.service_level == Ratio(4, 7)


def test_abandonment_and_handle_time(report: mx.Report) -> None:
    assert report.abandonment == Ratio(2, 7)  # c1, g1 of 7 settled
    # handle: a1 100, b1 200, a2 100, d1 60, f1 300 (requeue wait included) -> 760 / 5 = 152
    # sorted 60 100 100 200 300; p90 rank ceil(4.5) = 5 -> 300
    assert report.handle_time == mx.Durations(5, 152, 300)


def test_first_contact_resolution_and_repeats(report: mx.Report) -> None:
    # ended: a1 b1 a2 d1 f1 = 5. a1 is followed by a2 (300 <= 110 + 1 day), b1 by b2
    # (after the window), d1 unresolved -> only a2 and f1 count: 2 / 5
    assert report.first_contact_resolution == Ratio(2, 5)
    # repeats in the window: a2 (of a1), g1 (of g0, before the window: 700 <= -40000 + 86400)
    assert report.repeat_contacts == Ratio(2, 8)


def test_csat_backlog_pareto(report: mx.Report) -> None:
    assert report.csat == Ratio(2, 4)  # 5, 4 satisfied; 2, 3 not
    assert report.csat_scores == (0, 1, 1, 1, 1)
    assert report.backlog == mx.Backlog(1, 500)  # e1 joined at 500, now 1000
    # tagged ended: vpn 2, password 1, printer 1 (ties by name) of 4; d1 untagged
    assert report.root_causes == (
        mx.Cause("vpn", 2, 0.5, 0.5), mx.Cause("password", 1, 0.25, 0.75),
        mx.Cause("printer", 1, 0.25, 1.0))
    assert report.untagged == 1


def test_automation(report: mx.Report) -> None:
    # bot alone, no repeat after: a2, d1. f1 was referred to carol. Settled: 7.
    assert report.automation == Ratio(2, 7)
    assert mx.automation(WINDOW, []) is None


def test_occupancy(report: mx.Report) -> None:
    by_agent = {o.agent: o for o in report.occupancy}
    # carol on duty [0, 260] + [270, 1000] = 260 + 730 = 990; sessions 100 + 185 = 285 inside it
    assert by_agent["carol"] == mx.Occupancy("carol", 285, 990)
    # dave available [0, 260] = 260 (away after the restart); session 50-250 = 200
    assert by_agent["dave"] == mx.Occupancy("dave", 200, 260)
    # bot on duty [0, 260] + [270, 800] = 790; sessions 315-415 and 401-461 overlap:
    # [315, 461] = 146, plus 605-700 = 95 -> 241
    assert by_agent["bot"] == mx.Occupancy("bot", 241, 790)
    # total: (285 + 200 + 241) / (990 + 260 + 790) = 726 / 2040
    assert report.occupancy_total == mx.Occupancy("all", 726, 2040)
    assert report.occupancy_total.value == pytest.approx(726 / 2040)


def test_agent_filter() -> None:
    rep = mx.build_report([*WINDOW, *HISTORY], PRESENCE, 0, 1000, 1000, agent="carol")
    # offered to carol in the window: a1, f1 -> answer 10, 5 -> mean 7.5
    assert rep.contacts == 2 and rep.answer_time.mean == 7.5
    assert [o.agent for o in rep.occupancy] == ["carol"]
    assert rep.backlog.waiting == 1  # the backlog stays helpdesk-wide


def test_histogram() -> None:
    # 1, 5 -> <=5s; 10 -> <=10s; 15 -> <=15s; 30 -> <=30s
    assert dict(mx.answer_histogram(WINDOW)) == {
        "<=5s": 2, "<=10s": 1, "<=15s": 1, "<=30s": 1, "<=1m": 0, "<=2m": 0, ">2m": 0}


def test_nothing_to_count_is_none_not_zero() -> None:
    rep = mx.build_report([], [], 0, 1000, 1000, bots=["bot"])
    assert rep.answer_time == mx.Durations(0, None, None)
    assert rep.handle_time == mx.Durations(0, None, None)
    for ratio in (rep.service_level, rep.abandonment, rep.first_contact_resolution,
                  rep.repeat_contacts, rep.csat, rep.automation):
        assert ratio is not None and ratio.value is None
    assert rep.backlog == mx.Backlog(0, None)
    assert rep.occupancy == () and rep.occupancy_total.value is None
    assert rep.root_causes == () and rep.untagged == 0


def test_percentile_nearest_rank() -> None:
    assert mx.percentile([]) is None
    assert mx.percentile([7.0]) == 7.0
    # 10 values: ceil(0.9 * 10) = 9th smallest
    assert mx.percentile([float(i) for i in range(10, 0, -1)]) == 9.0
    # 11 values: ceil(9.9) = 10th smallest
    assert mx.percentile([float(i) for i in range(1, 12)]) == 10.0


def test_repeat_window_edges() -> None:
    first = ended("x1", "u", 0, 1, 100, Segment("a", 1, 100))
    same_time = Contact("x0", "u", E, 0, 1, 50)
    at_edge = Contact("x2", "u", Q, 100 + DAY)
    past_edge = Contact("x3", "u", Q, 100 + DAY + 1)
    other_user = Contact("y1", "v", Q, 200)
    assert mx.repeats(at_edge, first)  # exactly 24 h after the end still counts
    assert not mx.repeats(past_edge, first)
    assert not mx.repeats(first, at_edge)  # only later contacts repeat earlier ones
    assert not mx.repeats(same_time, first) and not mx.repeats(first, same_time)
    assert not mx.repeats(other_user, first)
    # an unfinished earlier contact anchors on its join time
    waiting = Contact("w", "u", Q, 0)
    assert mx.repeats(Contact("w2", "u", Q, DAY), waiting)
    assert not mx.repeats(Contact("w3", "u", Q, DAY + 1), waiting)


def test_service_level_counts_abandoned_as_misses() -> None:
    # answered in 15.0 (a hit, inclusive) and 15.5; one abandoned after 2 s -> 1 / 3
    contacts = [Contact("1", "a", E, 0, 15.0, 20), Contact("2", "b", E, 0, 15.5, 20),
                abandoned("3", "c", 0, 2), Contact("4", "d", Q, 0)]
    assert mx.service_level(contacts) == Ratio(1, 3)


def test_answered_then_requeued_then_gone_is_not_abandoned() -> None:
    gone = Contact("1", "a", A, 0, 5, 90, segments=(Segment("carol", 5, 30),))
    assert gone.answered and not gone.abandoned and gone.handle_time is None
    assert mx.abandonment([gone]) == Ratio(0, 1)


def test_timeline_reads_offers_and_connected_stretches() -> None:
    events: list[tuple[float, str, str, dict[str, Any]]] = [
        (0.0, "queued", "alice", {}),
        (5.0, "offered", "agent:carol", {}),
        (6.0, "connected", "user:alice", {}),
        (50.0, "requeued", "broker", {"agent": "carol", "why": "agent disconnected"}),
        (60.0, "offered", "agent:dave", {}),
        (70.0, "requeued", "broker", {"agent": "dave", "why": "user did not answer"}),
        (80.0, "offered", "agent:bot", {}),
        (81.0, "connected", "user:alice", {}),
        (90.0, "ended", "agent:bot", {"reason": "agent"}),
        (95.0, "survey", "user", {"csat": 5}),
    ]
    offered, segments = reports.timeline(events)
    assert offered == ("carol", "dave", "bot")
    assert segments == (Segment("carol", 6, 50), Segment("bot", 81, 90))
    live = reports.timeline([(0.0, "offered", "agent:carol", {}), (1.0, "connected", "user:u", {})])
    assert live == (("carol",), (Segment("carol", 1, None),))


def test_occupancy_edges() -> None:
    # An away agent who takes a user is logged in for that time: 100 / 100.
    away = [Presence(0, "x", "away")]
    busy = [Contact("1", "u", E, 0, 100, 200, segments=(Segment("x", 100, 200),))]
    rows, _ = mx.occupancy(busy, away, 0, 1000)
    assert rows == (mx.Occupancy("x", 100, 100),)
    # A live segment runs to the end of the window; presence before `since` is clipped.
    live = [Contact("2", "u", State.CONNECTED, 0, 900, None, segments=(Segment("y", 900),))]
    rows, _ = mx.occupancy(live, [Presence(-500, "y", "available")], 0, 1000)
    assert rows == (mx.Occupancy("y", 100, 1000),)
    # Never logged in during the window: left out.
    rows, total = mx.occupancy([], [Presence(-5, "z", "available"), Presence(-1, "z",
                                                                             "offline")], 0, 10)
    assert rows == () and total.value is None


def test_no_segment_outlives_a_broker_restart() -> None:
    # Connected at 100, broker stopped at 300, restarted at 400 and closed the segment then.
    stuck = [Contact("1", "u", State.REQUEUED, 0, 100, None,
                     segments=(Segment("x", 100, 400),))]
    presence = [Presence(0, "x", "available"), Presence(300, None, "offline"),
                Presence(400, None, "offline")]
    rows, _ = mx.occupancy(stuck, presence, 0, 1000)
    assert rows == (mx.Occupancy("x", 200, 300),)  # with users 100-300, on duty 0-300


def test_statuses_and_wallboard() -> None:
    now = mx.statuses(PRESENCE)
    assert now == {"dave": "away", "carol": "available"}  # bot went offline
    board = mx.wallboard([940.0, 970.0], WINDOW, now.values(), now=1000.0)
    # two waiting, the oldest since 940; within 15 s 4 of 7 settled; one available agent
    assert board == mx.Wallboard(2, 60.0, Ratio(4, 7), 1)


@st.composite
def contacts(draw: st.DrawFn, index: int) -> Contact:
    user = draw(st.sampled_from("uvwxyz"))
    queued = draw(st.floats(-DAY, 2 * DAY, allow_nan=False))
    kind = draw(st.sampled_from(["waiting", "abandoned", "ended", "gone-after-answer"]))
    agent = draw(st.sampled_from(["a", "b", "bot"]))
    wait = draw(st.floats(0, 300, allow_nan=False))
    talk = draw(st.floats(0, 3000, allow_nan=False))
    cid = f"c{index}"
    if kind == "waiting":
        return Contact(cid, user, Q, queued)
    if kind == "abandoned":
        return abandoned(cid, user, queued, queued + wait)
    seg = Segment(agent, queued + wait, queued + wait + talk)
    if kind == "gone-after-answer":
        return Contact(cid, user, A, queued, queued + wait, queued + wait + talk,
                       offered_to=(agent,), segments=(seg,))
    return ended(cid, user, queued, queued + wait, queued + wait + talk, seg,
                 resolved=draw(st.booleans()), cause=draw(st.sampled_from(["", "p", "q"])),
                 csat=draw(st.none() | st.integers(1, 5)))


@st.composite
def days(draw: st.DrawFn) -> list[Contact]:
    size = draw(st.integers(0, 25))
    return [draw(contacts(i)) for i in range(size)]


presences = st.lists(st.builds(Presence, st.floats(-DAY, 2 * DAY, allow_nan=False),
                               st.none() | st.sampled_from(["a", "b", "bot"]),
                               st.sampled_from(["available", "busy", "away", "offline"])),
                     max_size=20).map(lambda ps: sorted(ps, key=lambda p: p.at))


@given(days(), presences)
@settings(max_examples=100, deadline=None)
def test_figures_stay_within_their_bounds(day: list[Contact], presence: list[Presence]) -> None:
    rep = mx.build_report(day, presence, 0, DAY, DAY, bots=["bot"])
    assert rep.answered + rep.abandoned <= rep.contacts
    for ratio in (rep.service_level, rep.abandonment, rep.first_contact_resolution,
                  rep.repeat_contacts, rep.csat, rep.automation):
        assert ratio is not None and 0 <= ratio.hits <= ratio.total
    for timing in (rep.answer_time, rep.handle_time):
        if timing.count:
            assert timing.mean is not None and timing.p90 is not None and timing.p90 >= 0
    for row in (*rep.occupancy, rep.occupancy_total):
        assert 0 <= row.in_sessions <= row.logged_in + 1e-6 <= DAY * 3 + 1e-6
    if rep.root_causes:
        assert rep.root_causes[-1].cumulative == pytest.approx(1.0)
    assert sum(n for _, n in rep.answer_histogram) == rep.answer_time.count
    assert sum(rep.csat_scores) == rep.csat.total
