"""Store: migrations, directory, sessions, audit chain and tamper detection.

Tests marked ``stores`` run on SQLite and on PostgreSQL (see conftest).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from assist.core import pubkey
from assist.core.session import Event, Session, State
from assist.errors import AuditError, ConfigError, Duplicate, NotFound, StoreError
from assist.store import Store
from assist.store.directory import check_name
from assist.store.engine import open_database
from assist.store.schema import VERSION
from tests.helpers import KeyPair, Stores, store_at, tamper


@pytest.fixture
def location(tmp_path: Path) -> str:
    """This test's store: a SQLite file or a PostgreSQL database."""
    return store_at(tmp_path / "s.db")


@pytest.mark.stores
def test_migrations_are_applied_once(location: str) -> None:
    Store(location).close()
    with Store(location) as store:
        assert store.db.version() == VERSION
        tables = ("SELECT count(*) AS n FROM sqlite_master WHERE name = 'sessions'"
                  if Stores.engine == "sqlite" else
                  "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'sessions'")
        assert store.db.execute(tables).fetchone()["n"] == 1


@pytest.mark.stores
def test_newer_store_is_refused(location: str) -> None:
    Store(location).close()
    db = open_database(location)
    with db.transaction():
        db.set_version(99)
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(location)


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


def test_pubkey_file_holds_one_key_and_a_clean_comment(keys: dict[str, KeyPair]) -> None:
    alice, bob = (keys[name].public.read_text().strip() for name in ("alice", "bob"))
    with pytest.raises(ConfigError, match="holds 2 lines"):
        pubkey.parse(f"{alice}\n{bob}\n")
    parsed = pubkey.parse(f"{alice.split()[0]} {alice.split()[1]} evil\x1b]0;title\x07 me\n")
    assert parsed.comment == "evil]0;title me"
    assert len(pubkey.parse(f"{alice} {'x' * 5000}").comment) <= 200


def test_pubkey_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        pubkey.load(tmp_path / "nope.pub")


@pytest.mark.stores
def test_directory_roles_are_separate(keys: dict[str, KeyPair], location: str) -> None:
    with Store(location) as store:
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
    # A name that ends in a newline is not "alice" (a certificate or an invite for
    # "alice\n" must not become a second alice on every screen).
    for odd in ("alice\n", "alice\r", "\nalice"):
        with pytest.raises(ConfigError, match="invalid name"):
            check_name(odd)


@pytest.mark.stores
def test_sessions_persist_state_and_events(location: str) -> None:
    with Store(location) as store:
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


def _chain(location: str, count: int = 5) -> None:
    with Store(location) as store:
        for i in range(count):
            store.audit.append(float(i), "agent:carol", "keys", f"s{i}", {"n": i})


@pytest.mark.stores
def test_audit_chain_verifies(location: str) -> None:
    _chain(location)
    with Store(location) as store:
        result = store.audit.verify()
        assert result.records == 5
        records = store.audit.records()
        assert records[1].prev == records[0].hash


@pytest.mark.stores
@pytest.mark.parametrize("sql", ["UPDATE audit SET actor = 'x' WHERE seq = 2",
                                 "DELETE FROM audit WHERE seq = 5"])
def test_audit_table_refuses_update_and_delete(location: str, sql: str) -> None:
    _chain(location)
    with Store(location) as store, pytest.raises(StoreError, match="append-only"):
        store.db.execute(sql)
    with Store(location) as store:
        assert store.audit.verify().records == 5


@pytest.mark.stores
@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE audit SET data = '{\"n\":99}' WHERE seq = 3", "record 3 was changed"),
        ("DELETE FROM audit WHERE seq = 2", "record 2 is missing"),
        ("DELETE FROM audit WHERE seq = 5", "removed from the end"),
        ("UPDATE audit SET actor = 'agent:dave' WHERE seq = 1", "record 1 was changed"),
        ("DELETE FROM meta WHERE key = 'audit_head'", "head is missing"),
        ("INSERT INTO audit (seq, at, actor, action, session, data, prev, hash) SELECT 6, at, "
         "actor, action, session, data, hash, hash FROM audit WHERE seq = 5",
         "past the audit head"),
    ],
)
def test_audit_detects_tampering(location: str, sql: str, message: str) -> None:
    _chain(location)
    tamper(location, sql)
    with Store(location) as store, pytest.raises(AuditError, match=message):
        store.audit.verify()


_APPENDER = """
import sys
from assist.store import Store
with Store(sys.argv[1]) as store:
    for i in range(int(sys.argv[3])):
        store.audit.append(float(i), sys.argv[2], "keys", None, {"i": i})
"""


