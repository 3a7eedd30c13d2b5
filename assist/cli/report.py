"""``assist report``: helpdesk metrics from the broker's store.

The figures are computed by :mod:`assist.core.metrics` (which defines each
one precisely) from records :mod:`assist.store.reports` loads read-only; this
module parses the window, and prints tables and unicode bar charts, JSON,
CSV or a self-contained HTML page (:mod:`assist.cli.report_html`).
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from assist.cli.app import DB_OPTION, JSON_OPTION, app, out, print_json
from assist.config import BrokerConfig
from assist.core import metrics
from assist.core.metrics import Durations, Ratio, Report
from assist.display import said
from assist.errors import ConfigError
from assist.store import reports

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_BLOCKS = " ▏▎▍▌▋▊▉█"
BAR_WIDTH = 30
"""Width in characters of a full terminal bar."""
NONE = "-"
"""How a figure with nothing to count is shown."""


# -- the window ------------------------------------------------------------------------


def parse_when(text: str, now: float, option: str = "--since") -> float:
    """Turn a ``--since``/``--until`` value into seconds since the epoch.

    Accepted: ``now``, ``today``, ``yesterday`` (local midnight), an ISO date
    or date-time (``2026-11-02``, ``2026-11-02T08:00``, with or without a UTC
    offset; without one it is local time), or a duration meaning "that long
    before now" (``90m``, ``24h``, ``1h30m``, ``7d``, ``2w``).

    Raises:
        ConfigError: naming the option and the accepted forms.
    """
    value = text.strip().lower()
    midnight = datetime.fromtimestamp(now).astimezone().replace(
        hour=0, minute=0, second=0, microsecond=0)
    named = {"now": now, "today": midnight.timestamp(),
             "yesterday": (midnight - timedelta(days=1)).timestamp()}
    if value in named:
        return named[value]
    if value and _DURATION.sub("", value) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
        return _on_the_calendar(now - seconds, text, option)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option}: cannot read {text!r} as a date or a duration; use e.g. 2026-11-02, "
            "'2026-11-02 08:00', today, yesterday, now, 90m, 24h or 7d") from None
    try:
        at = moment.timestamp()
    except (ValueError, OverflowError, OSError):
        at = float("-inf")
    return _on_the_calendar(at, text, option)


def _on_the_calendar(at: float, text: str, option: str) -> float:
    """``at``, if it is a moment local time can be told for (else a ConfigError)."""
    try:
        datetime.fromtimestamp(at).astimezone()
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"{option}: {text!r} is too far from today; give a nearer "
                          "date or a shorter duration") from None
    return at


def window(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """The report window ``[since, until)``: by default from today's local midnight to now.

    Raises:
        ConfigError: for an unreadable value or an empty window.
    """
    start = parse_when(since or "today", now, "--since")
    end = parse_when(until, now, "--until") if until else now
    if end <= start:
        raise ConfigError(f"--until ({stamp(end)}) must be after --since ({stamp(start)})")
    return start, end


# -- formatting ------------------------------------------------------------------------


def stamp(at: float) -> str:
    """Local date and time, to the minute (seconds when not on a minute)."""
    moment = datetime.fromtimestamp(at).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M" + (":%S" if moment.second else ""))


def iso(at: float) -> str:
    """ISO 8601 with the local UTC offset (for JSON)."""
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """A human duration: ``9.8 s``, ``8m 32s``, ``5h 37m``, ``3d 2h``; ``-`` for none."""
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for size, first, second, small in ((86400, "d", "h", 3600), (3600, "h", "m", 60),
                                       (60, "m", "s", 1)):
        if whole >= size:
            return f"{whole // size}{first} {whole % size // small}{second}"
    return f"{whole} s"  # pragma: no cover - seconds >= 60 always matches above


def share(value: float | None) -> str:
    """A share as a percentage with one decimal, ``-`` for none."""
    return NONE if value is None else f"{value * 100:.1f} %"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``fraction`` (0-1) of ``width`` cells, in eighth blocks."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[part] if part else "")


@dataclass(frozen=True)
class Row:
    """One figure as shown to a person: label, value, and what it was computed from."""

    label: str
    value: str
    detail: str


def _of(ratio: Ratio, what: str) -> str:
    return f"{ratio.hits} of {ratio.total} {what}"


def _times(d: Durations) -> str:
    return f"{duration(d.mean)} / {duration(d.p90)}"


def rows(report: Report) -> list[Row]:
    """The report's figures in reading order, formatted for people."""
    waiting = report.contacts - report.answered - report.abandoned
    target = f"{metrics.SERVICE_LEVEL_TARGET:g} s"
    occ = report.occupancy_total
    auto = report.automation
    return [
        Row("Contacts", str(report.contacts),
            f"{report.answered} answered, {report.abandoned} abandoned, {waiting} not yet"),
        Row("Answer time mean / p90", _times(report.answer_time),
            f"{report.answer_time.count} answered"),
        Row(f"Answered within {target}", share(report.service_level.value),
            _of(report.service_level, "settled")),
        Row("Abandonment rate", share(report.abandonment.value),
            _of(report.abandonment, "settled")),
        Row("Handle time mean / p90", _times(report.handle_time),
            f"{report.handle_time.count} ended"),
        Row("First-contact resolution", share(report.first_contact_resolution.value),
            _of(report.first_contact_resolution, "ended")),
        Row("Repeat contacts within 24 h", share(report.repeat_contacts.value),
            _of(report.repeat_contacts, "contacts")),
        Row("CSAT (answers 4-5)", share(report.csat.value), _of(report.csat, "answers")),
        Row("Backlog now", str(report.backlog.waiting),
            f"longest wait {duration(report.backlog.longest_wait)}"),
        Row("Agent occupancy", share(occ.value),
            f"{duration(occ.in_sessions)} with users of {duration(occ.logged_in)} on duty"),
        Row("Automation rate", share(auto.value) if auto else NONE,
            _of(auto, f"settled (bots: {', '.join(report.bots)})") if auto
            else "no bot agents named (--bot NAME)"),
    ]


