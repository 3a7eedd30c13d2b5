"""``assist store copy``: a helpdesk moved from SQLite to PostgreSQL and back, intact."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyotp
import pytest

from assist.cli import main
from assist.core import pubkey
from assist.core.session import Event, Session
from assist.errors import AuditError
from assist.store import Store
from assist.store.copy import BATCH, copy_store
from tests.helpers import KeyPair, tamper
from tests.servers import Postgres


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def a_helpdesk(path: Path, key_file: Path, keys: dict[str, KeyPair], sessions: int) -> str:
    """A SQLite store with people, sealed TOTP, sessions and their events, audit, invites."""
    with Store(path, key_file) as store:
        store.directory.add("user", "alice", pubkey.load(keys["alice"].public), 1.0)
        store.directory.add("agent", "carol", pubkey.load(keys["carol"].public), 1.0)
        store.directory.set_totp("alice", pyotp.random_base32())
        store.invites.make("code-1", "", 3, 2e9, "admin", 5.0)
        for n in range(sessions):
            at = 1000.0 + n * 10
            s = Session(f"s{n:05}", "alice", f"topic {n} 'quoted' %s ?", at)
            store.sessions.insert(s, f"hash{n}")
            s.apply(Event.OFFER, at + 1, agent="carol")
            store.sessions.save(s, "offered", "agent:carol", {"n": n})
            store.audit.append(at + 2, "agent:carol", "keys", s.id, {"bytes": n})
        return store.audit.verify().head


def test_sqlite_to_postgresql_and_back_keeps_everything(
        tmp_path: Path, keys: dict[str, KeyPair], postgres_cluster: Postgres,
        capsys: pytest.CaptureFixture[str]) -> None:
    source, key_file = tmp_path / "old.db", tmp_path / "secret_key"
    sessions = BATCH + 200  # more than one batch of every big table
    head = a_helpdesk(source, key_file, keys, sessions)
    target = postgres_cluster.database()
    code, out, err = run(["store", "copy", "--from", f"sqlite:{source}", "--to", target,
                          "--json"], capsys)
    assert code == 0, err
    done = json.loads(out)
    assert done["rows"]["sessions"] == sessions and done["rows"]["events"] == 2 * sessions
    assert done["audit"] == {"records": sessions, "head": head}

    with Store(source, key_file) as old, Store(target, key_file) as new:
        assert new.audit.verify().head == head
        assert new.audit.records() == old.audit.records()
        assert new.directory.list("user") == old.directory.list("user")
        assert new.directory.totp_secret("alice") == old.directory.totp_secret("alice")
        for sid in ("s00000", f"s{sessions - 1:05}"):
            assert new.sessions.get(sid) == old.sessions.get(sid)
            assert new.sessions.events(sid) == old.sessions.events(sid)
        assert new.invites.find("code-1") == old.invites.find("code-1")
        # The target goes on where the source stopped: new events after old ones,
        # new audit records chained to the copied head.
        new.sessions.log("s00000", 9e8, "note", "admin", {})
        assert new.sessions.events("s00000")[-1][1] == "note"
        new.audit.append(9e8, "admin", "moved", None, {})
        assert new.audit.verify().records == sessions + 1

    # The report reads the same figures from either store.
    window = ["--since", "1970-01-01", "--until", "2000-01-01", "--json"]
    before = json.loads(run(["report", "--db", str(source), *window], capsys)[1])
    after = json.loads(run(["report", "--db", target, *window], capsys)[1])
    for doc in (before, after):  # what depends on the moment the report is made
        doc.pop("generated_at", None)
        doc["backlog"].pop("longest_wait")
        doc["window"].pop("now")
    assert after == before

    back = tmp_path / "back.db"
    code, out, _ = run(["store", "copy", "--from", target, "--to", str(back)], capsys)
    assert code == 0 and "audit log intact" in out
    with Store(back, key_file) as store:
        assert store.audit.verify().records == sessions + 1


def test_a_used_target_or_a_broken_chain_is_refused_and_nothing_is_kept(
        tmp_path: Path, keys: dict[str, KeyPair], postgres_cluster: Postgres,
        capsys: pytest.CaptureFixture[str]) -> None:
    source, key_file = tmp_path / "old.db", tmp_path / "secret_key"
    a_helpdesk(source, key_file, keys, 5)
    target = postgres_cluster.database()
    copy_store(str(source), target)
    code, _, err = run(["store", "copy", "--from", str(source), "--to", target], capsys)
    assert code == 1 and "already holds a helpdesk" in err and "Traceback" not in err

    tamper(str(source), "UPDATE audit SET data = '{}' WHERE seq = 3")
    fresh = postgres_cluster.database()
    with pytest.raises(AuditError, match="record 3 was changed"):
        copy_store(str(source), fresh)
    with Store(fresh) as store:  # the failed copy left nothing behind
        assert store.sessions.between(0, 2e9) == [] and store.audit.verify().records == 0

    code, _, err = run(["store", "copy", "--from", str(tmp_path / "none.db"), "--to",
                        fresh], capsys)
    assert code == 1 and "none.db" in err and "Traceback" not in err


def test_a_copy_shows_its_progress(tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    source, key_file = tmp_path / "old.db", tmp_path / "secret_key"
    a_helpdesk(source, key_file, keys, 30)
    seen: list[tuple[str, int, int]] = []
    started = time.monotonic()
    copy_store(str(source), str(tmp_path / "new.db"), lambda *step: seen.append(step))
    assert time.monotonic() - started < 30
    assert ("sessions", 30, 30) in seen and ("events", 60, 60) in seen
    assert seen[0] == ("meta", 0, 1)