@pytest.mark.stores
def test_audit_chain_stays_one_chain_when_several_brokers_append(location: str) -> None:
    Store(location).close()  # migrated once, so the writers only append
    writers = [subprocess.Popen([sys.executable, "-c", _APPENDER, location, f"node:{n}", "60"])
               for n in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    with Store(location) as store:
        assert store.audit.verify().records == 240
        actors = [r.actor for r in store.audit.records()]
    assert sorted(set(actors)) == [f"node:{n}" for n in range(4)]
    # The CLI verifies the same chain the same way.
    done = subprocess.run([sys.executable, "-m", "assist", "audit", "verify", "--db", location,
                           "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert '"records": 240' in done.stdout


@pytest.mark.stores
def test_audit_verifies_while_brokers_append(location: str) -> None:
    """A check run beside live brokers sees a chain that grows, never one cut short."""
    _chain(location)
    writers = [subprocess.Popen([sys.executable, "-c", _APPENDER, location, f"node:{n}", "150"])
               for n in range(2)]
    checked = []
    with Store(location) as store:
        while any(w.poll() is None for w in writers):
            checked.append(store.audit.verify().records)
        assert [w.wait(timeout=60) for w in writers] == [0, 0]
        assert store.audit.verify().records == 305
    assert checked == sorted(checked) and len(checked) > 1


@pytest.mark.stores
def test_migrations_race_between_brokers(location: str) -> None:
    starters = [subprocess.Popen([sys.executable, "-c", _APPENDER, location, f"node:{n}", "1"])
                for n in range(4)]
    assert [s.wait(timeout=60) for s in starters] == [0, 0, 0, 0]
    with Store(location) as store:
        assert store.db.version() == VERSION and store.audit.verify().records == 4


@pytest.mark.stores
def test_recordings_are_found_by_session(location: str) -> None:
    with Store(location) as store:
        store.recordings.note("s1", "n1", "/rec/s1.cast", 10.0)
        store.recordings.note("s1", "n1", "/rec/s1.cast", 11.0)  # the same file again
        store.recordings.note("s1", "n2", "/rec/s1.cast", 20.0)  # moved: n2's own file
        store.recordings.note("s2", "n1", "/rec/s2.cast", 12.0)
        assert [(f.node, f.started) for f in store.recordings.of("s1")] == [
            ("n1", 10.0), ("n2", 20.0)]
        assert store.recordings.of("nope") == []


def test_addresses_are_printed_without_their_secrets() -> None:
    from assist.core.urls import masked
    from assist.store.engine import shown

    cases = {
        "postgresql://desk:s3cret@db.example/assist": "postgresql://desk:***@db.example/assist",
        "postgresql://desk@db.example/assist?password=s3cret&sslmode=require":
            "postgresql://desk@db.example/assist?password=***&sslmode=require",
        "nats://helpdesk:s3cret@10.0.0.5:4222": "nats://helpdesk:***@10.0.0.5:4222",
        "nats://s3cret@10.0.0.5:4222": "nats://***@10.0.0.5:4222",
        "nats://10.0.0.5:4222": "nats://10.0.0.5:4222",
        "postgresql://desk@db.example/assist": "postgresql://desk@db.example/assist",
    }
    for url, want in cases.items():
        assert masked(url) == want
        assert "s3cret" not in shown(url)


@pytest.mark.stores
def test_a_store_connection_lost_is_opened_again(location: str) -> None:
    if Stores.engine == "sqlite":
        pytest.skip("a SQLite file has no connection to lose")
    with Store(location) as store:
        store.audit.append(1.0, "broker", "test", None, {"n": 1})
        other = open_database(location)
        pid = store.db.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        other.execute("SELECT pg_terminate_backend(?)", (pid,))
        other.close()
        # What was under way when the server dropped it fails, and says so...
        with pytest.raises(StoreError):
            store.audit.append(2.0, "broker", "test", None, {"n": 2})
        # ...and the next write goes through on a new connection, chain intact.
        store.audit.append(3.0, "broker", "test", None, {"n": 3})
        assert [r.data["n"] for r in store.audit.records()] == [1, 3]
        assert store.audit.verify().records == 2


@pytest.mark.stores
def test_a_transaction_inside_another_undoes_only_itself_when_it_fails(location: str) -> None:
    with Store(location) as store:
        db = store.db
        with db.transaction():
            store.audit.append(1.0, "broker", "kept", None, {})
            with pytest.raises(Duplicate), db.transaction():
                store.directory.add("user", "alice", None, 2.0)
                store.directory.add("user", "alice", None, 3.0)  # refused: undoes both
            store.audit.append(4.0, "broker", "also-kept", None, {})
        assert [r.action for r in store.audit.records()] == ["kept", "also-kept"]
        assert store.directory.list("user") == []
        with pytest.raises(StoreError), db.transaction():  # the outer one fails: all undone
            store.audit.append(5.0, "broker", "gone", None, {})
            raise StoreError("refused")
        assert [r.action for r in store.audit.records()] == ["kept", "also-kept"]
        store.audit.verify()


@pytest.mark.stores
def test_only_a_node_of_several_is_fenced_to_the_sessions_it_holds(location: str) -> None:
    from assist.errors import Moved

    with Store(location) as old:  # a store from before nodes: sessions of no node
        old.sessions.insert(Session("s1", "alice", "vpn", 1.0), None)
    with Store(location, node="myhost") as alone:
        session = alone.sessions.get("s1")
        session.apply(Event.OFFER, 2.0, agent="carol")
        alone.sessions.save(session, "offered", "agent:carol", {})  # on its own: no fence
        alone.sessions.fenced = True  # one node of several
        session.apply(Event.CONNECT, 3.0)
        with pytest.raises(Moved):
            alone.sessions.save(session, "connected", "user:alice", {})
        assert alone.sessions.get("s1").state is State.OFFERED