# -- machine-readable outputs ----------------------------------------------------------


def _ratio(ratio: Ratio | None) -> dict[str, Any] | None:
    if ratio is None:
        return None
    return {"hits": ratio.hits, "total": ratio.total, "value": ratio.value}


def _durations(d: Durations) -> dict[str, Any]:
    return {"count": d.count, "mean": d.mean, "p90": d.p90}


def _occupancy(o: metrics.Occupancy) -> dict[str, Any]:
    return {"agent": o.agent, "in_sessions": o.in_sessions, "logged_in": o.logged_in,
            "value": o.value}


def as_dict(report: Report) -> dict[str, Any]:
    """The whole report as one JSON-ready document (``null`` where nothing was counted)."""
    return {
        "window": {"since": iso(report.since), "until": iso(report.until),
                   "since_epoch": report.since, "until_epoch": report.until,
                   "now": iso(report.now)},
        "agent": report.agent,
        "bots": list(report.bots),
        "service_level_target": metrics.SERVICE_LEVEL_TARGET,
        "repeat_window": metrics.REPEAT_WINDOW,
        "contacts": report.contacts,
        "answered": report.answered,
        "abandoned": report.abandoned,
        "answer_time": _durations(report.answer_time),
        "service_level": _ratio(report.service_level),
        "abandonment": _ratio(report.abandonment),
        "handle_time": _durations(report.handle_time),
        "first_contact_resolution": _ratio(report.first_contact_resolution),
        "repeat_contacts": _ratio(report.repeat_contacts),
        "csat": {**(_ratio(report.csat) or {}),
                 "scores": {str(i): n for i, n in enumerate(report.csat_scores, 1)}},
        "backlog": {"waiting": report.backlog.waiting,
                    "longest_wait": report.backlog.longest_wait},
        "occupancy": {"agents": [_occupancy(o) for o in report.occupancy],
                      "total": _occupancy(report.occupancy_total)},
        "root_causes": [{"cause": c.cause, "count": c.count, "share": c.share,
                         "cumulative": c.cumulative} for c in report.root_causes],
        "untagged": report.untagged,
        "automation": _ratio(report.automation),
        "answer_histogram": [{"bucket": b, "count": n} for b, n in report.answer_histogram],
    }


