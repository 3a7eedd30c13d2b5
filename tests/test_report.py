"""``assist report``: a synthetic day through a real broker, checked by hand, and the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.cli import main
from assist.cli import report as cli_report
from assist.client import AgentClient, UserClient
from assist.core import metrics as mx
from assist.errors import ConfigError, StoreError
from assist.protocol import messages as m
from assist.store import Store, reports
from assist.store.engine import open_database
from tests.helpers import (
    KeyPair,
    agent_client,
    broker_config,
    make_key,
    register,
    store_at,
    user_client,
)

pytestmark = pytest.mark.stores

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC).timestamp()
UNTIL = T0 + 10_000
USERS = ("alice", "bob", "erin", "frank", "grace", "heidi", "ivan", "judy")
AGENTS = ("carol", "dave", "helperbot")
BOT = "helperbot"


@dataclass
class FakeClock:
    """The broker's clock; the test moves it (seconds after T0)."""

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = T0 + offset


@dataclass
class Day:
    broker: Broker
    clock: FakeClock
    db: str


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


# -- driving the broker ----------------------------------------------------------------


async def answer(clock: FakeClock, agent: AgentClient, user: UserClient, offer: float,
                 ready: float) -> str:
    """``agent`` takes ``user`` at ``offer``; the user's side is ready at ``ready``."""
    clock.at(offer)
    offered = asyncio.ensure_future(user.link.wait_for(lambda e: isinstance(e, m.Offered), 5))
    accepting = asyncio.ensure_future(agent.accept(user.session))
    await offered  # the broker stamped the offer; now move time on for the answer
    clock.at(ready)
    await user.ready()
    await accepting
    assert user.session is not None
    return user.session


async def finish(clock: FakeClock, agent: AgentClient, user: UserClient, at: float,
                 cause: str, resolved: bool = True, score: int | None = None) -> None:
    """``agent`` ends the session at ``at``; the user then answers the survey."""
    assert user.session is not None
    clock.at(at)
    ended = asyncio.ensure_future(user.link.wait_for(lambda e: isinstance(e, m.Ended), 5))
    await agent.end(user.session, cause, resolved)
    await ended
    if score is not None:
        await user.link.request(m.Survey(session=user.session, score=score), m.Ok)


async def join(clock: FakeClock, user: UserClient, at: float, topic: str) -> None:
    clock.at(at)
    await user.join(topic)


async def drop(clock: FakeClock, agent: AgentClient, user: UserClient, at: float) -> None:
    """The agent's link dies at ``at``; wait until the user hears they are back in the queue."""
    clock.at(at)
    lost = asyncio.ensure_future(user.link.wait_for(lambda e: isinstance(e, m.AgentLost), 5))
    await agent.link.close()
    await lost


