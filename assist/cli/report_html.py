"""``assist report --html``: one self-contained page with inline SVG charts.

No scripts, fonts, images or style sheets are fetched: the page is a single
file a lead can mail or archive, and opening it makes no network request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from assist.cli.report import duration, rows, share, stamp, title
from assist.core import metrics
from assist.core.metrics import Report

GOOD = "#2e7d32"
BAD = "#ef6c00"
INK = "#1f2933"
LINE = "#1565c0"

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1f2933; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #d9e2ec; }
td.value { text-align: right; font-weight: 600; white-space: nowrap; }
td.detail { color: #52606d; }
svg { display: block; margin: .5rem 0; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2933; }
dl { color: #52606d; } dt { font-weight: 600; color: #1f2933; margin-top: .4rem; }
"""

DEFINITIONS = (
    ("Contact", "a session that joined the queue in the window (by join time)."),
    ("Answer time", "join to the first agent, over answered contacts; p90 by nearest rank."),
    (f"Answered within {metrics.SERVICE_LEVEL_TARGET:g} s",
     "answered in time / settled contacts (answered + abandoned)."),
    ("Abandonment rate", "contacts that left before any answer / settled contacts."),
    ("Handle time", "first answer to end, over ended contacts."),
    ("First-contact resolution",
     "ended contacts marked resolved with no repeat within 24 h after / ended contacts."),
    ("Repeat contacts",
     "contacts by a user who had a contact ending at most 24 h before / all contacts."),
    ("CSAT", "survey answers of 4 or 5 / all survey answers."),
    ("Backlog now", "sessions waiting for an agent when the report was made."),
    ("Agent occupancy",
     "time connected with users / time available or busy by the presence log."),
    ("Root causes", "tags of ended contacts, most frequent first, with cumulative share."),
    ("Automation rate",
     "contacts ended by bot agents alone with no repeat within 24 h / settled contacts."),
)


@dataclass(frozen=True)
class Bar:
    """One bar of a chart."""

    label: str
    value: float
    text: str
    color: str = LINE


def columns(bars: Sequence[Bar], cumulative: Sequence[float] | None = None,
            width: int = 640, height: int = 220) -> str:
    """A vertical bar chart as SVG; ``cumulative`` (0-1 per bar) draws a Pareto line."""
    if not bars:
        return ""
    top = max(b.value for b in bars) or 1.0
    step = (width - 20) / len(bars)
    # Long labels under narrow bars would overlap: slant them and make room below.
    slant = max(len(b.label) for b in bars) * 7 > step
    left, bottom, head = 10, (90 if slant else 40), 20
    height += bottom - 40
    plot = height - bottom - head
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">']
    points = []
    for i, b in enumerate(bars):
        h = plot * b.value / top
        x = left + i * step + step * 0.15
        y = head + plot - h
        mid = left + i * step + step / 2
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{h:.1f}" fill="{b.color}"><title>{escape(b.label)}: '
                     f'{escape(b.text)}</title></rect>')
        parts.append(f'<text x="{mid:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                     f'{escape(b.text)}</text>')
        ly = height - bottom + 16
        turn = f' transform="rotate(-35 {mid:.1f} {ly})"' if slant else ""
        parts.append(f'<text x="{mid:.1f}" y="{ly}" text-anchor="{"end" if slant else "middle"}"'
                     f'{turn}>{escape(b.label)}</text>')
        if cumulative is not None:
            points.append(f"{mid:.1f},{head + plot * (1 - cumulative[i]):.1f}")
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{INK}" '
                     'stroke-width="2"/>')
        parts += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" '
                  f'fill="{INK}"/>' for p in points]
        parts.append(f'<text x="{width - left}" y="{head - 6}" text-anchor="end">'
                     "line: cumulative share (top = 100 %)</text>")
    parts.append(f'<line x1="{left}" y1="{head + plot}" x2="{width - left}" '
                 f'y2="{head + plot}" stroke="#9aa5b1"/></svg>')
    return "".join(parts)


def bars(items: Sequence[Bar], width: int = 640, scale: float | None = None) -> str:
    """A horizontal bar chart as SVG; ``scale`` is the value of a full bar (default: the max)."""
    if not items:
        return ""
    row, label_w, text_w = 26, 140, 200
    height = row * len(items) + 8
    full = scale or max(b.value for b in items) or 1.0
    span = width - label_w - text_w
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">']
    for i, b in enumerate(items):
        y = 4 + i * row
        w = span * min(b.value / full, 1.0)
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
                     f'{escape(b.label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{span}" height="18" '
                     'fill="#eef2f6"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="18" '
                     f'fill="{b.color}"/>')
        parts.append(f'<text x="{label_w + span + 8}" y="{y + 16}">{escape(b.text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _charts(report: Report) -> list[str]:
    out: list[str] = []
    target = metrics.SERVICE_LEVEL_TARGET
    if report.answer_time.count:
        limits = [*metrics.ANSWER_BUCKETS, float("inf")]
        out += [f"<h2>Answer time (target {target:g} s)</h2>", columns([
            Bar(label, n, str(n), GOOD if limit <= target else BAD)
            for (label, n), limit in zip(report.answer_histogram, limits, strict=True)])]
    if report.root_causes:
        out += ["<h2>Root causes (Pareto)</h2>", columns(
            [Bar(c.cause, c.count, f"{c.count} ({share(c.share)})", BAD)
             for c in report.root_causes],
            cumulative=[c.cumulative for c in report.root_causes])]
        if report.untagged:
            out.append(f"<p>{report.untagged} ended without a root cause.</p>")
    if report.occupancy:
        out += ["<h2>Occupancy by agent</h2>", bars(
            [Bar(o.agent, o.value or 0.0, f"{share(o.value)} of {duration(o.logged_in)}")
             for o in report.occupancy], scale=1.0)]
    if report.csat.total:
        out += ["<h2>Survey answers</h2>", columns(
            [Bar(str(score), n, str(n), GOOD if score in metrics.SATISFIED else BAD)
             for score, n in enumerate(report.csat_scores, 1)], height=180)]
    return out


def render_html(report: Report) -> str:
    """The whole page for ``report`` as one HTML string."""
    heading = escape(title(report))
    table = "".join(
        f"<tr><td>{escape(r.label)}</td><td class=value>{escape(r.value)}</td>"
        f"<td class=detail>{escape(r.detail)}</td></tr>" for r in rows(report))
    causes = "".join(
        f"<tr><td>{escape(c.cause)}</td><td class=value>{c.count}</td>"
        f"<td class=value>{share(c.share)}</td><td class=value>{share(c.cumulative)}</td></tr>"
        for c in report.root_causes)
    cause_table = ("<table><tr><th>root cause</th><th>count</th><th>share</th>"
                   f"<th>cumulative</th></tr>{causes}</table>") if causes else ""
    terms = "".join(f"<dt>{escape(t)}</dt><dd>{escape(d)}</dd>" for t, d in DEFINITIONS)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{heading}</title><style>{_CSS}</style></head><body>"
        f"<h1>{heading}</h1><p>Made {escape(stamp(report.now))}.</p>"
        f"<table><tr><th>figure</th><th>value</th><th>from</th></tr>{table}</table>"
        f"{''.join(_charts(report))}{cause_table}"
        f"<h2>Definitions</h2><dl>{terms}</dl>"
        f"<p>A figure with nothing to count shows {escape('-')}.</p></body></html>\n"
    )
