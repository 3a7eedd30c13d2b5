"""Secrets at rest: private from the first byte, TOTP secrets sealed, loose files found."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from assist.cli import main
from assist.errors import StoreError
from assist.store import Store
from assist.store.seal import Sealer, is_sealed
from assist.transport import ssh
from tests.helpers import raw_sql, store_at


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def careless_umask(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Files created now would be world-readable by default, and chmod is not allowed:
    only a file created private can come out private."""
    old = os.umask(0)

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("made private afterwards, not from the first byte")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    try:
        yield
    finally:
        os.umask(old)


def test_the_store_and_its_journal_are_private_from_the_first_byte(
        tmp_path: Path, careless_umask: None) -> None:
    data = tmp_path / "data"
    with Store(data / "broker.db", data / "secret_key") as store:
        store.directory.add("user", "alice", None, time.time())
        store.directory.set_totp("alice", pyotp.random_base32())
        for name in ("broker.db", "broker.db-wal", "broker.db-shm", "secret_key"):
            assert mode(data / name) == 0o600, name
    assert mode(data) == 0o700


def test_keys_are_private_from_the_first_byte(tmp_path: Path, careless_umask: None) -> None:
    ssh.load_or_create_host_key(tmp_path / "broker" / "host_key")
    ssh.generate_key_pair(tmp_path / "me" / "id_ed25519")
    assert mode(tmp_path / "broker" / "host_key") == 0o600
    assert mode(tmp_path / "me" / "id_ed25519") == 0o600
    assert mode(tmp_path / "broker") == 0o700


def test_a_copy_of_the_database_reveals_no_totp_secret(tmp_path: Path) -> None:
    secret = pyotp.random_base32()
    with Store(tmp_path / "b.db", tmp_path / "secret_key") as store:
        store.directory.add("user", "alice", None, time.time())
        store.directory.add("user", "bob", None, time.time())
        store.directory.set_totp("alice", secret)
        assert store.directory.totp_secret("alice") == secret
    stolen = tmp_path / "elsewhere" / "b.db"
    stolen.parent.mkdir()
    shutil.copy(tmp_path / "b.db", stolen)
    raw = sqlite3.connect(stolen).execute(
        "SELECT totp_secret FROM users WHERE name = 'alice'").fetchone()[0]
    assert is_sealed(raw) and secret not in raw
    assert secret.encode() not in stolen.read_bytes()
    with Store(stolen) as store, pytest.raises(StoreError, match="sealed"):
        store.directory.totp_secret("alice")
    # No key file where one is named: not made up (it could open none of them, and what
    # it sealed next no broker could open).
    with pytest.raises(StoreError, match="sealed with a secret key file that is not at"):
        Store(stolen, tmp_path / "elsewhere" / "other_key")
    assert not (tmp_path / "elsewhere" / "other_key").exists()
    Sealer.load_or_create(tmp_path / "elsewhere" / "other_key")
    with Store(stolen, tmp_path / "elsewhere" / "other_key") as store, \
            pytest.raises(StoreError, match="another key"):
        store.directory.totp_secret("alice")
    # A sealed value moved into another user's row opens for nobody.
    db = sqlite3.connect(tmp_path / "b.db")
    db.execute("UPDATE users SET totp_secret = ? WHERE name = 'bob'", (raw,))
    db.commit()
    db.close()
    with Store(tmp_path / "b.db", tmp_path / "secret_key") as store, \
            pytest.raises(StoreError):
        store.directory.totp_secret("bob")


def test_secrets_stored_in_the_clear_are_sealed_when_the_store_opens(tmp_path: Path) -> None:
    secret = pyotp.random_base32()
    with Store(tmp_path / "b.db") as store:  # as an older assist left it
        store.directory.add("user", "alice", None, time.time())
        store.db.execute("UPDATE users SET totp_secret = ? WHERE name = 'alice'", (secret,))
    with Store(tmp_path / "b.db", tmp_path / "secret_key") as store:
        assert store.directory.totp_secret("alice") == secret
    files = b"".join(f.read_bytes() for f in tmp_path.glob("b.db*"))
    assert secret.encode() not in files


@pytest.mark.stores
def test_rotating_the_key_keeps_every_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    db = store_at(tmp_path / "data" / "broker.db")
    os.environ["ASSIST_DATA_DIR"] = str(tmp_path / "data")
    secret = pyotp.random_base32()
    with Store(db, tmp_path / "data" / "secret_key") as store:
        store.directory.add("user", "alice", None, time.time())
        store.directory.set_totp("alice", secret)
    before = (tmp_path / "data" / "secret_key").read_bytes()
    with pytest.raises(SystemExit) as done:
        main(["store", "rotate-key", "--db", db, "--json"])
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)["secrets"] == 1
    after = (tmp_path / "data" / "secret_key").read_bytes()
    assert after != before and len(after.split()) == 1
    assert mode(tmp_path / "data" / "secret_key") == 0o600
    with Store(db, tmp_path / "data" / "secret_key") as store:
        assert store.directory.totp_secret("alice") == secret
    old = Sealer(tmp_path / "x", [base64.b64decode(before)])
    sealed = raw_sql(db, "SELECT totp_secret FROM users")[0]["totp_secret"]
    assert is_sealed(sealed) and secret not in sealed
    with pytest.raises(StoreError):
        old.open(sealed, "alice")


def test_doctor_names_loose_files_and_how_to_fix_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    os.environ["ASSIST_DATA_DIR"] = str(data)
    with Store(data / "broker.db", data / "secret_key"):
        pass
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--json"])
    assert done.value.code == 0 and json.loads(capsys.readouterr().out)["ok"]
    (data / "secret_key").chmod(0o644)
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert done.value.code == 1 and not report["ok"]
    (found,) = report["loose"]
    assert found["path"] == str(data / "secret_key") and found["fix"].startswith("chmod 600")


def test_the_resume_token_is_private_even_over_a_loose_file(tmp_path: Path) -> None:
    from assist.client.resume import Place, ResumeStore

    state = tmp_path / "state"
    store = ResumeStore(state)
    store.save("h:1", Place("s1", "token-one", "vpn"))
    assert mode(store.path) == 0o600 and mode(state) == 0o700
    store.path.chmod(0o644)  # loosened by someone meanwhile
    store.save("h:1", Place("s1", "token-two", "vpn"))
    assert mode(store.path) == 0o600
    assert store.load("h:1") == Place("s1", "token-two", "vpn")