@pytest.fixture
async def day(tmp_path: Path) -> AsyncIterator[Day]:
    """One helpdesk day (times are seconds after 08:00 UTC) on a real broker.

    ======  =====  ============================================================
    S1      alice  joins 100, carol 105/108, ends 408 resolved password-reset, 5
    S2      bob    joins 200, dave 210/212, ends 812 resolved vpn, survey 4
    S3      erin   joins 300, leaves 340 (abandoned)
    S4      frank  joins 500, carol 520/525, carol drops 625 (requeued);
                   dave 900/905, ends 1505 unresolved printer, survey 2
    S5      alice  joins 3600 (repeat of S1), bot 3602/3604, ends 3904
                   resolved password-reset, survey 3
    S6      grace  joins 4000, bot 4001/4003, ends 4203 resolved disk-full
    S7      erin   joins 5000 (repeat of S3), dave 5030/5040, ends 5640 vpn, 5
    S8      heidi  joins 6000, leaves 6005 (abandoned)
    S9      ivan   joins 7000, still waiting
    S10     judy   joins 8000, bot 8001/8002, bot drops 8100 (requeued);
                   carol (back 8200, available 8250) 8300/8302, ends 8602 vpn
    ======  =====  ============================================================

    Presence: every agent connects at 0 (away); carol and the bot are
    available from 60, dave from 120.
    """
    clock = FakeClock()
    keys: dict[str, KeyPair] = {n: make_key(tmp_path / "keys", n) for n in (*USERS, *AGENTS)}
    broker = Broker(broker_config(tmp_path / "broker"), clock=clock)
    await broker.start()
    for name in USERS:
        register(broker, "user", name, keys[name])
    for name in AGENTS:
        register(broker, "agent", name, keys[name])
    u = {n: await user_client(broker, keys[n]) for n in USERS}
    a = {n: await agent_client(broker, keys[n]) for n in AGENTS}
    carol, dave, bot = a["carol"], a["dave"], a[BOT]

    clock.at(60)
    await carol.set_status("available")
    await bot.set_status("available")
    clock.at(120)
    await dave.set_status("available")

    await join(clock, u["alice"], 100, "cannot log in")                 # S1
    await answer(clock, carol, u["alice"], 105, 108)
    await join(clock, u["bob"], 200, "vpn down")                        # S2
    await answer(clock, dave, u["bob"], 210, 212)
    await join(clock, u["erin"], 300, "disk")                           # S3
    clock.at(340)
    await u["erin"].leave()
    await finish(clock, carol, u["alice"], 408, "password-reset", score=5)
    await join(clock, u["frank"], 500, "printer")                       # S4
    await answer(clock, carol, u["frank"], 520, 525)
    await drop(clock, carol, u["frank"], 625)
    await finish(clock, dave, u["bob"], 812, "vpn", score=4)
    await answer(clock, dave, u["frank"], 900, 905)
    await finish(clock, dave, u["frank"], 1505, "printer", resolved=False, score=2)
    await join(clock, u["alice"], 3600, "cannot log in again")         # S5
    await answer(clock, bot, u["alice"], 3602, 3604)
    await finish(clock, bot, u["alice"], 3904, "password-reset", score=3)
    await join(clock, u["grace"], 4000, "disk full")                    # S6
    await answer(clock, bot, u["grace"], 4001, 4003)
    await finish(clock, bot, u["grace"], 4203, "disk-full")
    await join(clock, u["erin"], 5000, "vpn")                           # S7
    await answer(clock, dave, u["erin"], 5030, 5040)
    await finish(clock, dave, u["erin"], 5640, "vpn", score=5)
    await join(clock, u["heidi"], 6000, "mail")                         # S8
    clock.at(6005)
    await u["heidi"].leave()
    await join(clock, u["ivan"], 7000, "slow")                          # S9: waits
    await join(clock, u["judy"], 8000, "vpn")                           # S10
    await answer(clock, bot, u["judy"], 8001, 8002)
    await drop(clock, bot, u["judy"], 8100)
    clock.at(8200)
    carol = await agent_client(broker, keys["carol"])
    clock.at(8250)
    await carol.set_status("available")
    await answer(clock, carol, u["judy"], 8300, 8302)
    await finish(clock, carol, u["judy"], 8602, "vpn")

    # Closing links at the end of the window leaves no trace inside it.
    clock.at(10_000)
    yield Day(broker, clock, broker.config.db)
    clients: list[UserClient | AgentClient] = [*u.values(), carol, dave]
    for client in clients:
        await client.link.close()
    await broker.stop()


# Hand computation for the day (window 08:00 to 08:00 + 10000 s, bots = helperbot).
# Contacts: S1..S10 = 10; answered S1 S2 S4 S5 S6 S7 S10 = 7; abandoned S3 S8 = 2; settled 9.
ANSWER_TIMES = [8, 12, 25, 4, 3, 40, 2]    # sum 94
ANSWER_MEAN = 94 / 7                          # 13.43 s
ANSWER_P90 = 40                               # nearest rank ceil(0.9 * 7) = 7th of 2 3 4 8 12 25 40
WITHIN_15 = (5, 9)                            # 8 12 4 3 2 of 9 settled
ABANDONED = (2, 9)
HANDLE_TIMES = [300, 600, 980, 300, 200, 600, 600]  # S4: 1505 - 525 (requeue included); sum 3580
HANDLE_MEAN = 3580 / 7
HANDLE_P90 = 980                              # 7th of 200 300 300 600 600 600 980
FCR = (5, 7)                                  # ended 7; S1 has a repeat (S5), S4 unresolved
REPEATS = (2, 10)                             # S5 after S1, S7 after S3 (abandoned)
CSAT = (3, 5)                                 # answers 5 4 2 3 5 -> 5 4 5 satisfied
CSAT_SCORES = (0, 1, 1, 1, 2)
PARETO = [("vpn", 3, 3 / 7, 3 / 7), ("password-reset", 2, 2 / 7, 5 / 7),
          ("disk-full", 1, 1 / 7, 6 / 7), ("printer", 1, 1 / 7, 1.0)]