CSV_COLUMNS = ("kind", "name", "value", "numerator", "denominator", "unit", "cumulative")


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    # Fixed point, not %g: a long wait of 1.8e+06 s would confuse spreadsheets.
    return f"{value:.6f}".rstrip("0").rstrip(".")


def csv_text(report: Report) -> str:
    """One row per figure, then one per root cause and per agent; empty cells mean none.

    Columns: ``kind`` (figure, root_cause, occupancy), ``name``, ``value``,
    ``numerator``, ``denominator``, ``unit`` (count, seconds, share) and
    ``cumulative`` (root causes only).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def figure(name: str, value: float | int | None, unit: str,
               num: float | int | None = None, den: float | int | None = None) -> None:
        w.writerow(["figure", name, _cell(value), _cell(num), _cell(den), unit, ""])

    def ratio(name: str, r: Ratio | None) -> None:
        figure(name, r.value if r else None, "share", r.hits if r else None,
               r.total if r else None)

    figure("contacts", report.contacts, "count")
    figure("answered", report.answered, "count")
    figure("abandoned", report.abandoned, "count")
    figure("answer_time_mean", report.answer_time.mean, "seconds", None,
           report.answer_time.count)
    figure("answer_time_p90", report.answer_time.p90, "seconds", None, report.answer_time.count)
    ratio("service_level", report.service_level)
    ratio("abandonment_rate", report.abandonment)
    figure("handle_time_mean", report.handle_time.mean, "seconds", None,
           report.handle_time.count)
    figure("handle_time_p90", report.handle_time.p90, "seconds", None, report.handle_time.count)
    ratio("first_contact_resolution", report.first_contact_resolution)
    ratio("repeat_contacts", report.repeat_contacts)
    ratio("csat", report.csat)
    figure("backlog_waiting", report.backlog.waiting, "count")
    figure("backlog_longest_wait", report.backlog.longest_wait, "seconds")
    total = report.occupancy_total
    figure("occupancy", total.value, "share", total.in_sessions, total.logged_in)
    ratio("automation_rate", report.automation)
    figure("untagged", report.untagged, "count")
    tagged = sum(c.count for c in report.root_causes)
    for c in report.root_causes:
        w.writerow(["root_cause", c.cause, _cell(c.share), c.count, tagged, "share",
                    _cell(c.cumulative)])
    for o in report.occupancy:
        w.writerow(["occupancy", o.agent, _cell(o.value), _cell(o.in_sessions),
                    _cell(o.logged_in), "share", ""])
    return buf.getvalue()


# -- terminal output -------------------------------------------------------------------


def title(report: Report) -> str:
    """The report's heading: window and filters."""
    who = f"agent {report.agent}" if report.agent else "all agents"
    return f"Helpdesk report {stamp(report.since)} → {stamp(report.until)}, {who}"


@dataclass(frozen=True)
class Line:
    """One bar of a terminal chart: label, size, colour and the numbers to print after it."""

    label: str
    value: float
    texts: tuple[str, ...]
    style: str = "cyan"


def _chart(name: str, lines: Sequence[Line], scale: float | None = None) -> Table:
    """A bar chart as a borderless table; bars are scaled to ``scale`` (default: the largest)."""
    table = Table(title=name, show_header=False, box=None, title_justify="left",
                  title_style="bold", padding=(0, 1))
    table.add_column(justify="right")
    table.add_column(min_width=BAR_WIDTH)
    for _ in range(max((len(line.texts) for line in lines), default=0)):
        table.add_column(justify="right")
    top = scale or max((line.value for line in lines), default=0.0)
    for line in lines:
        # Labels are root causes and names people typed: text, never markup.
        table.add_row(said(line.label), Text(bar(line.value / top if top else 0.0),
                                             style=line.style), *map(said, line.texts))
    return table


