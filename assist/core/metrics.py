"""Helpdesk metrics: pure arithmetic over contacts and agent presence.

Every figure of ``assist report`` and of the console's wallboard, from plain
records that :mod:`assist.store.reports` loads. No I/O, no clock: ``now`` is
always a parameter.

Vocabulary used by every definition below:

* **contact**: a session that joined the queue inside the report window
  ``[since, until)`` (by ``queued_at``). With an agent filter, only contacts
  that agent was offered (took from the queue) count.
* **answered**: the contact reached an agent (``answered_at`` is set; it is
  the *first* connection, a requeue does not reset it).
* **abandoned**: the user left, or never came back, before any agent
  answered (state ``abandoned`` and never answered).
* **settled**: answered or abandoned, i.e. the first wait is over. Contacts
  still waiting for their first answer are not settled.
* **ended**: state ``ended`` (an agent or the user ended a live session).
* **repeat**: contact ``B`` repeats contact ``A`` when the same user joined
  again after ``A`` joined and at most :data:`REPEAT_WINDOW` after ``A``'s
  end (``A``'s join when ``A`` has not ended). Any earlier contact counts,
  abandoned ones too: the user's need came back.

Empty sets never divide: a figure whose denominator is 0 is ``None``, shown
as ``-`` by the CLI and ``null`` in JSON.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from assist.core.session import State

SERVICE_LEVEL_TARGET = 15.0
"""Seconds within which a user should be answered (the service-level goal)."""
REPEAT_WINDOW = 24 * 3600.0
"""A new contact by the same user within this many seconds is a repeat."""
SATISFIED = frozenset({4, 5})
"""Survey answers (1-5) that count as satisfied."""
PERCENTILE = 0.9
"""The high percentile reported next to each mean (nearest-rank method)."""
ANSWER_BUCKETS = (5.0, 10.0, 15.0, 30.0, 60.0, 120.0)
"""Upper bounds (inclusive, seconds) of the answer-time histogram; one more bucket above."""
ON_DUTY = frozenset({"available", "busy"})
"""Presence statuses that count as logged in for occupancy."""
_WAITING = frozenset({State.QUEUED, State.REQUEUED, State.OFFERED})


@dataclass(frozen=True)
class Segment:
    """A stretch one agent was connected with a user; ``end`` is ``None`` while live."""

    agent: str
    start: float
    end: float | None = None


@dataclass(frozen=True)
class Contact:
    """One session as the metrics see it.

    ``csat`` is the survey answer (1-5), ``offered_to`` the agents who took it
    from the queue, ``segments`` its connected stretches.
    """

    id: str
    user: str
    state: State
    queued_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    agent: str | None = None
    resolved: bool | None = None
    root_cause: str = ""
    csat: int | None = None
    topic: str = ""
    offered_to: tuple[str, ...] = ()
    segments: tuple[Segment, ...] = ()

    @property
    def waiting(self) -> bool:
        """True while the user waits for an agent (queued, requeued or being offered)."""
        return self.state in _WAITING

    @property
    def answered(self) -> bool:
        """True once an agent connected (ever)."""
        return self.answered_at is not None

    @property
    def abandoned(self) -> bool:
        """True if the user gave up before any agent answered."""
        return self.state is State.ABANDONED and self.answered_at is None

    @property
    def settled(self) -> bool:
        """True once the first wait is over (answered or abandoned)."""
        return self.answered or self.abandoned

    @property
    def answer_time(self) -> float | None:
        """Seconds from joining the queue to the first agent, if answered."""
        return None if self.answered_at is None else self.answered_at - self.queued_at

    @property
    def handle_time(self) -> float | None:
        """Seconds from the first answer to the end, for ended contacts."""
        if self.state is not State.ENDED or self.answered_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.answered_at

    @property
    def handlers(self) -> frozenset[str]:
        """Every agent who was connected with the user."""
        return frozenset(s.agent for s in self.segments)


@dataclass(frozen=True)
class Presence:
    """One presence change from the audit log: ``available``, ``busy``, ``away``, ``offline``.

    ``agent`` is ``None`` for "every agent" (a broker start or stop: nobody
    is connected at that moment).
    """

    at: float
    agent: str | None
    status: str


@dataclass(frozen=True)
class Ratio:
    """A share of counted things: ``hits`` out of ``total``."""

    hits: int
    total: int

    @property
    def value(self) -> float | None:
        """``hits / total``, or ``None`` when there is nothing to count."""
        return self.hits / self.total if self.total else None


@dataclass(frozen=True)
class Durations:
    """How many durations (seconds), their mean and nearest-rank p90 (``None`` if none)."""

    count: int
    mean: float | None
    p90: float | None


@dataclass(frozen=True)
class Backlog:
    """Sessions waiting now, and seconds since the oldest joined (``None`` if none)."""

    waiting: int
    longest_wait: float | None


@dataclass(frozen=True)
class Occupancy:
    """An agent's share of logged-in time spent with users.

    Attributes:
        agent: the agent's name (``"all"`` for the helpdesk total).
        in_sessions: seconds connected with users (union of segments).
        logged_in: seconds available or busy, union with ``in_sessions``.
    """

    agent: str
    in_sessions: float
    logged_in: float

    @property
    def value(self) -> float | None:
        """``in_sessions / logged_in``, or ``None`` if never logged in."""
        return self.in_sessions / self.logged_in if self.logged_in > 0 else None


@dataclass(frozen=True)
class Cause:
    """One row of the root-cause Pareto."""

    cause: str
    count: int
    share: float
    cumulative: float


@dataclass(frozen=True)
class Report:
    """Every figure of ``assist report`` for one window.

    Each field is defined by the function of the same (or nearest) name:
    :func:`answer_times`, :func:`service_level`, :func:`abandonment`,
    :func:`handle_times`, :func:`first_contact_resolution`,
    :func:`repeat_contacts`, :func:`csat`, :func:`backlog`, :func:`occupancy`,
    :func:`pareto` (``root_causes``, ``untagged``) and :func:`automation`.
    """

    since: float
    until: float
    now: float
    agent: str | None
    bots: tuple[str, ...]
    contacts: int
    answered: int
    abandoned: int
    answer_time: Durations
    service_level: Ratio
    abandonment: Ratio
    handle_time: Durations
    first_contact_resolution: Ratio
    repeat_contacts: Ratio
    csat: Ratio
    backlog: Backlog
    occupancy: tuple[Occupancy, ...]
    occupancy_total: Occupancy
    root_causes: tuple[Cause, ...]
    untagged: int
    automation: Ratio | None
    answer_histogram: tuple[tuple[str, int], ...]
    csat_scores: tuple[int, ...]


@dataclass(frozen=True)
class Wallboard:
    """The live figures an agent console shows above the queue."""

    queue_length: int
    longest_wait: float | None
    answered_within_target: Ratio
    agents_available: int


# -- building blocks -------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float = PERCENTILE) -> float | None:
    """Nearest-rank percentile: the ``ceil(fraction * n)``-th smallest value (``None`` if none).

    Nearest rank returns an observed value, so a lead can find the contact behind it.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def durations(values: Iterable[float]) -> Durations:
    """Count, mean and nearest-rank p90 of ``values`` (``None`` when empty)."""
    items = list(values)
    if not items:
        return Durations(0, None, None)
    return Durations(len(items), sum(items) / len(items), percentile(items))