AUTOMATION = (2, 9)                           # S5, S6 bot only, no repeat; S10 went to carol
# Occupancy: carol in sessions 108-408 (300) + 525-625 (100) + 8302-8602 (300) = 700 of
# available 60-625 (565) + 8250-10000 (1750) = 2315; dave 600 + 600 + 600 = 1800 of
# 120-10000 = 9880; bot 300 + 200 + 98 = 598 of 60-8100 = 8040.
OCCUPANCY = {"carol": (700, 2315), "dave": (1800, 9880), BOT: (598, 8040)}
OCCUPANCY_TOTAL = (3098, 20235)


def check(rep: mx.Report) -> None:
    assert (rep.contacts, rep.answered, rep.abandoned) == (10, 7, 2)
    assert rep.answer_time.count == 7
    assert rep.answer_time.mean == pytest.approx(ANSWER_MEAN)
    assert rep.answer_time.p90 == pytest.approx(ANSWER_P90)
    assert (rep.service_level.hits, rep.service_level.total) == WITHIN_15
    assert (rep.abandonment.hits, rep.abandonment.total) == ABANDONED
    assert rep.handle_time.mean == pytest.approx(HANDLE_MEAN)
    assert rep.handle_time.p90 == pytest.approx(HANDLE_P90)
    assert (rep.first_contact_resolution.hits, rep.first_contact_resolution.total) == FCR
    assert (rep.repeat_contacts.hits, rep.repeat_contacts.total) == REPEATS
    assert (rep.csat.hits, rep.csat.total) == CSAT
    assert rep.csat_scores == CSAT_SCORES
    assert rep.backlog.waiting == 1
    assert [(c.cause, c.count) for c in rep.root_causes] == [(c, n) for c, n, _, _ in PARETO]
    for got, (_, _, part, cum) in zip(rep.root_causes, PARETO, strict=True):
        assert (got.share, got.cumulative) == pytest.approx((part, cum))
    assert rep.untagged == 0
    assert rep.automation is not None
    assert (rep.automation.hits, rep.automation.total) == AUTOMATION
    assert [o.agent for o in rep.occupancy] == sorted(OCCUPANCY)
    for o in rep.occupancy:
        assert (o.in_sessions, o.logged_in) == pytest.approx(OCCUPANCY[o.agent])
    total = rep.occupancy_total
    assert (total.in_sessions, total.logged_in) == pytest.approx(OCCUPANCY_TOTAL)


async def test_a_day_through_the_broker_matches_hand_computation(day: Day) -> None:
    db = reports.open_readonly(day.db)  # while the broker is still running
    try:
        data = reports.load(db, T0, UNTIL)
    finally:
        db.close()
    rep = mx.build_report(data.sessions, data.presence, T0, UNTIL, UNTIL, bots=[BOT])
    check(rep)
    assert rep.backlog.longest_wait == 3000  # ivan joined at 7000, report made at 10000
    times = sorted(t for c in mx.in_window(data.sessions, T0, UNTIL)
                   if (t := c.answer_time) is not None)
    assert times == sorted(ANSWER_TIMES)
    handles = sorted(t for c in mx.in_window(data.sessions, T0, UNTIL)
                     if (t := c.handle_time) is not None)
    assert handles == sorted(HANDLE_TIMES)


def _window(extra: list[str]) -> list[str]:
    return ["--since", datetime.fromtimestamp(T0, UTC).isoformat(),
            "--until", datetime.fromtimestamp(UNTIL, UTC).isoformat(), *extra]


