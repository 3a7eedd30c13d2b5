"""Store: migrations, directory, sessions, audit chain and tamper detection."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from assist.core import pubkey
from assist.core.session import Event, Session, State
from assist.errors import AuditError, ConfigError, Duplicate, NotFound, StoreError
from assist.store import Store
from assist.store.schema import MIGRATIONS
from tests.helpers import KeyPair


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    with Store(path) as store:
        version = store.db.execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)


def test_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(path)


def test_pubkey_fingerprint_matches_ssh_keygen(keys: dict[str, KeyPair]) -> None:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(keys["alice"].public)],
                         capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == keys["alice"].fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc", "private key"),
        ("hello world", "not an OpenSSH public key"),
        ("ssh-ed25519 !!!notbase64", "damaged"),
        ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIK0nJ2uYrFwGvYk", "damaged|does not match"),
    ],
)
def test_pubkey_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pubkey.parse(text)


def test_pubkey_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        pubkey.load(tmp_path / "nope.pub")


def test_directory_roles_are_separate(keys: dict[str, KeyPair]) -> None:
    with Store(":memory:") as store:
        alice = pubkey.load(keys["alice"].public)
        store.directory.add("user", "alice", alice, 1.0)
        store.directory.add("agent", "carol", pubkey.load(keys["carol"].public), 1.0)
        identity = store.directory.lookup(alice.fingerprint)
        assert identity is not None and (identity.role, identity.name) == ("user", "alice")
        with pytest.raises(Duplicate, match="already exists"):
            store.directory.add("user", "alice", None, 2.0)
        # The same key cannot also be an agent's.
        with pytest.raises(Duplicate, match="already registered"):
            store.directory.add("agent", "alice-agent", alice, 2.0)
        assert [p.name for p in store.directory.list("agent")] == ["carol"]
        store.directory.remove("user", "alice")
        assert store.directory.lookup(alice.fingerprint) is None
        with pytest.raises(NotFound):
            store.directory.remove("user", "alice")
        with pytest.raises(ConfigError, match="invalid name"):
            store.directory.add("user", "bad name!", None, 1.0)


def test_sessions_persist_state_and_events() -> None:
    with Store(":memory:") as store:
        s = Session("s1", "alice", "vpn", 10.0)
        store.sessions.insert(s, "hash")
        s.apply(Event.OFFER, 11.0, agent="carol")
        store.sessions.save(s, "offered", "agent:carol", {})
        loaded = store.sessions.get("s1")
        assert loaded.state is State.OFFERED and loaded.agent == "carol"
        assert store.sessions.by_resume("hash") is not None
        assert [e[1] for e in store.sessions.events("s1")] == ["queued", "offered"]
        assert [x.id for x in store.sessions.unfinished()] == ["s1"]
        store.sessions.set_csat("s1", 5, 20.0)
        assert store.sessions.csat("s1") == 5


def _chain(path: Path, count: int = 5) -> None:
    with Store(path) as store:
        for i in range(count):
            store.audit.append(float(i), "agent:carol", "keys", f"s{i}", {"n": i})


def test_audit_chain_verifies(tmp_path: Path) -> None:
    _chain(tmp_path / "a.db")
    with Store(tmp_path / "a.db") as store:
        result = store.audit.verify()
        assert result.records == 5
        records = store.audit.records()
        assert records[1].prev == records[0].hash


def test_audit_table_refuses_update_and_delete(tmp_path: Path) -> None:
    _chain(tmp_path / "a.db")
    with Store(tmp_path / "a.db") as store, pytest.raises(sqlite3.DatabaseError, match="append"):
        store.db.execute("UPDATE audit SET actor = 'x' WHERE seq = 2")


def _tamper(path: Path, sql: str) -> None:
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + sql)
    db.close()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE audit SET data = '{\"n\":99}' WHERE seq = 3", "record 3 was changed"),
        ("DELETE FROM audit WHERE seq = 2", "record 2 is missing"),
        ("DELETE FROM audit WHERE seq = 5", "removed from the end"),
        ("UPDATE audit SET actor = 'agent:dave' WHERE seq = 1", "record 1 was changed"),
    ],
)
def test_audit_detects_tampering(tmp_path: Path, sql: str, message: str) -> None:
    path = tmp_path / "a.db"
    _chain(path)
    _tamper(path, sql)
    with Store(path) as store, pytest.raises(AuditError, match=message):
        store.audit.verify()
