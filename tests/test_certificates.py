"""Company certificates: a key an SSH CA vouches for logs in unregistered.

Certificates are made by ``ssh-keygen -s``, as a company's CA would.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from assist.broker.authorities import Authorities
from assist.broker.server import Broker
from assist.client import UserClient
from assist.client.agent import AgentClient
from assist.config import ClientConfig
from assist.errors import AssistError, ConfigError
from tests.helpers import KeyPair, broker_config, link_to, make_key

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                reason="ssh-keygen is not installed (openssh-client)")


def ca(directory: Path, name: str) -> Path:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path


def certify(authority: Path, key: KeyPair, *, principals: str = "", validity: str = "-5m:+1h",
            options: tuple[str, ...] = ()) -> str:
    """Sign ``key`` with ``authority`` (``ssh-keygen -s``); return the certificate line."""
    args = ["ssh-keygen", "-q", "-s", str(authority), "-I", f"id-{key.private.name}",
            "-V", validity, *options]
    if principals:
        args += ["-n", principals]
    subprocess.run([*args, str(key.public)], check=True)
    return Path(f"{key.private}-cert.pub").read_text()


@pytest.fixture
async def certified_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    users, agents = ca(tmp_path, "user_ca"), ca(tmp_path, "agent_ca")
    server = Broker(broker_config(tmp_path / "b", trusted_user_ca_keys=Path(f"{users}.pub"),
                                  trusted_agent_ca_keys=Path(f"{agents}.pub")))
    await server.start()
    yield server
    await server.stop()


async def _hello(broker: Broker, role: str, key: KeyPair, certificate: str) -> str:
    client = UserClient(await link_to(broker, role, key))
    try:
        welcome = await client.hello(certificate=certificate)
        assert welcome.registered
        return welcome.name
    finally:
        await client.link.close()


async def test_a_certified_user_is_admitted_by_name_with_no_registration(
        certified_broker: Broker, tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys", "dana")
    cert = certify(tmp_path / "user_ca", key, principals="dana,dana.smith")
    user = UserClient(await link_to(certified_broker, "user", key))
    welcome = await user.hello(certificate=cert)
    assert welcome.name == "dana" and welcome.registered
    await user.join("vpn")
    await user.link.close()
    assert certified_broker.store is not None
    assert certified_broker.store.directory.list("user") == []  # nobody registered
    logins = [r for r in certified_broker.store.audit.records()
              if r.action == "certificate-login"]
    assert [r.actor for r in logins] == ["user:dana"]
    # The client finds the certificate next to its key, as ssh does.
    config = ClientConfig(key=key.private, file=tmp_path / "c.toml")
    assert config.certificate == cert.strip()


async def test_an_agent_is_certified_by_the_agents_authority(
        certified_broker: Broker, tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys", "erin")
    certify(tmp_path / "agent_ca", key, principals="erin")
    config = ClientConfig(host="127.0.0.1", port=certified_broker.port,
                          host_key=certified_broker.public_key, key=key.private,
                          file=tmp_path / "c.toml", state=tmp_path / "state")
    async with await AgentClient.connect(config, "test") as agent:
        assert agent.welcome is not None and agent.welcome.name == "erin"
        assert agent.welcome.role == "agent"


@pytest.mark.parametrize(("authority", "role", "principals", "validity", "said"), [
    ("user_ca", "user", "dana", "20200101:20200102", "your certificate has expired"),
    ("user_ca", "user", "dana", "+1d:+2d", "your certificate is not valid yet"),
    ("user_ca", "user", "", "-5m:+1h", "names nobody"),
    ("user_ca", "agent", "dana", "-5m:+1h", "not signed by an authority this broker trusts "
                                            "for agents"),
    ("other_ca", "user", "dana", "-5m:+1h", "not signed by an authority this broker trusts "
                                            "for users"),
])
async def test_a_certificate_that_does_not_admit_is_refused_in_words(
        certified_broker: Broker, tmp_path: Path, authority: str, role: str,
        principals: str, validity: str, said: str) -> None:
    if authority == "other_ca":
        ca(tmp_path, authority)
    key = make_key(tmp_path / "keys", "dana")
    cert = certify(tmp_path / authority, key, principals=principals, validity=validity)
    with pytest.raises(AssistError, match=said):
        await _hello(certified_broker, role, key, cert)


async def test_no_certificate_or_another_keys_is_refused(
        certified_broker: Broker, tmp_path: Path) -> None:
    key, other = make_key(tmp_path / "keys", "dana"), make_key(tmp_path / "keys", "frank")
    with pytest.raises(AssistError, match="has no certificate; ask your helpdesk"):
        await _hello(certified_broker, "user", key, "")
    cert = certify(tmp_path / "user_ca", other, principals="frank")
    with pytest.raises(AssistError, match="for another key"):
        await _hello(certified_broker, "user", key, cert)
    tampered = cert.replace(cert.split()[1][40:48], "AAAAAAAA")
    with pytest.raises(AssistError, match="cannot be read, or its signature is wrong"):
        await _hello(certified_broker, "user", other, tampered)


def test_authority_files_are_checked_when_the_broker_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.pub does not exist"):
        Authorities.load(tmp_path / "missing.pub", None)
    (tmp_path / "empty.pub").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no certificate authority key"):
        Authorities.load(tmp_path / "empty.pub", None)
    assert not Authorities.load(None, None).trusts("user")


async def test_a_certificate_cannot_take_a_registered_name_or_leave_its_network(
        certified_broker: Broker, tmp_path: Path) -> None:
    from tests.helpers import register

    registered = make_key(tmp_path / "keys", "alice")
    register(certified_broker, "user", "alice", registered)
    key = make_key(tmp_path / "keys", "mallory")
    cert = certify(tmp_path / "user_ca", key, principals="alice")
    with pytest.raises(AssistError, match="alice is a registered user here"):
        await _hello(certified_broker, "user", key, cert)
    other = make_key(tmp_path / "keys", "gina")
    far = certify(tmp_path / "user_ca", other, principals="gina",
                  options=("-O", "source-address=10.1.0.0/16"))
    with pytest.raises(AssistError, match=r"may not be used from 127\.0\.0\.1"):
        await _hello(certified_broker, "user", other, far)
    near = certify(tmp_path / "user_ca", other, principals="gina",
                   options=("-O", "source-address=127.0.0.0/8"))
    assert await _hello(certified_broker, "user", other, near) == "gina"


async def test_an_unproven_key_may_say_nothing_before_its_hello(
        certified_broker: Broker, tmp_path: Path) -> None:
    from assist.protocol import messages as m

    key = make_key(tmp_path / "keys", "hank")
    link = await link_to(certified_broker, "user", key)
    closed = asyncio.ensure_future(link.wait_for(lambda e: isinstance(e, m.Error), 10))
    await link.send(m.Ping(sent=1.0))
    error = await closed
    assert isinstance(error, m.Error) and "certificate first" in error.message
    await link.close()


async def test_provisional_logins_are_few_per_address_and_brief(
        certified_broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assist.transport import ssh

    monkeypatch.setattr(ssh, "PROVISIONAL_GRACE", 0.5)
    monkeypatch.setattr(ssh, "MAX_PROVISIONAL", 3)
    key = make_key(tmp_path / "keys", "idle")
    idle = [await asyncssh.connect("127.0.0.1", certified_broker.port, username="enrol",
                                   known_hosts=None, client_keys=[str(key.private)],
                                   agent_path=None, config=None) for _ in range(3)]
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect("127.0.0.1", certified_broker.port, username="enrol",
                               known_hosts=None, client_keys=[str(key.private)],
                               agent_path=None, config=None)
    # Logged in but no session opened: closed once the grace runs out.
    for conn in idle:
        await asyncio.wait_for(conn.wait_closed(), 5)
    # Those that open their session keep no slot once the grace is over.
    links = [await link_to(certified_broker, "user", key) for _ in range(3)]
    await asyncio.sleep(0.8)
    more = await link_to(certified_broker, "user", key)
    for link in (*links, more):
        await link.close()