def _by_user(contacts: Iterable[Contact]) -> dict[str, list[Contact]]:
    groups: dict[str, list[Contact]] = defaultdict(list)
    for contact in {c.id: c for c in contacts}.values():
        groups[contact.user].append(contact)
    return groups


def repeats(later: Contact, earlier: Contact) -> bool:
    """True if ``later`` is a repeat of ``earlier`` (see the module vocabulary)."""
    anchor = earlier.ended_at if earlier.ended_at is not None else earlier.queued_at
    return (later.user == earlier.user and later.id != earlier.id
            and earlier.queued_at < later.queued_at <= anchor + REPEAT_WINDOW)


def _is_repeat(c: Contact, groups: Mapping[str, list[Contact]]) -> bool:
    return any(repeats(c, other) for other in groups.get(c.user, ()))


def _followed(c: Contact, groups: Mapping[str, list[Contact]]) -> bool:
    return any(repeats(other, c) for other in groups.get(c.user, ()))


# -- the figures -----------------------------------------------------------------------


def answer_times(contacts: Iterable[Contact]) -> Durations:
    """Answer time: ``answered_at - queued_at`` over answered contacts.

    Abandoned and waiting contacts have none (see :func:`abandonment`, :func:`backlog`).
    """
    return durations(t for c in contacts if (t := c.answer_time) is not None)