async def test_cli_json_csv_html_and_terminal(day: Day, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", str(day.db), "--bot", BOT]
    code, out, _ = run(["report", *_window([*db, "--json"])], capsys)
    assert code == 0
    doc = json.loads(out)
    assert (doc["contacts"], doc["answered"], doc["abandoned"]) == (10, 7, 2)
    assert doc["answer_time"]["mean"] == pytest.approx(ANSWER_MEAN)
    assert doc["answer_time"]["p90"] == ANSWER_P90
    assert doc["service_level"] == {"hits": 5, "total": 9, "value": pytest.approx(5 / 9)}
    assert (doc["abandonment"]["hits"], doc["abandonment"]["total"]) == ABANDONED
    assert doc["handle_time"] == {"count": 7, "mean": pytest.approx(HANDLE_MEAN),
                                  "p90": HANDLE_P90}
    assert doc["first_contact_resolution"]["value"] == pytest.approx(5 / 7)
    assert doc["repeat_contacts"]["value"] == pytest.approx(2 / 10)
    assert doc["csat"]["value"] == pytest.approx(3 / 5)
    assert doc["csat"]["scores"] == {"1": 0, "2": 1, "3": 1, "4": 1, "5": 2}
    assert doc["backlog"]["waiting"] == 1
    assert [(c["cause"], c["count"]) for c in doc["root_causes"]] == [
        (c, n) for c, n, _, _ in PARETO]
    assert doc["automation"]["value"] == pytest.approx(2 / 9)
    assert doc["occupancy"]["total"]["value"] == pytest.approx(3098 / 20235)
    assert doc["service_level_target"] == mx.SERVICE_LEVEL_TARGET

    code, out, _ = run(["report", *_window([*db, "--csv"])], capsys)
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    figures = {r["name"]: r for r in table if r["kind"] == "figure"}
    assert float(figures["answer_time_mean"]["value"]) == pytest.approx(ANSWER_MEAN, rel=1e-5)
    assert (figures["service_level"]["numerator"], figures["service_level"]["denominator"]) \
        == ("5", "9")
    assert float(figures["handle_time_p90"]["value"]) == HANDLE_P90
    assert figures["csat"]["numerator"] == "3" and figures["backlog_waiting"]["value"] == "1"
    causes = [(r["name"], r["numerator"], r["denominator"]) for r in table
              if r["kind"] == "root_cause"]
    assert causes == [(c, str(n), "7") for c, n, _, _ in PARETO]
    agents = {r["name"]: float(r["value"]) for r in table if r["kind"] == "occupancy"}
    assert agents == pytest.approx({n: busy / on for n, (busy, on) in OCCUPANCY.items()},
                                   rel=1e-5)

    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    code, out, _ = run(["report", *_window([*db, "--html", str(page)])], capsys)
    assert code == 0 and "wrote the report" in out
    html = page.read_text()
    assert html.count("<svg") == 4  # answer times, Pareto, occupancy, survey answers
    assert "55.6 %" in html and "password-reset" in html
    # self-contained: nothing to fetch (the only URL is the SVG namespace)
    assert not re.search(r"<script|<link|<img|src=|href=|@import|url\(", html)
    assert set(re.findall(r"https?://[^\"' ]+", html)) == {"http://www.w3.org/2000/svg"}

    code, out, _ = run(["report", *_window(db)], capsys)
    assert code == 0
    for text in ("Answered within 15 s", "55.6 %", "5 of 9 settled", "13.4 s / 40.0 s",
                 "Abandonment rate", "22.2 %", "First-contact resolution", "71.4 %",
                 "Repeat contacts within 24 h", "20.0 %", "CSAT", "60.0 %", "Backlog now",
                 "Root causes", "vpn", "42.9 %", "Occupancy by agent", "Automation rate",
                 "█"):
        assert text in out, text

    code, out, _ = run(["report", *_window(["--db", str(day.db), "--agent", "dave",
                                            "--json"])], capsys)
    doc = json.loads(out)
    # offered to dave: S2, S4 (second offer), S7 -> answer 12, 25, 40 (S4 was first answered
    # by carol at 525: answer time is to the first agent)
    assert doc["contacts"] == 3 and doc["answer_time"]["mean"] == pytest.approx(77 / 3)
    assert [o["agent"] for o in doc["occupancy"]["agents"]] == ["dave"]
    assert doc["automation"] is None  # no --bot given


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since: cannot read 'last tuesday'"),
        (["--until", "2026-13-40"], "--until: cannot read"),
        (["--since", "2026-11-03", "--until", "2026-11-02"], "must be after --since"),
        (["--json", "--csv"], "choose one of --json, --csv and --html"),
        (["--since", "99999999d"], "--since: '99999999d' is too far from today"),
        (["--since", "0001-01-01"], "--since: '0001-01-01' is too far from today"),
        (["--agent", "[/x]"], "agent [/x]"),  # the name as text, not as markup
    ],
)
def test_bad_options_are_friendly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  args: list[str], message: str) -> None:
    db = store_at(tmp_path / "s.db")
    Store(db).close()
    code, out, err = run(["report", "--db", str(db), *args], capsys)
    assert code == (0 if args[0] == "--agent" else 1)
    assert message in out + err and "Traceback" not in out + err


@pytest.mark.sqlite_only
def test_missing_store_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "nowhere" / "broker.db"
    code, _, err = run(["report", "--db", str(db)], capsys)
    assert code == 1 and "no store at" in err and "assist serve" in err
    assert not db.parent.exists()
    code, out, _ = run(["report", "--db", str(db), "--json"], capsys)
    assert json.loads(out)["error"]["code"] == "store"
    not_a_store = tmp_path / "x.db"
    not_a_store.write_text("hello")
    with pytest.raises(StoreError, match=r"cannot read|not an assist store"):
        reports.open_readonly(not_a_store)