def render(report: Report) -> Group:
    """The human report: the figures table, then bar charts of what is behind them."""
    # The agent's name comes from the command line: text, never markup.
    figures = Table(title=Text(title(report)), title_justify="left", title_style="bold")
    figures.add_column("figure")
    figures.add_column("value", justify="right", style="bold")
    figures.add_column("from", style="dim")
    for row in rows(report):
        figures.add_row(said(row.label), said(row.value), said(row.detail))
    parts: list[Table | Text] = [figures]
    target = metrics.SERVICE_LEVEL_TARGET
    if report.answer_time.count:
        limits = [*metrics.ANSWER_BUCKETS, math.inf]
        parts.append(_chart(f"Answer time (green: within {target:g} s)", [
            Line(b, n, (str(n),), "green" if limit <= target else "yellow")
            for (b, n), limit in zip(report.answer_histogram, limits, strict=True)]))
    if report.root_causes:
        parts.append(_chart("Root causes (Pareto: count, share, cumulative share)", [
            Line(c.cause, c.count, (str(c.count), share(c.share), share(c.cumulative)))
            for c in report.root_causes]))
        if report.untagged:
            parts.append(Text(f"  {report.untagged} ended without a root cause", style="dim"))
    if report.occupancy:
        parts.append(_chart("Occupancy by agent (full bar: 100 %)", [
            Line(o.agent, o.value or 0.0,
                 (share(o.value), f"{duration(o.in_sessions)} of {duration(o.logged_in)}"))
            for o in report.occupancy], scale=1.0))
    if report.csat.total:
        parts.append(_chart("Survey answers (green: satisfied)", [
            Line(str(score), n, (str(n),), "green" if score in metrics.SATISFIED else "yellow")
            for score, n in enumerate(report.csat_scores, 1)]))
    return Group(*parts)


# -- the command -----------------------------------------------------------------------


def make_report(db: str | None, since: str | None, until: str | None, agent: str | None,
                bots: Sequence[str], now: float) -> Report:
    """Open the store read-only, load the window and compute the report."""
    path = BrokerConfig.load(db=db).db
    start, end = window(since, until, now)
    conn = reports.open_readonly(path)
    try:
        data = reports.load(conn, start, end)
    finally:
        conn.close()
    return metrics.build_report(data.sessions, data.presence, start, end, now, agent, bots)


def write_html(report: Report, file: Path) -> None:
    """Write the HTML page.

    Raises:
        ConfigError: if the file cannot be written.
    """
    from assist.cli.report_html import render_html

    try:
        file.expanduser().write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {file}: {exc.strerror}") from None


@app.command("report")
def report_command(
    since: str | None = typer.Option(
        None, "--since", help="Start: a date/time, today, yesterday, or a duration ago "
        "(24h, 7d); default: today 00:00."),
    until: str | None = typer.Option(None, "--until", help="End, same forms; default: now."),
    agent: str | None = typer.Option(None, "--agent",
                                     help="Only contacts offered to this agent."),
    bots: list[str] = typer.Option([], "--bot", help="A bot agent's name (repeat for "
                                   "several), for the automation rate."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV: one row per figure, "
                                "then the root-cause Pareto and occupancy per agent."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML "
                                     "page with charts to this file."),
) -> None:
    """Helpdesk metrics for contacts that joined the queue in a window.

    [bold]Answer time[/]: join to first agent, mean and p90 (nearest rank), answered only.
    [bold]Answered within 15 s[/]: answered in time / settled (answered + abandoned).
    [bold]Abandonment[/]: left before any answer / settled.
    [bold]Handle time[/]: first answer to end, ended contacts.
    [bold]First-contact resolution[/]: resolved and no repeat within 24 h after / ended.
    [bold]Repeat contacts[/]: same user again within 24 h of an earlier contact's end / contacts.
    [bold]CSAT[/]: survey answers 4-5 / all answers.
    [bold]Backlog[/]: waiting now, and the longest wait.
    [bold]Occupancy[/]: time with users / time available or busy (presence log).
    [bold]Root causes[/]: Pareto of ended contacts' tags: count, share, cumulative share.
    [bold]Automation[/]: ended by --bot agents alone, no repeat within 24 h / settled.
    A figure with nothing to count shows "-" (null in JSON, empty in CSV).
    """
    if sum((as_json, as_csv, html is not None)) > 1:
        raise ConfigError("choose one of --json, --csv and --html")
    report = make_report(db, since, until, agent, bots, time.time())
    if as_json:
        print_json(as_dict(report))
    elif as_csv:
        print(csv_text(report), end="")
    elif html is not None:
        write_html(report, html)
        out.print(f"wrote the report to {html}")
    else:
        out.print(render(report))