def service_level(contacts: Iterable[Contact], target: float = SERVICE_LEVEL_TARGET) -> Ratio:
    """Share answered within ``target`` seconds.

    Numerator: answered contacts with answer time <= ``target``. Denominator:
    settled contacts (answered + abandoned), so a user who gave up counts as
    not answered in time. Contacts still waiting are not counted yet.
    """
    settled = [c for c in contacts if c.settled]
    hits = sum(1 for c in settled if (t := c.answer_time) is not None and t <= target)
    return Ratio(hits, len(settled))


def abandonment(contacts: Iterable[Contact]) -> Ratio:
    """Abandonment rate: abandoned / settled (answered + abandoned).

    Leaving after a first answer (requeued, then gone) is not abandoning.
    """
    settled = [c for c in contacts if c.settled]
    return Ratio(sum(1 for c in settled if c.abandoned), len(settled))


def handle_times(contacts: Iterable[Contact]) -> Durations:
    """Handle time: ``ended_at - answered_at`` over ended contacts (a requeue's wait included)."""
    return durations(t for c in contacts if (t := c.handle_time) is not None)


def first_contact_resolution(contacts: Iterable[Contact],
                             history: Iterable[Contact] = ()) -> Ratio:
    """First-contact resolution.

    Numerator: ended contacts marked resolved that no repeat followed (no
    contact by the same user within :data:`REPEAT_WINDOW` after the end).
    Denominator: ended contacts. ``history`` adds contacts outside the window
    (the store loads the day after ``until``). Contacts that ended less than a
    day before the report is made are provisional: a repeat may still come.
    """
    chosen = list(contacts)
    groups = _by_user([*chosen, *history])
    ended = [c for c in chosen if c.state is State.ENDED]
    hits = sum(1 for c in ended if c.resolved and not _followed(c, groups))
    return Ratio(hits, len(ended))


def repeat_contacts(contacts: Iterable[Contact], history: Iterable[Contact] = ()) -> Ratio:
    """Repeat contacts: contacts that repeat an earlier one / all contacts.

    Numerator: contacts with an earlier contact of the same user that they
    repeat (the earlier one may lie before the window: pass it in
    ``history``). Denominator: every contact in the window, settled or not.
    """
    chosen = list(contacts)
    groups = _by_user([*chosen, *history])
    return Ratio(sum(1 for c in chosen if _is_repeat(c, groups)), len(chosen))


def csat(contacts: Iterable[Contact]) -> Ratio:
    """Satisfaction: answers of 4 or 5 / contacts with a survey answer."""
    answers = [c.csat for c in contacts if c.csat is not None]
    return Ratio(sum(1 for a in answers if a in SATISFIED), len(answers))


def csat_scores(contacts: Iterable[Contact]) -> tuple[int, ...]:
    """How many survey answers were 1, 2, 3, 4 and 5 (five counts)."""
    counts = Counter(c.csat for c in contacts)
    return tuple(counts[score] for score in range(1, 6))


def backlog(waiting_since: Iterable[float], now: float) -> Backlog:
    """Sessions waiting now and how long the oldest has waited.

    ``waiting_since`` are the join times of sessions waiting now (queued,
    requeued or being offered), whatever the window: the backlog is a "now"
    figure. The console can pass its queue list's ``queued_at`` values.
    """
    times = list(waiting_since)
    return Backlog(len(times), max(0.0, now - min(times)) if times else None)