def test_newer_store_and_unwritable_page(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = store_at(tmp_path / "s.db")
    Store(db).close()
    code, _, err = run(["report", "--db", str(db), "--html", str(tmp_path / "no" / "r.html")],
                       capsys)
    assert code == 1 and "cannot write" in err
    conn = open_database(db)
    with conn.transaction():
        conn.set_version(99)
    conn.close()
    code, _, err = run(["report", "--db", str(db)], capsys)
    assert code == 1 and "newer than this assist" in err


def test_presence_loads_the_status_each_agent_had_when_the_window_opened(
        tmp_path: Path) -> None:
    with Store(store_at(tmp_path / "s.db")) as store:
        log = store.audit.append
        log(10, "agent:old", "presence", None, {"status": "available"})
        log(20, "agent:carol", "presence", None, {"status": "away"})
        log(30, "agent:carol", "presence", None, {"status": "available"})  # carol at 100
        log(40, "broker", "stop")
        log(50, "broker", "start")                                          # all offline
        log(60, "agent:dave", "presence", None, {"status": "available"})  # dave at 100
        log(90, "admin", "user-add", None, {"name": "x"})                  # not presence
        log(150, "agent:carol", "presence", None, {"status": "offline"})
        log(250, "agent:dave", "presence", None, {"status": "away"})      # after the window
        db = reports.open_readonly(store.path)
        try:
            got = reports.presence(db, 100, 200)
        finally:
            db.close()
    assert got == [mx.Presence(10, "old", "available"), mx.Presence(30, "carol", "available"),
                   mx.Presence(50, None, "offline"), mx.Presence(60, "dave", "available"),
                   mx.Presence(150, "carol", "offline")]
    # old went offline with the broker restart; carol too; dave is on duty [100, 200].
    assert mx.on_duty(got, 100, 200) == {"old": [], "carol": [], "dave": [(100, 200)]}


def test_empty_store_shows_dashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = store_at(tmp_path / "s.db")
    Store(db).close()
    code, out, _ = run(["report", "--db", str(db), "--since", "7d"], capsys)
    assert code == 0
    assert re.search(r"Answered within 15 s\s+│\s+-\s", out)
    code, out, _ = run(["report", "--db", str(db), "--since", "7d", "--json"], capsys)
    doc = json.loads(out)
    assert doc["answer_time"] == {"count": 0, "mean": None, "p90": None}
    assert doc["service_level"]["value"] is None and doc["automation"] is None
    code, out, _ = run(["report", "--db", str(db), "--csv"], capsys)
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["csat"]["value"] == "" and rows["contacts"]["value"] == "0"


def test_help_explains_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["report", "--help"], capsys)
    assert code == 0
    for term in ("Answer time", "Answered within 15 s", "Abandonment", "Handle time",
                 "First-contact resolution", "Repeat contacts", "CSAT", "Backlog",
                 "Occupancy", "Root causes", "Automation", "--since", "--html"):
        assert term in out, term


def test_parse_when() -> None:
    now = datetime(2026, 11, 2, 15, 30, tzinfo=UTC).timestamp()
    assert cli_report.parse_when("now", now) == now
    assert cli_report.parse_when("90m", now) == now - 5400
    assert cli_report.parse_when("1h30m", now) == now - 5400
    assert cli_report.parse_when("7d", now) == now - 7 * 86400
    assert cli_report.parse_when("2w", now) == now - 14 * 86400
    assert cli_report.parse_when("2026-11-02T08:00:00Z", now) == T0
    assert cli_report.parse_when("2026-11-02 09:00+01:00", now) == T0
    today = cli_report.parse_when("today", now)
    assert cli_report.parse_when("yesterday", now) < today <= now
    assert datetime.fromtimestamp(today).astimezone().hour == 0
    with pytest.raises(ConfigError):
        cli_report.parse_when("5 parsecs", now)
    with pytest.raises(ConfigError):
        cli_report.parse_when("", now)


def test_formatting_helpers() -> None:
    assert cli_report.duration(None) == "-"
    assert cli_report.duration(9.75) == "9.8 s"
    assert cli_report.duration(512) == "8m 32s"
    assert cli_report.duration(3 * 3600 + 7 * 60) == "3h 7m"
    assert cli_report.duration(2 * 86400 + 3600) == "2d 1h"
    assert cli_report.share(None) == "-" and cli_report.share(5 / 9) == "55.6 %"
    assert cli_report.bar(1.0, 4) == "████" and cli_report.bar(0.0, 4) == ""
    assert cli_report.bar(0.5625, 2) == "█▏"  # 9 eighths of 2 cells
