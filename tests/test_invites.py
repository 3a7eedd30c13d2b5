"""Invites: codes stored hashed, join strings, enrolling a new key through a real broker."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from assist.broker.enrolment import propose_name
from assist.broker.server import Broker
from assist.cli import main
from assist.client import UserClient
from assist.client.join import Invitation, enrol, join_command
from assist.config import ClientConfig
from assist.errors import ConfigError, HostKeyMismatch, InviteRefused
from assist.store import Store
from assist.transport import ssh
from tests.helpers import (
    KeyPair,
    Stores,
    agent_client,
    link_to,
    make_key,
    raw_sql,
    store_at,
)

pytestmark = pytest.mark.stores

FINGERPRINT = "SHA256:" + "A" * 43


def test_a_code_is_stored_hashed_used_once_and_told_apart(tmp_path: Path) -> None:
    db = store_at(tmp_path / "b.db")
    with Store(db) as store:
        store.invites.make("secret-code-1", "", 1, 200.0, "admin", 100.0)
        store.invites.make("secret-code-2", "", 5, 150.0, "admin", 100.0)
        used = store.invites.use("secret-code-1", 101.0)
        assert used.uses_left == 0
        with pytest.raises(InviteRefused, match="already used"):
            store.invites.use("secret-code-1", 102.0)
        with pytest.raises(InviteRefused, match="expired"):
            store.invites.use("secret-code-2", 150.0)
        with pytest.raises(InviteRefused, match="not known"):
            store.invites.use("made-up", 101.0)
        assert store.invites.pending(101.0)[0].uses_left == 5
    raw = raw_sql(db, "SELECT * FROM invites")
    assert raw and "secret-code" not in repr(raw)


def test_the_join_string_round_trips_and_a_damaged_one_says_so() -> None:
    invitation = Invitation(("helpdesk.example:2222", "[::1]:2223"), FINGERPRINT, "c0de_-x")
    text = invitation.encode()
    assert text.startswith("assist-join-1.") and text.isascii() and " " not in text
    assert Invitation.parse(f"  {text}\n") == invitation
    assert join_command(text, "vpn down") == f"assist help --join {text} 'vpn down'"
    for damaged in (text[:-6], text.replace("assist-join-1.", ""), "assist-join-1.!!!",
                    "assist-join-1." + "e30", text[:20]):
        with pytest.raises(ConfigError, match="copy the whole line"):
            Invitation.parse(damaged)


def test_a_proposed_name_is_free_and_valid() -> None:
    taken = {"alice", "alice-2"}
    assert propose_name("alice", taken.__contains__) == "alice-3"
    assert propose_name("Dr. Who!", taken.__contains__) == "Dr.-Who"
    assert propose_name("", taken.__contains__) == "user"
    assert propose_name("_x", taken.__contains__) == "x"


def _config(directory: Path) -> ClientConfig:
    return ClientConfig(file=directory / "client.toml", state=directory / "state",
                        os_user="newbie")


def _invitation(broker: Broker, code: str, fingerprint: str = "") -> Invitation:
    return Invitation((f"127.0.0.1:{broker.port}",), fingerprint or broker.fingerprint, code)


def _make(broker: Broker, code: str, uses: int = 1, name: str = "",
          seconds: float = 600.0) -> None:
    assert broker.store is not None
    now = time.time()
    broker.store.invites.make(code, name, uses, now + seconds, "admin", now)


async def test_enrolling_registers_the_key_pins_the_broker_and_queues_the_user(
        broker: Broker, tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys", "newbie")
    _make(broker, "code-one")
    config, name = await enrol(_invitation(broker, "code-one"), _config(tmp_path), key.private)
    assert name == "newbie" and config.host_key == broker.public_key
    # Saved: the next run needs nothing but the file.
    again = ClientConfig.load(tmp_path / "client.toml")
    assert (again.host, again.port, again.host_key) == ("127.0.0.1", broker.port,
                                                        broker.public_key)
    assert again.key == key.private
    user = UserClient(await link_to(broker, "user", key))
    welcome = await user.hello()
    assert welcome.name == "newbie" and welcome.registered
    await user.join("first contact")
    await user.link.close()
    assert broker.store is not None
    (used,) = [r for r in broker.store.audit.records() if r.action == "invite-used"]
    assert used.actor == "user:newbie" and used.data["made_by"] == "admin"
    # The same key again: its name back, no use spent (the code is used up).
    _, name = await enrol(_invitation(broker, "code-one"), _config(tmp_path), key.private)
    assert name == "newbie"


async def test_a_second_key_with_a_used_invite_is_refused(
        broker: Broker, tmp_path: Path) -> None:
    _make(broker, "once")
    first, second = (make_key(tmp_path / "keys", n) for n in ("one", "two"))
    await enrol(_invitation(broker, "once"), _config(tmp_path / "a"), first.private)
    with pytest.raises(InviteRefused, match="already used; ask your helpdesk for a new one"):
        await enrol(_invitation(broker, "once"), _config(tmp_path / "b"), second.private)
    _make(broker, "old", seconds=-1)
    with pytest.raises(InviteRefused, match="expired"):
        await enrol(_invitation(broker, "old"), _config(tmp_path / "b"), second.private)
    assert not (tmp_path / "b" / "client.toml").exists(), "nothing saved for a refusal"


async def test_an_invite_for_a_known_user_adds_a_key_and_names_win(
        broker: Broker, tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    _make(broker, "laptop", name="alice")
    key = make_key(tmp_path / "keys", "laptop")
    _, name = await enrol(_invitation(broker, "laptop"), _config(tmp_path), key.private)
    assert name == "alice"
    assert broker.store is not None
    assert len(broker.store.directory.get("user", "alice").keys) == 2
    _make(broker, "agents-key")
    with pytest.raises(InviteRefused, match="agent's"):
        await enrol(_invitation(broker, "agents-key"), _config(tmp_path / "c"),
                    keys["carol"].private)


async def test_a_broker_with_another_key_than_the_invites_is_refused_loudly(
        broker: Broker, tmp_path: Path) -> None:
    _make(broker, "code")
    key = make_key(tmp_path / "keys", "k")
    with pytest.raises(HostKeyMismatch, match="not the one in your invite"):
        await enrol(_invitation(broker, "code", FINGERPRINT), _config(tmp_path), key.private)
    assert broker.store is not None
    assert broker.store.invites.find("code") is not None
    assert broker.store.invites.find("code").uses_left == 1  # type: ignore[union-attr]


async def test_an_agent_makes_an_invite_through_the_broker(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    carol = await agent_client(broker, keys["carol"])
    made = await carol.make_invite(uses=2, seconds=60, name="")
    await carol.link.close()
    assert made.uses == 2 and made.expires_at > time.time()
    key = make_key(tmp_path / "keys", "k")
    _, name = await enrol(_invitation(broker, made.code), _config(tmp_path), key.private)
    assert name == "newbie"
    assert broker.store is not None
    made_by = [r.actor for r in broker.store.audit.records() if r.action == "invite-made"]
    assert made_by == ["agent:carol"]


def test_pins_are_kept_per_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "client.toml"
    one = dataclasses.replace(_config(tmp_path), host="10.0.0.1", port=2222)
    one.pinned("ssh-ed25519 AAAAone")
    two = dataclasses.replace(one, host="::1", port=2300, host_key="")
    two.with_key("agent", tmp_path / "agent_key").pinned("ssh-ed25519 AAAAtwo")
    assert ClientConfig.load(file).address == "[::1]:2300"  # the last one is the default
    assert ClientConfig.load(file).host_key == "ssh-ed25519 AAAAtwo"
    assert ClientConfig.load(file, "10.0.0.1:2222").host_key == "ssh-ed25519 AAAAone"
    assert ClientConfig.load(file, "10.0.0.9:2222").host_key == ""
    assert ClientConfig.load(file, role="agent").key == tmp_path / "agent_key"
    assert ClientConfig.load(file, role="user").key is None
    # A key given by a relative path is saved as the file it named, wherever assist runs.
    monkeypatch.chdir(tmp_path)
    dataclasses.replace(one, key=Path("mine")).remember_key("user")
    assert ClientConfig.load(file, role="user").key == tmp_path / "mine"
    # A file from before [known_brokers] keeps its one pin.
    file.write_text('key = "/k"\n[broker]\nhost = "h"\nport = 1\nhost_key = "ssh-ed25519 X"\n')
    old = ClientConfig.load(file)
    assert old.host_key == "ssh-ed25519 X" and old.key == Path("/k")


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    return int(exit_.value.code or 0)


def test_invite_command_prints_the_line_and_refuses_bad_terms(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_BROKER_HOST_KEY_PATH", str(tmp_path / "host_key"))
    db = store_at(tmp_path / "b.db")
    Store(db).close()  # the broker's, made by its first start
    # A key made up here would be one no broker presents: the broker's own is needed.
    code = run(["invite", "--db", db, "--address", "desk.example:2222"])
    assert code == 1 and "there is no host key at" in capsys.readouterr().err
    assert not (tmp_path / "host_key").exists()
    key = ssh.load_or_create_host_key(tmp_path / "etc" / "host_key")
    code = run(["invite", "--db", db, "--address", "desk.example:2222", "--uses", "3",
                 "--expires", "2d", "--json", "--host-key", str(tmp_path / "etc" / "host_key")])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["uses"] == 3
    assert data["command"] == f"assist help --join {data['join']}"
    invitation = Invitation.parse(data["join"])
    assert invitation.brokers == ("desk.example:2222",)
    assert invitation.fingerprint == ssh.key_fingerprint(ssh.openssh_key(key))
    monkeypatch.setenv("ASSIST_BROKER_HOST_KEY_PATH", str(tmp_path / "etc" / "host_key"))
    code = run(["invite", "--db", db, "--config", str(tmp_path / "missing.toml")])
    assert code == 1 and "config file" in capsys.readouterr().err
    assert abs(data["expires"] - time.time() - 2 * 86400) < 60
    code = run(["invite", "--db", db, "--expires", "40d"])
    assert code == 1 and "up to 30 days" in capsys.readouterr().err
    code = run(["invite", "--db", db, "--expires", "soon"])
    assert code == 1 and "such as 90s" in capsys.readouterr().err
    code = run(["invite", "--db", db, "--qr"])
    text = capsys.readouterr().out
    assert code == 0 and "assist help --join assist-join-1." in text and "█" in text


async def test_only_an_admin_may_invite_a_key_for_someone_who_exists(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    from assist.client.link import BrokerError

    carol = await agent_client(broker, keys["carol"])
    with pytest.raises(BrokerError, match="only an admin may invite a new key for them"):
        await carol.make_invite(name="alice")
    with pytest.raises(BrokerError, match="enrols one key"):
        await carol.make_invite(uses=2, name="newcomer")
    made = await carol.make_invite(name="newcomer")
    await carol.link.close()
    # Someone took the name meanwhile: the agent's invite may not add a key to them.
    assert broker.store is not None
    broker.store.directory.add("user", "newcomer", None, time.time())
    key = make_key(tmp_path / "keys", "k")
    with pytest.raises(InviteRefused, match="only an admin's invite"):
        await enrol(_invitation(broker, made.code), _config(tmp_path), key.private)
    assert broker.store.invites.find(made.code).uses_left == 1  # type: ignore[union-attr]


def test_an_old_pin_survives_saving_another_broker_and_any_path_reads_back(
        tmp_path: Path) -> None:
    file = tmp_path / "client.toml"
    file.write_text('[broker]\nhost = "a.example"\nport = 2222\nhost_key = "ssh-ed25519 A"\n')
    other = ClientConfig.load(file, "b.example:2222")
    assert other.host_key == ""  # another broker: first contact
    other.pinned("ssh-ed25519 B")
    assert ClientConfig.load(file, "a.example:2222").host_key == "ssh-ed25519 A"
    assert ClientConfig.load(file, "b.example:2222").host_key == "ssh-ed25519 B"
    odd = tmp_path / "kéys 🙂" / 'a"b\x7f'
    ClientConfig.load(file).with_key("user", odd)
    assert ClientConfig.load(file, role="user").key == odd


def test_a_key_with_a_certificate_in_ssh_is_the_one_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ASSIST_KEY", raising=False)
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    for name in ("id_ed25519", "id_rsa"):
        (ssh / name).write_text("key")
    assert ClientConfig.load(tmp_path / "c.toml").key is None
    (ssh / "id_rsa-cert.pub").write_text("ssh-rsa-cert-v01@openssh.com AAAA")
    config = ClientConfig.load(tmp_path / "c.toml")
    assert config.key == ssh / "id_rsa" and config.certificate.startswith("ssh-rsa-cert")


def test_a_named_invite_is_for_one_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_BROKER_HOST_KEY_PATH", str(tmp_path / "host_key"))
    db = store_at(tmp_path / "b.db")
    code = run(["invite", "--db", db, "--name", "bob", "--uses", "3"])
    assert code == 1 and "enrols one key" in capsys.readouterr().err


async def test_an_invite_of_several_nodes_enrols_at_one_and_remembers_them_all(
        broker: Broker, tmp_path: Path) -> None:
    from tests.servers import free_port

    key = make_key(tmp_path / "keys", "newbie")
    _make(broker, "code-nodes")
    down = f"127.0.0.1:{free_port()}"
    live = f"127.0.0.1:{broker.port}"
    invitation = Invitation((down, live), broker.fingerprint, "code-nodes")
    config, name = await enrol(invitation, _config(tmp_path), key.private)
    assert name == "newbie" and config.address == live
    again = ClientConfig.load(tmp_path / "client.toml")
    assert set(again.addresses) == {down, live}
    assert dict(again.pins) == {down: broker.public_key, live: broker.public_key}


def test_two_brokers_spending_the_last_use_at_once_enrol_one_key(
        tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    from assist.broker.enrolment import Enrolment
    from assist.protocol import messages as m
    from assist.transport.peer import Peer

    if Stores.engine == "sqlite":
        pytest.skip("SQLite runs one broker's write at a time: the other waits its turn")
    db = store_at(tmp_path / "b.db")
    with Store(db) as a, Store(db) as b:
        a.invites.make("one-use-code", "", 1, 1e12, "admin", 100.0)
        peers = {}
        for name in ("alice", "bob"):
            text = keys[name].public.read_text().strip()
            peers[name] = Peer("enrol", name, pubkey_fingerprint(text), False, "127.0.0.1",
                               key=text)
        node_a, node_b = Enrolment(a, time.time, "desk"), Enrolment(b, time.time, "desk")
        real = a.directory.add

        def add_then_the_other_node_enrols(*args: object) -> object:
            # Node b spends the last use while node a is between its key and its use.
            node_b.enrol(peers["bob"], m.Enrol(code="one-use-code", name="bob"))
            return real(*args)  # type: ignore[arg-type]

        a.directory.add = add_then_the_other_node_enrols  # type: ignore[method-assign]
        with pytest.raises(InviteRefused):
            node_a.enrol(peers["alice"], m.Enrol(code="one-use-code", name="alice"))
        # One use, one key: alice's was not kept when her use failed.
        assert a.directory.lookup(peers["alice"].fingerprint) is None
        assert b.directory.lookup(peers["bob"].fingerprint) is not None
        assert [r.action for r in a.audit.records()].count("invite-used") == 1


def pubkey_fingerprint(text: str) -> str:
    from assist.core import pubkey

    return pubkey.parse(text, "test").fingerprint