def answer_histogram(contacts: Iterable[Contact],
                     bounds: Sequence[float] = ANSWER_BUCKETS) -> tuple[tuple[str, int], ...]:
    """Answered contacts by answer time: ``(label, count)`` per bucket, upper bound inclusive."""
    labels = [f"<={_short(b)}" for b in bounds] + [f">{_short(bounds[-1])}"]
    counts = [0] * (len(bounds) + 1)
    for c in contacts:
        t = c.answer_time
        if t is not None:
            counts[next((i for i, b in enumerate(bounds) if t <= b), len(bounds))] += 1
    return tuple(zip(labels, counts, strict=True))


def _short(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def pareto(contacts: Iterable[Contact]) -> tuple[tuple[Cause, ...], int]:
    """Root causes of ended contacts, most frequent first, and the untagged count.

    Each row: the cause, its count, its share of all *tagged* ended contacts,
    and the cumulative share down to that row. Ties sort by name. Ended
    contacts without a root cause are returned separately, not as a row.
    """
    ended = [c for c in contacts if c.state is State.ENDED]
    counts = Counter(c.root_cause for c in ended if c.root_cause)
    total = sum(counts.values())
    rows, running = [], 0
    for cause, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        running += count
        rows.append(Cause(cause, count, count / total, running / total))
    return tuple(rows), len(ended) - total


def automation(contacts: Iterable[Contact], bots: Iterable[str],
               history: Iterable[Contact] = ()) -> Ratio | None:
    """Automation rate: contacts the bots handled alone / settled contacts.

    Numerator: ended contacts whose every connected agent is a bot (none was
    referred to a person: no human segment) and that no repeat followed.
    Denominator: settled contacts (as for :func:`abandonment`). ``None`` when
    no bot is named: the figure does not apply.
    """
    names = frozenset(bots)
    if not names:
        return None
    chosen = list(contacts)
    groups = _by_user([*chosen, *history])
    hits = sum(1 for c in chosen
               if c.state is State.ENDED and c.segments and c.handlers <= names
               and not _followed(c, groups))
    return Ratio(hits, sum(1 for c in chosen if c.settled))


# -- occupancy -------------------------------------------------------------------------


def _measure(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of ``intervals`` (overlaps count once, empty ones not at all)."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _clip(start: float, end: float, lo: float, hi: float) -> tuple[float, float]:
    return max(start, lo), min(end, hi)


def on_duty(presence: Iterable[Presence], since: float,
            end: float) -> dict[str, list[tuple[float, float]]]:
    """Intervals in ``[since, end]`` each agent was available or busy.

    A status holds from its record to the agent's next record; a record
    without an agent (broker start/stop) takes every agent offline; the last
    status holds until ``end``. Records must be in log order.
    """
    current: dict[str, tuple[str, float]] = {}
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def close(agent: str, at: float) -> None:
        status, start = current.pop(agent)
        lo, hi = _clip(start, at, since, end)
        if status in ON_DUTY and hi > lo:
            spans[agent].append((lo, hi))

    for record in presence:
        if record.at >= end:
            break
        agents = list(current) if record.agent is None else [record.agent]
        for agent in agents:
            if agent in current:
                close(agent, record.at)
        if record.agent is not None:
            current[record.agent] = (record.status, record.at)
            spans.setdefault(record.agent, [])
    for agent in list(current):
        close(agent, end)
    return dict(spans)


def occupancy(contacts: Iterable[Contact], presence: Iterable[Presence], since: float,
              end: float, agent: str | None = None) -> tuple[tuple[Occupancy, ...], Occupancy]:
    """Occupancy per agent and for the helpdesk, over ``[since, end]``.

    ``in_sessions``: the time an agent was connected with users (its
    segments, clipped to the window, overlaps counted once). ``logged_in``:
    the time the agent was available or busy by the presence log, united
    with ``in_sessions`` (an "away" agent who takes a user is working).
    Occupancy is ``in_sessions / logged_in``; the total divides the sums.
    ``contacts`` should include sessions that joined before the window but
    ran into it. Agents never logged in during the window are left out.
    """
    # A broker stop or start drops every connection: no segment outlives one, even if
    # the store only closed it when the broker came back.
    resets = sorted(p.at for p in presence if p.agent is None)
    busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for c in {c.id: c for c in contacts}.values():
        for s in c.segments:
            stop = end if s.end is None else s.end
            cut = bisect.bisect_right(resets, s.start)
            stop = min(stop, resets[cut]) if cut < len(resets) else stop
            busy[s.agent].append(_clip(s.start, stop, since, end))
    duty = on_duty(presence, since, end)
    rows = []
    for name in sorted(set(busy) | set(duty)):
        if agent is not None and name != agent:
            continue
        row = Occupancy(name, _measure(busy[name]), _measure([*busy[name], *duty.get(name, [])]))
        if row.logged_in > 0:
            rows.append(row)
    total = Occupancy("all", sum(r.in_sessions for r in rows), sum(r.logged_in for r in rows))
    return tuple(rows), total


# -- putting it together ---------------------------------------------------------------


def in_window(contacts: Iterable[Contact], since: float, until: float,
              agent: str | None = None) -> list[Contact]:
    """Contacts that joined in ``[since, until)`` (offered to ``agent`` if given), by join time."""
    chosen = {c.id: c for c in contacts
              if since <= c.queued_at < until and (agent is None or agent in c.offered_to)}
    return sorted(chosen.values(), key=lambda c: (c.queued_at, c.id))


def build_report(sessions: Iterable[Contact], presence: Sequence[Presence], since: float,
                 until: float, now: float, agent: str | None = None,
                 bots: Iterable[str] = ()) -> Report:
    """Compute every figure for the window ``[since, until)`` as seen at ``now``.

    Args:
        sessions: every session the store loaded: those in the window plus
            neighbours for repeat detection, sessions running into the window
            (occupancy) and those waiting now (backlog). Duplicates are fine.
        presence: presence records in log order (see :func:`on_duty`).
        since: start of the window (inclusive).
        until: end of the window (exclusive).
        now: when the report is made: the backlog is measured at ``now`` and
            occupancy stops at ``min(until, now)``.
        agent: only contacts offered to this agent, and only its occupancy.
            The backlog stays helpdesk-wide (nobody is assigned yet).
        bots: names of bot agents, for the automation rate.
    """
    everything = list({c.id: c for c in sessions}.values())
    window = in_window(everything, since, until, agent)
    bot_names = tuple(sorted(set(bots)))
    per_agent, total = occupancy(everything, presence, since, min(until, now), agent)
    causes, untagged = pareto(window)
    return Report(
        since=since, until=until, now=now, agent=agent, bots=bot_names,
        contacts=len(window),
        answered=sum(1 for c in window if c.answered),
        abandoned=sum(1 for c in window if c.abandoned),
        answer_time=answer_times(window),
        service_level=service_level(window),
        abandonment=abandonment(window),
        handle_time=handle_times(window),
        first_contact_resolution=first_contact_resolution(window, everything),
        repeat_contacts=repeat_contacts(window, everything),
        csat=csat(window),
        backlog=backlog((c.queued_at for c in everything if c.waiting), now),
        occupancy=per_agent,
        occupancy_total=total,
        root_causes=causes,
        untagged=untagged,
        automation=automation(window, bot_names, everything),
        answer_histogram=answer_histogram(window),
        csat_scores=csat_scores(window),
    )


def statuses(presence: Iterable[Presence]) -> dict[str, str]:
    """Each agent's latest presence status (log order), offline agents left out."""
    latest: dict[str, str] = {}
    for record in presence:
        if record.agent is None:
            latest.clear()
        else:
            latest[record.agent] = record.status
    return {name: status for name, status in latest.items() if status != "offline"}


def wallboard(waiting_since: Iterable[float], today: Iterable[Contact],
              agent_statuses: Iterable[str], now: float) -> Wallboard:
    """The console's live figures.

    Args:
        waiting_since: join times of the sessions waiting now (the queue).
        today: contacts that joined since the start of the day.
        agent_statuses: the status of each connected agent (a roster or
            ``statuses(...).values()``); ``available`` ones are counted.
        now: the time to measure the longest wait at.
    """
    queue = backlog(waiting_since, now)
    return Wallboard(queue.waiting, queue.longest_wait, service_level(today),
                     sum(1 for s in agent_statuses if s == "available"))
